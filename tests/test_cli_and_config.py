"""CLI behaviour with the tiny preset (fast) and configuration presets / overrides."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from zsvqa.cli import main
from zsvqa.config import PRESETS, preset
from zsvqa.errors import InputError


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_ask_json_with_tiny_preset(tmp_path) -> None:
    captions = tmp_path / "captions.txt"
    captions.write_text("a dog on a couch\n\na cat next to a dog\n")
    out = run("ask", "--preset", "tiny", "-q", "what animal is it?", "--captions-file", str(captions),
              "-c", "a brown dog", "--json", "--set", "prompt.num_exemplars=2")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["all_captions"] == ["a brown dog", "a dog on a couch", "a cat next to a dog"]
    # Two QA pairs (prompt.num_exemplars) after the three yes/no exemplars.
    assert len(data["exemplars"]) == 3 + 2 and data["question"] == "what animal is it?"


EVAL = ["eval", "--preset", "tiny", "--dataset", "vqav2", "--questions", "{data}/questions.json",
        "--annotations", "{data}/annotations.json", "--images", "{data}/val2014", "--no-progress"]
ASK = ["ask", "--preset", "tiny"]
ASK_IMAGE = [*ASK, "-q", "what is it?", "-i", "{tmp}/photo.png"]

# Each bad input: the command, and what its one-line error says. {tmp} is a scratch folder holding photo.png,
# a plain file afile, a folder adir.png and the synthetic dataset in data/. No model may load before the error.
BAD_INPUTS = [
    ([*ASK, "-q", "   ", "-c", "a dog"], "the question is empty"),
    ([*ASK, "-q", "why?"], "no captions were given"),
    ([*ASK, "-q", "why?", "--captions-file", "/no/such/file.txt"], "cannot read the captions file"),
    ([*ASK, "-q", "why?", "-c", "x", "--set", "answerer.nope=1"], "unknown setting 'answerer.nope'"),
    ([*ASK, "-q", "why?", "-c", "x", "--set", "captioner.num_patches=many"], "cannot take the value"),
    ([*ASK, "-q", "why?", "-c", "x", "--answerer-model", "/no/such/dir"], "no such file or directory"),
    ([*ASK_IMAGE, "--relevance", "uniform", "--save-heatmap", "{tmp}/h.png"], "needs a relevance map"),
    ([*ASK_IMAGE, "--save-heatmap", "{tmp}/h.txt"], "needs one of the suffixes"),
    ([*ASK_IMAGE, "--save-heatmap", "/proc/h.png"], "'/proc/h.png' is not writable"),
    ([*ASK_IMAGE, "--save-heatmap", "{tmp}/afile/h.png"], "afile' is a file"),
    ([*ASK_IMAGE, "--save-heatmap", "{tmp}/adir.png"], "adir.png' is a folder, not a file"),
    ([*EVAL, "--out", "/proc/run"], "--out '/proc/run' is not writable"),
    ([*EVAL, "--out", "{tmp}/afile/run"], "cannot be made: '{tmp}/afile' is a file"),
    ([*EVAL, "--out", "{tmp}/afile"], "afile' is a file, not a folder"),
    ([*EVAL, "--out", "{tmp}/run", "--cache", "{tmp}/adir.png"], "adir.png' is a folder"),
    ([*EVAL, "--out", "{tmp}/run", "--cache", "{tmp}/afile"], "cannot be used as an SQLite cache (file is not a database)"),
    (["index", "--questions", "{data}/questions.json", "--annotations", "{data}/annotations.json", "--out", "/proc/i"],
     "--out '/proc/i' is not writable"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_inputs_are_one_clear_line_before_any_model_loads(args, message, tmp_path, monkeypatch) -> None:
    import zsvqa.models
    from PIL import Image

    from synthetic_data import write_dataset

    write_dataset(tmp_path / "data")
    Image.new("RGB", (32, 24), "red").save(tmp_path / "photo.png")
    (tmp_path / "afile").write_text("not a folder, not a database")
    (tmp_path / "adir.png").mkdir()

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the error")

    monkeypatch.setattr(zsvqa.models, "load_pretrained", no_loading)
    paths = {"tmp": str(tmp_path), "data": str(tmp_path / "data")}
    out = run(*[arg.format(**paths) for arg in args])
    assert out.exit_code == 1, out.output
    assert message.format(**paths) in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1, out.output
    assert not (tmp_path / "run").exists()


def test_heatmap_write_failure_still_prints_the_answer_first(tmp_path, monkeypatch) -> None:
    import zsvqa.heatmap
    from PIL import Image

    Image.new("RGB", (32, 24), "red").save(tmp_path / "photo.png")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zsvqa.heatmap, "save_heatmap", disk_full)
    out = run("ask", "--preset", "tiny", "-q", "what is it?", "-i", str(tmp_path / "photo.png"),
              "--save-heatmap", str(tmp_path / "h.png"))
    assert out.exit_code == 1 and "Traceback" not in out.output
    answer, error = out.output.index("answer: "), out.output.index("Error: the heatmap could not be written")
    assert answer < error and "No space left on device" in out.output


def test_read_only_out_folder_is_refused_before_work(tmp_path) -> None:
    """A read-only folder, for real. Permission bits bind no root, so as root the folder is a read-only bind
    mount in a private mount namespace (the subprocess's alone)."""
    import os
    import subprocess
    import sys

    from synthetic_data import write_dataset

    data = write_dataset(tmp_path / "data")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    command = [sys.executable, "run.py", *[a.format(data=data["questions"].parent) for a in EVAL], "--no-cache",
               "--out", str(read_only / "run")]
    if os.geteuid() == 0:
        if not shutil.which("unshare") or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
            pytest.skip("running as root without mount namespaces: no way to make a folder read-only")
        command = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(read_only), *command]
    else:
        read_only.chmod(0o555)
    result = subprocess.run(command, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
                            timeout=300)
    read_only.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert f"--out '{read_only}/run' is not writable" in result.stderr and "Traceback" not in result.stderr


def test_captions_file_json_and_bad_json(tmp_path) -> None:
    good = tmp_path / "c.json"
    good.write_text(json.dumps(["a dog", "a cat"]))
    assert run("ask", "--preset", "tiny", "-q", "what?", "--captions-file", str(good)).exit_code == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = run("ask", "--preset", "tiny", "-q", "what?", "--captions-file", str(bad))
    assert out.exit_code == 1 and "not valid JSON" in out.output


def test_presets_are_fresh_valid_and_paper_faithful() -> None:
    for name in PRESETS:
        assert preset(name).name == name
    pnp = preset("pnp-vqa")
    assert (pnp.captioner.num_patches, pnp.captioner.num_captions, pnp.answerer.kind) == (20, 100, "fid")
    assert preset("img2llm").question_gen.backend == "t5" and preset("img2llm").captioner.filter_threshold == 0.5
    first = preset("offline")
    first.answerer.model = "changed"
    assert preset("offline").answerer.model == "bundled:gemma-3-270m"
    with pytest.raises(InputError, match="unknown preset"):
        preset("nope")


def test_overrides_coerce_types_and_validate() -> None:
    config = preset("offline").with_overrides(
        {"captioner.num_patches": "5", "captioner.filter_threshold": "none", "seed": "3", "answerer.kind": "seq2seq"}
    )
    assert (config.captioner.num_patches, config.captioner.filter_threshold, config.seed) == (5, None, 3)
    assert preset("offline").with_overrides({"captioner.filter_threshold": "0.5"}).captioner.filter_threshold == 0.5
    with pytest.raises(InputError, match="answerer.kind must be one of"):
        preset("offline").with_overrides({"answerer.kind": "magic"})
    with pytest.raises(InputError, match="fid"):
        preset("offline").with_overrides({"answerer.kind": "fid"})


def test_pica_needs_an_exemplar_index() -> None:
    from zsvqa import Pipeline

    with pytest.raises(InputError, match="need an index: build one with `run.py index`"):
        Pipeline.from_preset("pica")
    out = run("ask", "--preset", "pica", "-q", "what?", "-c", "a dog")
    assert out.exit_code == 1 and "--exemplars DIR" in out.output
