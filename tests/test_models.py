"""Model loading: the hub probe that makes offline failures fast, and local model directories that lack files."""

import os
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from zsvqa import models
from zsvqa.errors import ModelLoadError
from zsvqa.models import ModelSource, hub_reachable, load_frozen, load_pretrained, resolve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def probe(monkeypatch):
    """hub_reachable with HF_HUB_OFFLINE unset and its memo cleared; returns the list of requests it made."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    requests: list[tuple[str, str, float]] = []
    hub_reachable.cache_clear()
    yield requests
    hub_reachable.cache_clear()


def fake_urlopen(requests: list, outcome: Exception | None):
    def urlopen(request, timeout):
        requests.append((request.full_url, request.get_method(), timeout))
        if outcome is not None:
            raise outcome
    return urlopen


def test_hub_probe_honours_hf_hub_offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models.urllib.request, "urlopen", fake_urlopen([], AssertionError("no request offline")))
    hub_reachable.cache_clear()
    try:
        assert hub_reachable() is False
    finally:
        hub_reachable.cache_clear()


def test_hub_probe_is_one_short_request_memoised(probe, monkeypatch) -> None:
    monkeypatch.setattr(models.urllib.request, "urlopen", fake_urlopen(probe, urllib.error.URLError("no DNS")))
    assert hub_reachable() is False and hub_reachable() is False
    assert len(probe) == 1  # memoised per process
    url, method, timeout = probe[0]
    from huggingface_hub import constants

    assert url == constants.ENDPOINT and method == "HEAD" and timeout <= 3


@pytest.mark.parametrize("outcome,reachable", [
    (None, True),
    (urllib.error.HTTPError("https://huggingface.co", 503, "busy", {}, None), True),  # the server answered
    (TimeoutError("timed out"), False),
    (ConnectionRefusedError(111, "refused"), False),
])
def test_hub_probe_outcomes(probe, monkeypatch, outcome, reachable) -> None:
    monkeypatch.setattr(models.urllib.request, "urlopen", fake_urlopen(probe, outcome))
    assert hub_reachable() is reachable


def test_unreachable_hub_loads_from_the_local_cache_only(probe, monkeypatch) -> None:
    monkeypatch.setattr(models, "hub_reachable", lambda: False)
    seen: dict = {}

    class Loader:
        @classmethod
        def from_pretrained(cls, location, **kwargs):
            seen.update(kwargs, location=location)
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    with pytest.raises(ModelLoadError) as error:
        load_pretrained(Loader, resolve("no-such-org/no-such-model"), "answerer", "--answerer-model")
    assert seen == {"location": "no-such-org/no-such-model", "local_files_only": True}
    message = str(error.value)
    assert "\n" not in message and "'no-such-org/no-such-model'" in message and "hub is unreachable" in message
    assert "--answerer-model /path/to/model" in message


def test_offline_hub_id_fails_in_seconds_without_retry_logs(tmp_path) -> None:
    """The real command, HF_HUB_OFFLINE unset and the hub endpoint refusing connections: the probe decides."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "run.py", "ask", "--preset", "tiny", "-q", "what?", "-c", "a dog",
         "--answerer-model", "no-such-org/no-such-model"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    seconds = time.monotonic() - start
    assert result.returncode == 1
    # Without the probe this takes about 50 s here (5 retries per file) and minutes elsewhere.
    assert seconds < 30, seconds
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0])
    assert "hub is unreachable" in errors[0] and "--answerer-model /path/to/model" in errors[0]
    assert "Retry" not in result.stderr and "Traceback" not in result.stderr


def test_empty_or_incomplete_model_directory_says_what_it_lacks(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=r"'.*empty' is empty: it lacks config.json and weights \(model.safetensors"):
        load_frozen(object, str(empty), "answerer", "--answerer-model")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"is incomplete: it lacks weights .*--answerer-model a directory"):
        load_frozen(object, str(partial), "answerer", "--answerer-model")
    # A complete directory (a tiny model) passes the check and loads.
    complete = resolve("tiny:causal-lm")
    models.check_model_dir(complete, "answerer", "--answerer-model")
    assert not ModelSource("x", str(complete.location)).is_hub_id and ModelSource("a/b", "a/b").is_hub_id



MAPPED_BYTES_AROUND_A_TENSOR = """
import ctypes, sys, torch
from zsvqa.models import reuse_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
before = libc.mallinfo2().hblkhd
activation = torch.empty(40 * 2**20 // 4)  # a 40 MiB activation
mapped = libc.mallinfo2().hblkhd - before
del activation
print(mapped)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator policy")
def test_reused_memory_serves_large_tensors_from_the_heap_instead_of_fresh_mappings() -> None:
    def mapped_bytes(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", MAPPED_BYTES_AROUND_A_TENSOR, mode],
                             capture_output=True, text=True, check=True)
        return int(run.stdout.split()[-1])

    assert mapped_bytes("system") >= 40 * 2**20  # glibc's default: a fresh mapping, page-faulted in on first use
    assert mapped_bytes("reuse") == 0


def test_the_pipeline_keeps_freed_memory_on_a_cpu_unless_told_not_to(monkeypatch) -> None:
    from zsvqa import stages
    from zsvqa.config import preset

    calls: list[bool] = []
    monkeypatch.setattr(stages, "reuse_freed_memory", lambda: calls.append(True) or True)
    stages.Stages(preset("tiny"))
    assert calls == [True]
    stages.Stages(preset("tiny").with_overrides({"reuse_memory": "false"}))
    assert calls == [True]
