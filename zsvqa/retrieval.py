"""PICa-style exemplar retrieval: training examples in a faiss index; the nearest ones to a test question become
in-context examples, each with its caption and a human answer.

Similarity is PICa's: question similarity plus, when the index holds image vectors and the test image is at
hand, image similarity (both cosine). Each example is stored as its L2-normalised question vector followed by
its L2-normalised image vector, so one inner-product search scores question_sim + image_sim exactly; a query
without an image has zeros in the image part and so scores question_sim alone.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from zsvqa.config import PipelineConfig, RetrievalConfig
from zsvqa.datasets import VQAQuestion, index_images, most_common_answer
from zsvqa.embedding import embed, load_encoder
from zsvqa.errors import InputError
from zsvqa.images import load_image
from zsvqa.normalize import clean_caption
from zsvqa.prompting import QAExemplar

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
EXAMPLES_FILE = "examples.jsonl"
META_FILE = "meta.json"
# Of the index files; older indexes must be rebuilt. 3: captions stored as written (2 stored them cleaned).
FORMAT = 3
QUESTION_SIMILARITY = "question"
QUESTION_IMAGE_SIMILARITY = "question+image"
IMAGE_BATCH = 64  # training images decoded at a time


@dataclass
class TrainingExample:
    question_id: int
    image_id: int
    question: str
    answers: list[str]  # the human answers, in annotation order
    caption: str  # a caption of its image ("" when none was given)

    def embedding_text(self, with_caption: bool) -> str:
        # Embedded cleaned, whatever prompt.clean_captions shows: a query's caption matches either way.
        return f"{self.question} {clean_caption(self.caption)}".strip() if with_caption else self.question

    def answer(self, which: str) -> str:
        """The answer an exemplar shows: "first" (the first annotator's) or "most_common"."""
        return self.answers[0] if which == "first" else most_common_answer(self.answers)


@dataclass
class Retrieved:
    blocks: list[list[QAExemplar]]  # one block of n_shot exemplars per ensemble prompt, nearest first
    similarity: str  # what ranked them: QUESTION_IMAGE_SIMILARITY or QUESTION_SIMILARITY


def _embed_images(encoder: Any, paths: list[Path], progress: bool, exif_orientation: bool) -> np.ndarray:
    batches = range(0, len(paths), IMAGE_BATCH)
    return np.concatenate([
        embed(encoder, [load_image(p, exif_orientation) for p in paths[start : start + IMAGE_BATCH]])
        for start in tqdm(batches, desc="images", unit="batch", disable=not progress)
    ])


def _example_image_vectors(
    examples: list[TrainingExample], images_dir: str | Path, encoder_for: Callable[[], Any], exif_orientation: bool
) -> np.ndarray:
    """Each example's image embedding, one row per example (each image embedded once). The encoder loads once every
    image is known to be there."""
    available = index_images(images_dir)
    image_ids = sorted({e.image_id for e in examples})
    missing = [i for i in image_ids if i not in available]
    if missing:
        raise InputError(
            f"{len(missing)} training images have no file in {str(images_dir)!r}, e.g. image ids {missing[:5]}"
        )
    image_vectors = _embed_images(encoder_for(), [available[i] for i in image_ids], True, exif_orientation)
    row = {image_id: n for n, image_id in enumerate(image_ids)}
    return image_vectors[[row[e.image_id] for e in examples]]


def build_index(
    examples: list[TrainingExample],
    out_dir: str | Path,
    config: RetrievalConfig,
    with_captions: bool = False,
    device: str = "cpu",
    images_dir: str | Path | None = None,
    exif_orientation: bool = PipelineConfig.exif_orientation,
) -> Path:
    """Embed the examples' questions (and, with an image embedding model, their images) and save the index.
    `exif_orientation` turns the images upright by their EXIF tag; queries read their image the same way."""
    import faiss

    if not examples:
        raise InputError("no training examples to index")
    image_model = config.image_embedding_model
    if image_model and images_dir is None:
        raise InputError(
            f"image similarity embeds the training images with {image_model!r}: give their folder with --images, "
            "or --image-embedding-model none for question similarity only"
        )
    if images_dir is not None and not image_model:
        raise InputError("--images needs an image embedding model, e.g. --image-embedding-model clip-ViT-B-32")
    encoder = load_encoder(config.embedding_model, device)
    vectors = embed(encoder, [e.embedding_text(with_captions) for e in examples], progress=True)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "embedding_model": config.embedding_model,
        "image_embedding_model": image_model,
        "images": str(images_dir) if images_dir is not None else None,
        "with_captions": with_captions,
        "exif_orientation": exif_orientation,
        "count": len(examples),
        "question_dim": vectors.shape[1],
        "image_dim": 0,
    }
    if image_model and images_dir is not None:
        def image_encoder() -> Any:
            if image_model == config.embedding_model:
                return encoder
            return load_encoder(image_model, device, "--image-embedding-model")

        image_vectors = _example_image_vectors(examples, images_dir, image_encoder, exif_orientation)
        vectors = np.ascontiguousarray(np.hstack([vectors, image_vectors]))
        meta["image_dim"] = image_vectors.shape[1]
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(out / INDEX_FILE))
    with (out / EXAMPLES_FILE).open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(asdict(example)) + "\n")
    (out / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


def training_examples(questions: list[VQAQuestion], captions: dict[int, list[str]] | None) -> list[TrainingExample]:
    """Annotated training questions as examples, each with its image's first caption as written (PICa shows COCO's
    caption unchanged). Like PICa, an example with an empty question or an empty first answer is never shown
    (PICa draws a random example in its place; here the next nearest one takes it)."""
    if questions and not questions[0].answers:
        raise InputError("indexing needs the training annotations (--annotations)")
    return [
        TrainingExample(
            q.question_id, q.image_id, q.question, q.answers, " ".join(((captions or {}).get(q.image_id) or [""])[0].split())
        )
        for q in questions
        if q.question.strip() and q.answers and q.answers[0].strip() and most_common_answer(q.answers).strip()
    ]


class ExemplarRetriever:
    """question (and image) -> n_ensemble blocks of n_shot nearest training examples, nearest first."""

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
        self.device = device
        self.meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if self.meta.get("format") != FORMAT:
            raise InputError(f"{str(folder)!r} was built by an older zsvqa; rebuild it with `run.py index`")
        self.index = faiss.read_index(str(folder / INDEX_FILE))
        with (folder / EXAMPLES_FILE).open(encoding="utf-8") as handle:
            self.examples = [TrainingExample(**json.loads(line)) for line in handle if line.strip()]
        built = (self.meta["embedding_model"], self.meta["image_embedding_model"])
        if built != (config.embedding_model, config.image_embedding_model):
            log.warning("the exemplar index was built with %s / %s; queries use those models too", *built)
        # The question must be embedded by the same model that embedded the index.
        self.encoder = load_encoder(self.meta["embedding_model"], device)
        self._image_vectors: dict[str, np.ndarray] = {}  # the last image's vector: its questions come together

    @functools.cached_property
    def image_encoder(self) -> Any:
        name = self.meta["image_embedding_model"]
        if name == self.meta["embedding_model"]:
            return self.encoder
        return load_encoder(name, self.device, "--image-embedding-model")

    def similarity_for(self, with_image: bool) -> str:
        """What ranks the examples for a query with or without its image."""
        return QUESTION_IMAGE_SIMILARITY if with_image and self.meta["image_dim"] else QUESTION_SIMILARITY

    def _image_vector(self, image: str | Path | Image.Image) -> np.ndarray:
        key = None if isinstance(image, Image.Image) else str(image)
        if key is not None and key in self._image_vectors:
            return self._image_vectors[key]
        vector = embed(self.image_encoder, [load_image(image, self.meta["exif_orientation"])])
        if key is not None:
            self._image_vectors = {key: vector}
        return vector

    def query_vector(self, question: str, caption: str = "", image: str | Path | Image.Image | None = None) -> np.ndarray:
        text = TrainingExample(0, 0, question, [], caption).embedding_text(self.meta["with_captions"])
        vector = embed(self.encoder, [text])
        if self.meta["image_dim"]:
            image_part = (
                self._image_vector(image)
                if image is not None
                else np.zeros((1, self.meta["image_dim"]), dtype=np.float32)
            )
            vector = np.ascontiguousarray(np.hstack([vector, image_part]))
        return vector

    def nearest(
        self, question: str, caption: str = "", k: int | None = None, image: str | Path | Image.Image | None = None
    ) -> list[tuple[TrainingExample, float]]:
        count = min(k or self.config.n_shot * self.config.n_ensemble, len(self.examples))
        scores, rows = self.index.search(self.query_vector(question, caption, image), count)
        return [(self.examples[r], float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]

    def __call__(self, question: str, caption: str = "", image: str | Path | Image.Image | None = None) -> Retrieved:
        found = [
            QAExemplar(e.question, e.answer(self.config.exemplar_answer), e.caption)
            for e, _ in self.nearest(question, caption, image=image)
        ]
        size = self.config.n_shot
        blocks = [found[i * size : (i + 1) * size] for i in range(self.config.n_ensemble)]
        return Retrieved([block for block in blocks if block] or [[]], self.similarity_for(image is not None))
