"""zsvqa: zero-shot visual question answering with frozen models (PNP-VQA, Img2LLM, PICa)."""

__version__ = "0.1.0"

from zsvqa.config import PRESETS, PipelineConfig, preset  # noqa: E402
from zsvqa.errors import InputError, ModelLoadError, ZsvqaError  # noqa: E402
from zsvqa.pipeline import Pipeline, VQAResult, ask  # noqa: E402

__all__ = [
    "PRESETS",
    "InputError",
    "ModelLoadError",
    "Pipeline",
    "PipelineConfig",
    "VQAResult",
    "ZsvqaError",
    "ask",
    "preset",
]
