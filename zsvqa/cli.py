"""A thin click layer over the Python API: every option maps onto a config setting or an API argument."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from zsvqa.config import DTYPES, PRESETS, PROMPT_STYLES, QUANTIZATIONS, PipelineConfig
from zsvqa.datasets import DATASETS, VQADataset
from zsvqa.errors import InputError, ZsvqaError
from zsvqa.outputs import check_output_dir, check_output_file

# CLI option -> dotted config key; shared by every command that builds a pipeline.
MODEL_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--answerer-model", "answerer.model", str, "answerer LM: hub id, local directory, .gguf file or bundled:NAME"),
    ("--answerer-kind", "answerer.kind", click.Choice(["causal", "seq2seq", "fid"]), "how the answerer decodes"),
    ("--gguf-file", "answerer.gguf_file", str, "GGUF file inside --answerer-model"),
    ("--max-new-tokens", "answerer.max_new_tokens", int, "answer length limit in tokens"),
    ("--qg", "question_gen.backend", click.Choice(["t5", "template", "llm", "none"]), "question generator"),
    ("--qg-model", "question_gen.model", str, "T5 question-generation model: hub id or local directory"),
    ("--prompt-style", "prompt.style", click.Choice(list(PROMPT_STYLES)), "prompt format"),
    ("--prompt-template", "prompt.template", str, "a template file used in place of the style's own"),
    ("--exemplar-source", "prompt.exemplars", click.Choice(["synthetic", "retrieved", "none"]), "QA exemplars"),
    ("--prompt-captions", "prompt.num_captions", int, "captions in the prompt"),
    ("--prompt-exemplars", "prompt.num_exemplars", int, "QA exemplars in the prompt"),
    ("--itm-model", "matcher.model", str, "BLIP image-text matching model: hub id, local directory or LAVIS .pth"),
    ("--captioner-model", "captioner.model", str, "BLIP captioning model: hub id, local directory or LAVIS .pth"),
    ("--relevance", "captioner.relevance", click.Choice(["gradcam", "uniform", "full"]), "how patches are chosen"),
    ("--num-patches", "captioner.num_patches", int, "K: patches sampled per caption"),
    ("--num-captions", "captioner.num_captions", int, "N: captions generated per question"),
    ("--caption-filter", "captioner.filter_threshold", float, "keep captions whose ITM match probability is at least this"),
    ("--device", "device", str, "torch device, e.g. cpu or cuda"),
    ("--dtype", "dtype", click.Choice(list(DTYPES)), "weight precision (auto: bfloat16 where this machine runs it fast)"),
    ("--quantize", "quantize", click.Choice([*QUANTIZATIONS, "none"]),
     "int8 weights for the text decoders (CPU; auto: where it measured fastest; none: float weights)"),
    ("--seed", "seed", int, "random seed"),
]


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --preset, --set and the MODEL_OPTIONS to a command."""
    for flag, _, kind, help_text in reversed(MODEL_OPTIONS):
        command = click.option(flag, type=kind, default=None, help=help_text)(command)
    command = click.option(
        "--set", "settings", multiple=True, metavar="KEY=VALUE",
        help="any setting by its dotted name, e.g. --set captioner.top_k=20 (repeatable)",
    )(command)
    return click.option("--preset", default="offline", show_default=True, type=click.Choice(list(PRESETS)))(command)


PRECISION_FLAGS = ("--device", "--dtype", "--quantize")


def precision_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--device, --dtype and --quantize as the commands above take them, each defaulting to the preset's (the
    benchmark scripts: one default per setting, the preset's)."""
    for flag, _, kind, help_text in reversed([o for o in MODEL_OPTIONS if o[0] in PRECISION_FLAGS]):
        command = click.option(flag, type=kind, default=None, help=f"{help_text} [default: the preset's]")(command)
    return command


def precision_overrides(device: str | None, dtype: str | None, quantize: str | None) -> dict[str, Any]:
    """The config overrides `precision_options` gave (those not given keep the preset's)."""
    given = {"device": device, "dtype": dtype, "quantize": quantize}
    return {key: value for key, value in given.items() if value is not None}


def overrides_from(options: dict[str, Any]) -> dict[str, Any]:
    """The config overrides given by MODEL_OPTIONS and --set; removes those keys from `options`."""
    overrides: dict[str, Any] = {}
    for flag, key, _, _ in MODEL_OPTIONS:
        value = options.pop(flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides[key] = value
    return {**overrides, **set_overrides(options.pop("settings"))}


def set_overrides(settings: tuple[str, ...]) -> dict[str, str]:
    """--set KEY=VALUE options as config overrides."""
    overrides = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep:
            raise InputError(f"--set takes KEY=VALUE; got {setting!r}")
        overrides[key.strip()] = value  # not stripped: text settings take it verbatim
    return overrides


def positive_integers(text: str, option: str, what: str) -> list[int]:
    """A comma-separated list of integers of at least 1 ("1,4,16"), as benchmark options take them."""
    try:
        values = [int(n) for n in text.split(",")]
    except ValueError:
        raise InputError(f"{option} takes comma-separated integers; got {text!r}") from None
    if min(values) < 1:
        raise InputError(f"{option} needs {what} of at least 1; got {text!r}")
    return values


def add_retrieval(
    overrides: dict[str, Any], index: str | None, n_shot: int | None = None, n_ensemble: int | None = None
) -> None:
    """--exemplars, --n-shot and --n-ensemble as overrides; an index means retrieved exemplars unless told otherwise."""
    for key, value in [("retrieval.index", index), ("retrieval.n_shot", n_shot), ("retrieval.n_ensemble", n_ensemble)]:
        if value is not None:
            overrides[key] = value
    if index:
        overrides.setdefault("prompt.exemplars", "retrieved")


def read_captions(captions: tuple[str, ...], captions_file: str | None) -> list[str]:
    found = list(captions)
    if captions_file:
        try:
            text = Path(captions_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"cannot read the captions file {captions_file!r}: {error}") from error
        if captions_file.endswith(".json"):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as error:
                raise InputError(f"captions file {captions_file!r} is not valid JSON: {error}") from error
            if not isinstance(loaded, list) or not all(isinstance(c, str) for c in loaded):
                raise InputError(f"captions file {captions_file!r} must hold a JSON list of strings")
            found += loaded
        else:
            found += [line for line in text.splitlines() if line.strip()]
    return found


class _OneLineErrors:
    """Turns zsvqa's own errors into a one-line message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except ZsvqaError as error:
            raise click.ClickException(str(error)) from error


class _Group(_OneLineErrors, click.Group):
    """The `run.py` command group."""


class ScriptCommand(_OneLineErrors, click.Command):
    """A command that is a script of its own (benchmarks/*.py): its usage line reads `NAME.py [OPTIONS]`."""


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="show library warnings and debug logs")
def main(verbose: bool) -> None:
    """Zero-shot visual question answering with frozen models."""
    configure_logging(verbose)


def configure_logging(verbose: bool) -> None:
    """Our warnings on stderr; library chatter (weight-loading bars, advisories) only when verbose."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:
        import transformers
        from huggingface_hub.utils import logging as hub_logging

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        # The hub client's retry and connection warnings; a failed load still ends in one clear error.
        hub_logging.set_verbosity_error()
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@main.command()
@click.option("--question", "-q", required=True, help="the question")
@click.option("--caption", "-c", "captions", multiple=True, help="a caption of the image (repeatable)")
@click.option("--captions-file", type=str, help="captions, one per line, or a JSON list")
@click.option("--image", "-i", type=str, help="the image (any format PIL reads); captions are then generated")
@click.option("--save-heatmap", type=str, help="with --image: write the question's patch relevance as a PNG")
@click.option("--exemplars", help="exemplar index from `run.py index`: PICa-style retrieved exemplars")
@click.option("--json", "as_json", is_flag=True, help="print the whole result as JSON")
@model_options
def ask(
    question: str,
    captions: tuple[str, ...],
    captions_file: str | None,
    image: str | None,
    save_heatmap: str | None,
    exemplars: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Answer a question about an image, or from captions of it."""
    from zsvqa.pipeline import Pipeline

    preset_name = options.pop("preset")
    overrides = overrides_from(options)
    add_retrieval(overrides, exemplars)
    caption_list = read_captions(captions, captions_file)
    if image and caption_list:
        raise InputError("give either --image or captions, not both")
    if save_heatmap:
        from zsvqa.heatmap import save_heatmap as draw, supported_formats

        if not image:
            raise InputError("--save-heatmap needs --image")
        check_output_file(save_heatmap, "--save-heatmap", supported_formats())
    pipeline = Pipeline.from_preset(preset_name, overrides)
    if save_heatmap and pipeline.config.captioner.relevance != "gradcam":
        raise InputError("--save-heatmap needs a relevance map: use --relevance gradcam")
    result = pipeline.answer(question, caption_list, image)
    echo_result(result, as_json)  # first: a failure to write the heatmap must not lose the answer
    if save_heatmap:
        from zsvqa.images import load_image

        try:
            picture = load_image(image, pipeline.config.exif_orientation)  # as the pipeline saw it
            draw(picture, result.relevance, save_heatmap, title=result.question)
        except OSError as error:
            raise InputError(f"the heatmap could not be written to {save_heatmap!r}: {error}") from error
        click.echo(f"heatmap written to {Path(save_heatmap).resolve()}", err=as_json)  # JSON stays alone on stdout


def echo_result(result: Any, as_json: bool) -> None:
    # result.warning is not echoed: the pipeline logged it on stderr when it was built.
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(f"answer: {result.answer}  (log-prob {result.logprob:.2f})")
    stages = ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in result.timings.items())
    click.echo(f"prompt: {len(result.captions)} captions, {len(result.exemplars)} exemplars; time: {stages}")


DATASET_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--dataset", dict(required=True, type=click.Choice(list(DATASETS)))),
    ("--questions", dict(required=True, help="official questions JSON (A-OKVQA, GQA: with their answers, if any)")),
    ("--annotations", dict(help="VQAv2 / OK-VQA annotations JSON; without it the run only predicts (test-dev)")),
    ("--images", dict(help="image folder: COCO_val2014_%012d.jpg (VQAv2, OK-VQA), %012d.jpg (A-OKVQA: COCO 2017), "
                           "<imageId>.jpg (GQA)")),
    ("--captions", dict(help="precomputed captions ({image_id: [...]} or COCO captions); replaces the captioner")),
    ("--score-choices/--no-score-choices", dict(
        default=None, help="A-OKVQA: the LLM picks the multiple choice by log-likelihood [default: on with a causal "
                           "answerer; the embedding's choice is recorded either way]")),
    ("--exemplars", dict(help="exemplar index from `run.py index`: PICa-style retrieved exemplars")),
    ("--n-shot", dict(type=int, help="retrieved exemplars per prompt")),
    ("--n-ensemble", dict(type=int, help="prompts per question; the most probable answer wins")),
    ("--limit", dict(type=int, help="a reproducible random subset of N questions (under --seed)")),
    ("--question-ids", dict(help="only these question ids (JSON list or one per line)")),
    ("--split-by-image", dict(is_flag=True, help="with --limit: sample whole images, all their questions")),
    ("--lemmatized", dict(is_flag=True, help="OK-VQA: the Img2LLM-style lemmatized accuracy (not official)")),
    ("--cache", dict(help="intermediates cache file [default: ~/.cache/zsvqa/intermediates.sqlite]")),
    ("--no-cache", dict(is_flag=True, help="compute every intermediate afresh")),
    ("--no-progress", dict(is_flag=True, help="no progress bar")),
]


def dataset_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the evaluation data options (shared by `eval` and benchmarks/ablate.py) and the model options."""
    for flag, settings in reversed(DATASET_OPTIONS):
        command = click.option(flag, **settings)(command)
    return model_options(command)


@dataclass
class EvalInputs:
    """What the data options resolve to: the config, the dataset, and how to run it."""

    config: PipelineConfig
    dataset: VQADataset
    captions: dict[int | str, list[str]] | None
    lemmatized: bool
    score_choices: bool
    cache_path: Path | None
    progress: bool
    description: dict[str, Any]


def eval_inputs(options: dict[str, Any]) -> EvalInputs:
    """Reads and checks the data named by DATASET_OPTIONS and MODEL_OPTIONS, before any work starts."""
    from zsvqa.cache import IntermediateCache
    from zsvqa.config import preset
    from zsvqa.datasets import check_captions_cover, file_fingerprint, load_dataset, read_captions_file
    from zsvqa.evaluation import default_cache_path

    preset_name = options.pop("preset")
    overrides = overrides_from(options)
    add_retrieval(overrides, options["exemplars"], options["n_shot"], options["n_ensemble"])
    config = preset(preset_name).with_overrides(overrides)
    cache_path = None if options["no_cache"] else Path(options["cache"] or default_cache_path())
    if cache_path is not None:
        IntermediateCache(cache_path).close()  # a folder or a non-SQLite file fails here, before the data is read
    captions = read_captions_file(options["captions"]) if options["captions"] else None
    if captions is None and not options["images"]:
        raise InputError("--images is required (or give precomputed --captions)")
    # Precomputed captions replace the images, except for image-similarity exemplar retrieval.
    keep_images = captions is None or config.prompt.exemplars == "retrieved"
    dataset = load_dataset(
        options["dataset"], options["questions"], options["annotations"],
        options["images"] if keep_images else None,
        options["limit"], options["question_ids"], options["split_by_image"], config.seed,
    )
    if captions is not None:
        check_captions_cover(dataset.questions, captions, repr(options["captions"]))
    # The run's data by content, so a rerun resumes whatever path spells it (./q.json, val2014/, a moved folder).
    # The image files are left out: the questions fix which images; the folder may move, and a corrupt image may be
    # replaced and its questions retried, without making another run (hashing 40k COCO images would cost minutes).
    files = {key: file_fingerprint(options[key]) if options[key] else None
             for key in ("questions", "annotations", "captions", "question_ids")}
    description = {**files, "with_images": bool(dataset.image_paths),
                   **{key: options[key] for key in ("limit", "split_by_image")}}
    return EvalInputs(
        config=config,
        dataset=dataset,
        captions=captions,
        lemmatized=options["lemmatized"],
        # The LLM's own ranking of the four choices beat the embedding's mapping of its free answer on A-OKVQA
        # (README, Accuracy), so it is the default wherever the answerer can score.
        score_choices=options["score_choices"] if options["score_choices"] is not None else (
            options["dataset"] == "aokvqa" and config.answerer.kind == "causal"
        ),
        cache_path=cache_path,
        progress=not options["no_progress"],
        description=description,
    )


@main.command(name="config")
@click.option("--json", "as_json", is_flag=True, help="print a JSON object of dotted key -> value")
@model_options
def config_command(as_json: bool, **options: Any) -> None:
    """Print every setting of a preset (with any overrides) as KEY=VALUE, the way --set takes it."""
    from zsvqa.config import preset

    config = preset(options.pop("preset")).with_overrides(overrides_from(options))
    click.echo(json.dumps(config.to_flat_dict(), indent=2) if as_json else "\n".join(config.to_set_lines()))


@main.command(name="eval")
@click.option("--out", required=True, help="run folder: predictions.jsonl, results.json, metrics.json, config.json")
@dataset_options
def evaluate_command(out: str, **options: Any) -> None:
    """Evaluate on a VQAv2, OK-VQA, A-OKVQA or GQA split; a rerun of the same command resumes."""
    from zsvqa.distributed import shard_from_env
    from zsvqa.evaluation import evaluate

    check_output_dir(out, "--out")
    shard = shard_from_env()  # under torchrun or accelerate launch: this rank's share of the images
    inputs = eval_inputs(options)
    summary = evaluate(
        inputs.config, inputs.dataset, out, inputs.captions, inputs.lemmatized, inputs.cache_path,
        progress=inputs.progress, data_description=inputs.description, score_choices=inputs.score_choices,
        shard=shard,
    )
    who = f"rank {shard.rank}/{shard.world_size}: " if shard.distributed else ""
    click.echo(f"{who}answered {summary.answered} questions ({summary.resumed} done earlier) in {summary.seconds:.1f}s")
    if shard.rank != 0:
        return  # rank 0 merged the ranks' answers and reports the run
    if summary.errors:
        click.echo(f"{len(summary.errors)} questions failed, e.g. {next(iter(summary.errors.items()))}", err=True)
    if summary.metrics:
        click.echo(metrics_line(summary.metrics))
    if summary.duplicates:
        click.echo(f"{summary.duplicates} questions had two different answers in the ranks' files", err=True)
    click.echo(f"wrote {summary.out_dir}/results.json" + (", metrics.json" if summary.metrics else ""))


def metrics_line(metrics: dict[str, Any]) -> str:
    """The headline accuracy and its breakdown: per answer type (VQA), structural type (GQA), or choice (A-OKVQA)."""
    parts = metrics.get("per_answer_type") or metrics.get("per_structural_type") or {}
    details = [f"{k or '?'} {v:.2f}" for k, v in parts.items()]
    details += [f"multiple choice by {way} {v['accuracy']:.2f}" for way, v in metrics.get("multiple_choice", {}).items()]
    return f"{metrics['metric']}: {metrics['overall']:.2f}" + (f"  ({', '.join(details)})" if details else "")


@main.command()
@click.option("--questions", required=True, help="training questions JSON")
@click.option("--annotations", required=True, help="training annotations JSON")
@click.option("--captions", "captions_path", help="captions of the training images ({image_id: [...]} or COCO captions)")
@click.option("--images", "images_dir", help="training image folder: with an image embedding model, examples are "
              "ranked by question + image similarity (PICa)")
@click.option("--preset", default="offline", show_default=True, type=click.Choice(list(PRESETS)),
              help="the embedding models default to this preset's retrieval settings")
@click.option("--embed-captions", is_flag=True, help="embed question + caption instead of the question alone")
@click.option("--embedding-model", default=None, help="sentence-transformers question encoder [default: the preset's]")
@click.option("--image-embedding-model", default=None,
              help="sentence-transformers CLIP model for the images, or none [default: the preset's]")
@click.option("--out", required=True, help="index folder")
@click.option("--device", default="cpu", show_default=True)
def index(questions: str, annotations: str, captions_path: str | None, images_dir: str | None, preset: str,
          embed_captions: bool, embedding_model: str | None, image_embedding_model: str | None, out: str,
          device: str) -> None:
    """Build a PICa-style exemplar index of training questions (and images)."""
    from zsvqa.config import preset as preset_config
    from zsvqa.datasets import read_captions_file, read_questions
    from zsvqa.retrieval import build_index, training_examples

    check_output_dir(out, "--out")
    overrides = {"retrieval.embedding_model": embedding_model, "retrieval.image_embedding_model": image_embedding_model}
    settings = preset_config(preset).with_overrides({k: v for k, v in overrides.items() if v is not None})
    config = settings.retrieval
    captions = read_captions_file(captions_path) if captions_path else None
    examples = training_examples(read_questions(questions, annotations), captions)
    folder = build_index(examples, out, config, embed_captions, device, images_dir, settings.exif_orientation)
    models = config.embedding_model + (f" + images by {config.image_embedding_model}" if images_dir else "")
    click.echo(f"indexed {len(examples)} training examples with {models} into {folder}")


@main.command()
@click.option("--preset", default="offline", show_default=True, type=click.Choice(list(PRESETS)),
              help="the preset the page starts with (another can be picked in the page)")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="port to serve on")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to serve on (0.0.0.0: every interface)")
@click.option("--share", is_flag=True, help="also serve through a temporary public Gradio link")
def demo(preset: str, port: int, host: str, share: bool) -> None:
    """Serve the web demo: every step of an answer on one page (needs the `demo` extra)."""
    from zsvqa.demo import check_port_free, install_check, serve

    install_check()
    check_port_free(host, port)
    click.echo(f"serving the zsvqa demo on http://{host}:{port} (Ctrl+C stops it)")
    serve(preset, port, share, host)
