"""Sentence embeddings (sentence-transformers): the encoder that exemplar retrieval and A-OKVQA's choice mapping
share. CLIP models encode both texts and PIL images."""

from __future__ import annotations

from typing import Any

import numpy as np


def load_encoder(name: str, device: str = "cpu", option: str = "--embedding-model") -> Any:
    """A sentence-transformers model by hub id, local directory, bundled:NAME or tiny:NAME, with the product's
    errors. CLIP models encode both texts and PIL images."""
    from sentence_transformers import SentenceTransformer

    from zsvqa.models import load_pretrained, resolve

    return load_pretrained(SentenceTransformer, resolve(name, role="embedding"), "embedding", option, device=device)


def embed(encoder: Any, items: list[Any], progress: bool = False) -> np.ndarray:
    """L2-normalised embeddings (texts or images), float32, one row each."""
    import faiss

    vectors = encoder.encode(items, batch_size=64, convert_to_numpy=True, show_progress_bar=progress)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(vectors)
    return vectors
