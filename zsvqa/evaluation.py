"""Dataset evaluation that loses nothing: each answer is appended to a JSONL file as it is made, a rerun of
the same command resumes, and the end writes the official results file, the metrics and the full config."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from zsvqa.datasets import ScoringOptions, VQADataset, VQAQuestion, check_captions_cover, dataset_format
from zsvqa.distributed import Shard, assign_images, barrier, finish, start
from zsvqa.errors import InputError
from zsvqa.inputs import EMPTY_QUESTION
from zsvqa.locations import cache_dir
from zsvqa.outputs import check_output_dir, locked_run_folder, write_atomic
from zsvqa.pipeline import Pipeline, QuestionCaptions

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
RANK_PREDICTIONS = "predictions.rank{}.jsonl"  # one per rank of a sharded run, merged into PREDICTIONS_FILE
RANK_LOCK = "run.rank{}.lock"
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"
# How many inputs run at once: answers equal one at a time (tests/test_batching.py), so a run resumes across them.
BATCHING_SETTINGS = tuple(
    f"pipeline.{name}:" for name in ("answerer.batch_size", "question_gen.batch_size", "answerer.fid_encode_batch")
)


@dataclass
class EvalSummary:
    out_dir: Path
    answered: int  # questions answered in this run
    resumed: int  # questions found finished from an earlier run
    errors: dict[int | str, str]  # question id -> error, for questions that could not be answered
    metrics: dict[str, Any] | None
    seconds: float
    rank: int = 0
    world_size: int = 1
    duplicates: int = 0  # questions found answered in two prediction files when they were merged


def read_predictions(path: Path, keep_errors: bool = False) -> dict[int | str, dict[str, Any]]:
    """Finished questions from a predictions file. A line cut off by a crash is ignored and the question redone;
    so is a question that failed (a corrupt image, say), in case its cause was fixed since (`keep_errors`: its
    latest record is kept all the same, for the final merge)."""
    done: dict[int | str, dict[str, Any]] = {}
    if not path.exists():
        return done
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
                question_id = record["question_id"]  # an int (VQA) or a string (A-OKVQA, GQA), as written
                if not isinstance(question_id, (int, str)) or isinstance(question_id, bool):
                    continue
                if record.get("error") and not keep_errors:
                    done.pop(question_id, None)
                else:
                    done[question_id] = record
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    return done


def compact_predictions(path: Path) -> dict[int | str, dict[str, Any]]:
    """The finished questions; the file is rewritten to hold exactly them, one line each, when it holds anything
    else: failed records (redone now), records a retry superseded, a line a crash cut off."""
    done = read_predictions(path)
    if path.exists():
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.count("\n") != len(done) or not text.endswith("\n") and text:
            _write_records(path, done)
    return done


def _write_records(path: Path, records: dict[int | str, dict[str, Any]]) -> None:
    """A predictions file holding exactly these records, one line each, replaced atomically."""
    write_atomic(path, "".join(json.dumps(record) + "\n" for record in records.values()))


def prediction_files(out_dir: Path) -> list[Path]:
    """Every predictions file of a run folder: the merged one first, then any ranks' not merged yet."""
    ranks = sorted(out_dir.glob(RANK_PREDICTIONS.format("*")), key=lambda p: p.name)
    return [out_dir / PREDICTIONS_FILE, *ranks]


def merge_predictions(paths: list[Path]) -> tuple[dict[int | str, dict[str, Any]], int]:
    """One record per question from several files, and how many questions more than one file answered. An
    answer beats a failure; a crash between writing the merged file and removing the ranks' leaves the same
    answer twice, which is counted, and the one kept."""
    merged: dict[int | str, dict[str, Any]] = {}
    duplicates = 0
    for path in paths:
        for question_id, record in read_predictions(path, keep_errors=True).items():
            earlier = merged.get(question_id)
            if earlier is not None and not earlier.get("error") and not record.get("error"):
                duplicates += earlier != record
            if earlier is None or earlier.get("error") or not record.get("error"):
                merged[question_id] = record
    return merged, duplicates


def _same_setting(old: Any, new: Any) -> bool:
    """Equal, or two spellings of one existing path (models/m and ./models/m/)."""
    if old == new:
        return True
    if isinstance(old, str) and isinstance(new, str) and os.path.exists(old) and os.path.exists(new):
        return os.path.samefile(old, new)
    return False


def setting_differences(old: Any, new: Any, name: str = "") -> list[str]:
    """'key: old -> new' for each dotted setting that differs between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            difference
            for key in sorted(set(old) | set(new), key=str)
            for difference in setting_differences(old.get(key), new.get(key), f"{name}.{key}" if name else str(key))
        ]
    if _same_setting(old, new):
        return []
    if name.endswith("sha256") and old and new:  # twelve hex digits tell two files apart; 64 only crowd the line
        old, new = f"{old[:12]}...", f"{new[:12]}..."
    return [f"{name}: {old!r} -> {new!r}"]


def _check_run_config(out_dir: Path, run_config: dict[str, Any], write: bool = True) -> None:
    """A rerun resumes only the same run: mixing answers from another configuration would corrupt the metrics."""
    path = out_dir / CONFIG_FILE
    if path.exists():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"{str(path)!r} is not valid JSON ({error}); give another --out") from error
        kept = ("pipeline", "data")
        differences = [
            difference
            for difference in setting_differences({k: earlier.get(k) for k in kept}, {k: run_config[k] for k in kept})
            if not difference.startswith(BATCHING_SETTINGS)
        ]
        if differences:
            raise InputError(
                f"{str(out_dir)!r} holds a run with other settings or data ({'; '.join(differences)}); "
                "resume it with the same settings, or give another --out"
            )
    if write:
        write_atomic(path, json.dumps(run_config, indent=2))


class Evaluator:
    """Runs a pipeline over a dataset split into an output folder."""

    def __init__(
        self,
        pipeline: Pipeline,
        dataset: VQADataset,
        out_dir: str | Path,
        captions: dict[int | str, list[str]] | None = None,
        lemmatized: bool = False,
        data_description: dict[str, Any] | None = None,
        score_choices: bool = False,
        shard: Shard | None = None,
    ) -> None:
        # A-OKVQA's free answers are mapped to a choice by the sentence encoder retrieval uses.
        self.format = dataset_format(
            dataset.name, ScoringOptions(lemmatized, pipeline.config.retrieval.embedding_model, pipeline.config.device)
        )
        if score_choices and not self.format.has_choices:
            raise InputError("--score-choices ranks A-OKVQA's multiple choices; use it with --dataset aokvqa")
        if score_choices and pipeline.config.answerer.kind != "causal":
            raise InputError(
                f"--score-choices ranks the choices by a causal LM's likelihood; answerer.kind is "
                f"{pipeline.config.answerer.kind!r}"
            )
        if captions is None and not dataset.image_paths:
            raise InputError("give the images folder (--images), or precomputed captions (--captions)")
        if captions is not None:
            check_captions_cover(dataset.questions, captions)
        self.pipeline = pipeline
        self.dataset = dataset
        self.out_dir = check_output_dir(out_dir, "run folder")
        self.captions = captions
        self.lemmatized = lemmatized
        self.data_description = data_description or {}
        self.score_choices = score_choices
        self.shard = shard or Shard()
        # OK-VQA's processed answers are lemmas ("banana", "fly kite"): answers follow where the preset says so.
        self.answer_form: Callable[[str], str] = (
            self.format.answer_form if pipeline.config.answerer.dataset_answer_form else str
        )

    def run(self, progress: bool = True, on_answer: Callable[[dict[str, Any]], None] | None = None) -> EvalSummary:
        """Answer what the folder lacks; one writer at a time (a second is refused naming the first's pid)."""
        start = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not self.shard.distributed:
            with locked_run_folder(self.out_dir):
                return self._run(progress, on_answer, start)
        # Ranks share the folder, each its own file; a one-process run of the same folder is kept out meanwhile.
        with locked_run_folder(self.out_dir, shared=True), locked_run_folder(
            self.out_dir, RANK_LOCK.format(self.shard.rank)
        ):
            return self._run(progress, on_answer, start)

    def _run(self, progress: bool, on_answer: Callable[[dict[str, Any]], None] | None, start: float) -> EvalSummary:
        shard = self.shard
        _check_run_config(self.out_dir, self._run_config(), write=shard.rank == 0)
        name = RANK_PREDICTIONS.format(shard.rank) if shard.distributed else PREDICTIONS_FILE
        predictions_path = self.out_dir / name
        # Done is what any file holds (an earlier run may have had another world size); this rank writes only its own.
        others = [path for path in prediction_files(self.out_dir) if path != predictions_path]
        done = {**merge_predictions(others)[0], **compact_predictions(predictions_path)}
        done = {qid: record for qid, record in done.items() if not record.get("error")}
        by_image = self.dataset.by_image()
        mine = assign_images(list(by_image), shard)
        wanted = {q.question_id for q in self.dataset.questions if q.image_id in mine}
        resumed = len(wanted & set(done))
        accuracies = [r["accuracy"] for qid, r in done.items() if qid in wanted and r.get("accuracy") is not None]
        empty = [q.question_id for q in self.dataset.questions if q.question_id in wanted and not q.question.strip()]
        if empty:
            log.warning("%d questions are empty (ids %s): each gets an error record; the others are answered",
                        len(empty), ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else ""))
        if wanted - set(done):
            self.format.prepare()
            self.pipeline.load_models(vision=False)  # language models first (see load_models); vision when needed
        bar = tqdm(total=len(wanted), initial=resumed, unit="q", desc="eval", disable=not progress, dynamic_ncols=True)
        answered = 0
        with predictions_path.open("a", encoding="utf-8") as out:
            todo = [(image_id, [q for q in questions if q.question_id not in done])
                    for image_id, questions in by_image.items() if image_id in mine]
            for chunk in _chunks([group for group in todo if group[1]], self.pipeline.config.answerer.batch_size):
                for record in self._answer_images(chunk):
                    out.write(json.dumps(record) + "\n")
                    out.flush()
                    os.fsync(out.fileno())  # a crash right after loses nothing written
                    done[record["question_id"]] = record
                    answered += 1
                    if on_answer:
                        on_answer(record)
                    if record.get("accuracy") is not None:
                        accuracies.append(record["accuracy"])
                    if accuracies:
                        bar.set_postfix(acc=f"{100 * sum(accuracies) / len(accuracies):.2f}")
                    bar.update(1)
        bar.close()
        shard_summary = {"rank": shard.rank, "world_size": shard.world_size}
        barrier(shard)  # every rank's file is complete past here
        if shard.rank != 0:
            return EvalSummary(self.out_dir, answered, resumed, {}, None, time.perf_counter() - start, **shard_summary)
        duplicates = 0
        if len(paths := prediction_files(self.out_dir)) > 1 and any(path.exists() for path in paths[1:]):
            done, duplicates = self._merge(paths)
        records = [done[q.question_id] for q in self.dataset.questions]
        self._write_results(records)
        metrics = self._write_metrics(records) if self.dataset.annotated else None
        errors = {r["question_id"]: r["error"] for r in records if r.get("error")}
        if errors:
            log.warning("%d questions could not be answered; see 'error' in %s", len(errors), predictions_path)
        return EvalSummary(
            self.out_dir, answered, resumed, errors, metrics, time.perf_counter() - start, **shard_summary,
            duplicates=duplicates,
        )

    def _merge(self, paths: list[Path]) -> tuple[dict[int | str, dict[str, Any]], int]:
        """The ranks' files into the one predictions file, after checking that every question has its answer."""
        merged, duplicates = merge_predictions(paths)
        missing = [q.question_id for q in self.dataset.questions if q.question_id not in merged]
        if missing:
            raise InputError(
                f"{len(missing)} questions have no answer in any rank's predictions file (e.g. {missing[0]!r}); "
                "rerun the same command to answer them"
            )
        if duplicates:
            log.warning("%d questions were answered differently in two predictions files; kept the later", duplicates)
        _write_records(paths[0], merged)
        for path in paths[1:]:  # after the merged file is whole: a crash in between leaves duplicates, not losses
            path.unlink(missing_ok=True)
        return merged, duplicates

    def _answer_images(self, groups: list[tuple[int | str, list[VQAQuestion]]]) -> list[dict[str, Any]]:
        """Answer some images' questions, their prompts together; an image that cannot be read becomes an error
        record per question."""
        records: dict[int | str, dict[str, Any]] = {}
        questions: list[VQAQuestion] = []
        captioned: list[QuestionCaptions] = []
        images = []
        for image_id, group in groups:
            # An empty question is its own error (found before the run, see _run); its image's others go on.
            records.update({q.question_id: self._record(q, error=EMPTY_QUESTION) for q in group if not q.question.strip()})
            group = [q for q in group if q.question.strip()]
            if not group:
                continue
            try:
                if self.captions is not None:  # every image has captions: checked in __init__
                    captioned += [QuestionCaptions(q.question, self.captions[image_id]) for q in group]
                else:
                    captioned += self.pipeline.caption_image(self.dataset.image_paths[image_id], [q.question for q in group])
            except InputError as error:
                records.update({q.question_id: self._record(q, error=str(error)) for q in group})
                continue
            questions += group
            images += [self.dataset.image_paths.get(image_id)] * len(group)  # with captions: for image retrieval
        choices = [q.choices for q in questions] if self.score_choices else None
        answered = self.pipeline.answer_captioned_many(captioned, images=images, choices=choices)
        for question, result in zip(questions, answered):
            if isinstance(result, InputError):
                records[question.question_id] = self._record(question, error=str(result))
                continue
            chosen = self.format.answer_fields(question, result.answer)
            if self.score_choices and result.given_choice_scores:
                chosen["choice_llm"] = next(iter(result.given_choice_scores))
            records[question.question_id] = (
                self._record(
                    question,
                    answer=self.answer_form(result.answer),
                    raw_answer=result.raw_answer,
                    logprob=result.logprob,
                    itm_score=result.itm_score,
                    num_captions=len(result.captions),
                    num_exemplars=len(result.exemplars),
                    seconds=round(sum(result.timings.values()), 4),  # cached stages count 0: not spent here
                    **({"cached": result.cached} if result.cached else {}),
                    **({"similarity": result.retrieval_similarity} if result.retrieval_similarity else {}),
                    # The ranked answer set's scores, so a selection rule can be studied from the run folder alone.
                    **({"choice_scores": result.choice_scores} if result.choice_scores else {}),
                    **chosen,
                )
            )
        return [records[q.question_id] for _, group in groups for q in group]

    def _record(self, question: VQAQuestion, answer: str = "", error: str | None = None, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "question_id": question.question_id,
            "image_id": question.image_id,
            "question": question.question,
            "answer": answer,
            **fields,
        }
        if self.dataset.annotated:
            record["accuracy"] = self.format.score(question, answer) if error is None else 0.0
        if error is not None:
            record["error"] = error
        return record

    def _write_results(self, records: list[dict[str, Any]]) -> None:
        """The dataset's official submission format."""
        write_atomic(self.out_dir / RESULTS_FILE, json.dumps(self.format.submission(records)))

    def _write_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        questions = {q.question_id: q for q in self.dataset.questions}
        metrics = self.format.summarize(records, questions)
        metrics["errors"] = sum(1 for r in records if r.get("error"))
        metrics.update(self.format.papers_metrics(records, questions))
        write_atomic(self.out_dir / METRICS_FILE, json.dumps(metrics, indent=2))
        return metrics

    def _run_config(self) -> dict[str, Any]:
        from zsvqa import __version__

        config = self.pipeline.config
        retrieval = None
        if config.prompt.exemplars == "retrieved":
            retriever = self.pipeline.retriever
            # Which similarity ranks the exemplars: image similarity needs image vectors in the index and images.
            retrieval = {"index": retriever.meta, "similarity": retriever.similarity_for(bool(self.dataset.image_paths))}
        return {
            "zsvqa_version": __version__,
            # Not compared on resume: a rerun may use another number of processes.
            "world_size": self.shard.world_size,
            "retrieval": retrieval,
            "pipeline": config.to_dict(),
            "data": {
                **self.data_description,
                "dataset": self.dataset.name,
                "num_questions": len(self.dataset.questions),
                "precomputed_captions": self.captions is not None,
                "lemmatized_metric": self.lemmatized,
                # Only where it applies, so run folders made before the option existed still resume.
                **({"score_choices": self.score_choices} if self.format.has_choices else {}),
            },
        }


def _chunks(
    groups: list[tuple[int | str, list[VQAQuestion]]], batch_size: int
) -> list[list[tuple[int | str, list[VQAQuestion]]]]:
    """Consecutive images, enough to fill an answerer batch (at least one image each)."""
    chunks: list[list[tuple[int | str, list[VQAQuestion]]]] = []
    size = batch_size
    for group in groups:
        if size >= batch_size:
            chunks.append([])
            size = 0
        chunks[-1].append(group)
        size += len(group[1])
    return chunks


def default_cache_path() -> Path:
    return cache_dir() / "intermediates.sqlite"


def evaluate(
    config: Any,
    dataset: VQADataset,
    out_dir: str | Path,
    captions: dict[int | str, list[str]] | None = None,
    lemmatized: bool = False,
    cache_path: str | Path | None = None,
    progress: bool = True,
    data_description: dict[str, Any] | None = None,
    score_choices: bool = False,
    shard: Shard | None = None,
) -> EvalSummary:
    """Evaluate a `PipelineConfig` on a dataset into `out_dir`, with intermediates cached at `cache_path`; with a
    `shard` of a launch (`shard_from_env()` under torchrun), only this rank's images, rank 0 merging at the end.
    The ranks share one cache file: SQLite's write-ahead log and busy timeout serialize their writes."""
    from zsvqa.cache import IntermediateCache

    shard = shard or Shard()
    start(shard, config.device)
    cache = IntermediateCache(cache_path) if cache_path else None
    try:
        pipeline = Pipeline(config, cache)
        evaluator = Evaluator(
            pipeline, dataset, out_dir, captions, lemmatized, data_description, score_choices, shard
        )
        return evaluator.run(progress and shard.rank == 0)
    finally:
        if cache is not None:
            cache.close()
        finish(shard)
