"""zsvqa: zero-shot visual question answering with frozen models (PNP-VQA, Img2LLM, PICa)."""

from zsvqa.config import PRESETS, PipelineConfig, preset
from zsvqa.errors import InputError, ModelLoadError, ZsvqaError
from zsvqa.pipeline import Pipeline, VQAResult, ask

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
