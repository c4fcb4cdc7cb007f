"""Timing the stages: each question's result says how many seconds each stage spent on it; a batched call's
time is shared out over the questions it served."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import torch


@contextlib.contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the block's seconds to `timings[stage]`; under torch.profiler the block shows as "zsvqa.<stage>"."""
    start = time.perf_counter()
    try:
        with torch.profiler.record_function(f"zsvqa.{stage}"):
            yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def share_out(timings: list[dict[str, float]], stage: str, seconds: float, weights: list[float]) -> None:
    """Adds to each item's `timings[stage]` its share of a batched call's `seconds`, by its weight (its prompts or
    questions in the batch)."""
    total = sum(weights) or 1
    for own, weight in zip(timings, weights):
        own[stage] = own.get(stage, 0.0) + seconds * weight / total


def add_timings(timings: dict[str, float], more: dict[str, float]) -> None:
    for stage, seconds in more.items():
        timings[stage] = timings.get(stage, 0.0) + seconds
