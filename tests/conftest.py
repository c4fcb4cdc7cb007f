"""Shared test setup: offline, seeded, and tiny models built once per machine (they are deterministic)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never wait on network retries
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"

# Parallel workers (pytest -n, as `make test` runs) share the cores: torch's own threads would oversubscribe them.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _WORKERS))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def assert_golden(name: str, text: str) -> None:
    """Compare with tests/golden/NAME; ZSVQA_UPDATE_GOLDEN=1 rewrites the file (then review the diff)."""
    path = GOLDEN / name
    if os.environ.get("ZSVQA_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with ZSVQA_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8")


CAPTIONS = [
    "a man riding a red bicycle down a city street",
    "a man on a bike next to two parked cars",
    "a cyclist wearing a helmet rides past a bus",
    "a red bicycle on the street",
]


def spy_generate(monkeypatch: pytest.MonkeyPatch, stage: Any) -> list[dict]:
    """Record what a stage with a `.model` (FrozenLM, T5Questions) hands to the model's `generate`, and what it got
    back, calling the real one."""
    calls: list[dict] = []
    real = stage.model.generate

    def recording(**kwargs):  # type: ignore[no-untyped-def]
        output = real(**kwargs)
        calls.append({**kwargs, "output": output})
        return output

    monkeypatch.setattr(stage.model, "generate", recording)
    return calls
