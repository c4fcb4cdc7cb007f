"""CLI behaviour with the tiny preset (fast) and configuration presets / overrides."""

import json

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


@pytest.mark.parametrize(
    "args,message",
    [
        (["-q", "   ", "-c", "a dog"], "the question is empty"),
        (["-q", "why?"], "no captions were given"),
        (["-q", "why?", "--captions-file", "/no/such/file.txt"], "cannot read the captions file"),
        (["-q", "why?", "-c", "x", "--set", "answerer.nope=1"], "unknown setting 'answerer.nope'"),
        (["-q", "why?", "-c", "x", "--set", "captioner.num_patches=many"], "cannot take the value"),
        (["-q", "why?", "-c", "x", "--answerer-model", "/no/such/dir"], "no such file or directory"),
    ],
)
def test_ask_errors_are_one_clear_line(args: list[str], message: str) -> None:
    out = run("ask", "--preset", "tiny", *args)
    assert out.exit_code == 1
    assert message in out.output and "Traceback" not in out.output


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
