"""PICa-style exemplar retrieval: training examples embedded with sentence-transformers in a faiss index; the
nearest ones to a test question become in-context examples, each with its caption and most common answer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zsvqa.config import RetrievalConfig
from zsvqa.data import VQAQuestion, most_common_answer
from zsvqa.errors import InputError
from zsvqa.prompting import QAExemplar

INDEX_FILE = "index.faiss"
EXAMPLES_FILE = "examples.jsonl"
META_FILE = "meta.json"


@dataclass
class TrainingExample:
    question_id: int
    image_id: int
    question: str
    answer: str  # the most common human answer
    caption: str  # a caption of its image ("" when none was given)

    def embedding_text(self, with_caption: bool) -> str:
        return f"{self.question} {self.caption}".strip() if with_caption else self.question


def load_encoder(name: str, device: str = "cpu") -> Any:
    """A sentence-transformers model by hub id, local directory, or bundled:NAME, with the product's errors."""
    from sentence_transformers import SentenceTransformer

    from zsvqa.models import load_pretrained, resolve

    return load_pretrained(
        SentenceTransformer, resolve(name, role="embedding"), "embedding", "--embedding-model", device=device
    )


def _embed(encoder: Any, texts: list[str], progress: bool = False) -> np.ndarray:
    vectors = encoder.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=progress)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def build_index(
    examples: list[TrainingExample],
    out_dir: str | Path,
    embedding_model: str,
    with_captions: bool = False,
    device: str = "cpu",
) -> Path:
    """Embed the examples (normalized, so inner product is cosine similarity) and save index and metadata."""
    import faiss

    if not examples:
        raise InputError("no training examples to index")
    encoder = load_encoder(embedding_model, device)
    vectors = _embed(encoder, [e.embedding_text(with_captions) for e in examples], progress=True)
    faiss.normalize_L2(vectors)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(out / INDEX_FILE))
    with (out / EXAMPLES_FILE).open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(asdict(example)) + "\n")
    meta = {"embedding_model": embedding_model, "with_captions": with_captions, "count": len(examples)}
    (out / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


def training_examples(questions: list[VQAQuestion], captions: dict[int, list[str]] | None) -> list[TrainingExample]:
    if questions and not questions[0].answers:
        raise InputError("indexing needs the training annotations (--annotations)")
    return [
        TrainingExample(
            q.question_id, q.image_id, q.question, most_common_answer(q.answers), ((captions or {}).get(q.image_id) or [""])[0]
        )
        for q in questions
    ]


class ExemplarRetriever:
    """question -> n_ensemble blocks of n_shot nearest training examples, nearest first."""

    def __init__(self, config: RetrievalConfig, device: str = "cpu") -> None:
        import faiss

        if not config.index:
            raise InputError(
                "retrieved exemplars need an index: build one with `run.py index` and pass it with --exemplars DIR "
                "(or use --exemplar-source none)"
            )
        folder = Path(config.index)
        if not (folder / INDEX_FILE).is_file() or not (folder / META_FILE).is_file():
            raise InputError(f"{str(folder)!r} is not an exemplar index (no {INDEX_FILE} / {META_FILE}); see `run.py index`")
        self.config = config
        self.meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        self.index = faiss.read_index(str(folder / INDEX_FILE))
        with (folder / EXAMPLES_FILE).open(encoding="utf-8") as handle:
            self.examples = [TrainingExample(**json.loads(line)) for line in handle if line.strip()]
        # The question must be embedded by the same model that embedded the index.
        self.encoder = load_encoder(self.meta["embedding_model"], device)

    def nearest(self, question: str, caption: str = "", k: int | None = None) -> list[tuple[TrainingExample, float]]:
        import faiss

        query = TrainingExample(0, 0, question, "", caption).embedding_text(self.meta["with_captions"])
        vector = _embed(self.encoder, [query])
        faiss.normalize_L2(vector)
        count = min(k or self.config.n_shot * self.config.n_ensemble, len(self.examples))
        scores, rows = self.index.search(vector, count)
        return [(self.examples[r], float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]

    def __call__(self, question: str, caption: str = "") -> list[list[QAExemplar]]:
        found = [QAExemplar(e.question, e.answer, e.caption) for e, _ in self.nearest(question, caption)]
        size = self.config.n_shot
        blocks = [found[i * size : (i + 1) * size] for i in range(self.config.n_ensemble)]
        return [block for block in blocks if block] or [[]]
