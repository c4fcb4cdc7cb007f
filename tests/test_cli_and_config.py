"""CLI behaviour with the tiny preset (fast) and configuration presets / overrides."""

import json
import re
import shutil
import typing
from pathlib import Path

import pytest
from click.testing import CliRunner

from zsvqa.cli import main
from zsvqa.config import MINIMUMS, PRESETS, PipelineConfig, preset
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


@pytest.mark.parametrize(
    "args,message",
    [
        # Ranges, checked by PipelineConfig.validate before any model loads.
        (["-q", "why?", "-c", "x", "--set", "prompt.num_exemplars=-3"], "prompt.num_exemplars must be at least 0"),
        (["-q", "why?", "-c", "x", "--prompt-captions", "-1"], "prompt.num_captions must be at least 0"),
        (["-q", "why?", "-c", "x", "--caption-filter", "2.0"], "captioner.filter_threshold is an ITM probability"),
        (["-q", "why?", "-c", "x", "--set", "captioner.filter_threshold=-0.1"], "filter_threshold must be at least 0"),
        (["-q", "why?", "-c", "x", "--set", "captioner.top_k=0"], "captioner.top_k must be at least 1"),
        (["-q", "why?", "-c", "x", "--set", "matcher.batch_size=-2"], "matcher.batch_size must be at least 1"),
        (["-q", "why?", "-c", "x", "--set", "question_gen.batch_size=0"], "question_gen.batch_size must be at least 1"),
        (["-q", "why?", "-c", "x", "--seed", "-1"], "seed must be at least 0"),
        # Limits that depend on the model: checked when it loads (tiny images are 4x4 patches, 2 text layers).
        (["-q", "why?", "--image", "IMAGE", "--num-patches", "17"], "captioner.num_patches (17) exceeds the 16 patches"),
        (["-q", "why?", "--image", "IMAGE", "--set", "matcher.gradcam_layer=5"], "matcher.gradcam_layer must be in 0..1"),
        # Models: an empty local directory, and a hub id while the hub is unreachable (HF_HUB_OFFLINE=1 here).
        (["-q", "why?", "-c", "x", "--answerer-model", "EMPTY"], "is empty: it lacks config.json and weights"),
        (["-q", "why?", "-c", "x", "--answerer-model", "no-org/no-model"], "the Hugging Face hub is unreachable"),
        (["-q", "why?", "-c", "x", "--exemplars", "EMPTY"], "is not an exemplar index"),
    ],
)
def test_bad_settings_and_models_are_one_clear_error_line(args: list[str], message: str, tmp_path) -> None:
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "photo.png")
    (tmp_path / "empty").mkdir()
    places = {"IMAGE": str(tmp_path / "photo.png"), "EMPTY": str(tmp_path / "empty")}
    out = run("ask", "--preset", "tiny", *[places.get(a, a) for a in args])
    assert out.exit_code == 1
    assert_one_error_line(out.output, message)


def assert_one_error_line(output: str, message: str) -> None:
    """The output ends with one 'Error:' line holding the message, and holds no traceback."""
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], output
    assert output.rstrip().endswith(errors[0]) and "Traceback" not in output


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
    assert pnp.answerer.max_new_tokens == 19  # LAVIS's max_len 20 counts T5's decoder start token
    assert preset("img2llm").question_gen.backend == "t5" and preset("img2llm").captioner.filter_threshold == 0.5
    # The caption run behind Img2Prompt's numbers (run_okvqa.sh line 17: ..._sam_p1_min10_max20_cap100_npatch20_rp1_
    # t1_topk50): top-k 50 sampling, top_p 1 (generate's default: the captioner passes none), 10 to 20 tokens.
    img2llm_captions = preset("img2llm").captioner
    assert (img2llm_captions.decoding, img2llm_captions.top_k) == ("sample", 50)
    assert (img2llm_captions.min_length, img2llm_captions.max_length) == (10, 20)
    # Where the papers' other benchmarks differ: LAVIS gqa_eval_large.yaml (num_captions_fid 5), Img2LLM's A-OKVQA
    # run with its OK-VQA prompt (no yes/no exemplars); every other setting is the base preset's.
    gqa, aok = preset("pnp-vqa-gqa"), preset("img2llm-aokvqa")
    assert gqa.prompt.captions_per_passage == 5 and aok.prompt.yes_no_exemplars is False
    gqa.prompt.captions_per_passage, aok.prompt.yes_no_exemplars = 1, True
    assert (gqa.to_flat_dict() | {"name": "pnp-vqa"}) == preset("pnp-vqa").to_flat_dict()
    assert (aok.to_flat_dict() | {"name": "img2llm"}) == preset("img2llm").to_flat_dict()
    first = preset("offline")
    first.answerer.model = "changed"
    assert preset("offline").answerer.model == "bundled:gemma-3-270m"
    with pytest.raises(InputError, match="unknown preset"):
        preset("nope")


def test_overrides_coerce_types_and_validate() -> None:
    config = preset("offline").with_overrides(
        {"captioner.num_patches": "5", "captioner.filter_threshold": "none", "seed": "3", "answerer.kind": "seq2seq",
         "answerer.selection": "generate"}
    )
    assert (config.captioner.num_patches, config.captioner.filter_threshold, config.seed) == (5, None, 3)
    assert preset("offline").with_overrides({"captioner.filter_threshold": "0.5"}).captioner.filter_threshold == 0.5
    with pytest.raises(InputError, match="answerer.kind must be one of"):
        preset("offline").with_overrides({"answerer.kind": "magic"})
    with pytest.raises(InputError, match="answerer.kind 'fid' needs answerer.selection=generate"):
        preset("offline").with_overrides({"answerer.kind": "fid"})
    with pytest.raises(InputError, match="answerer.kind 'fid' needs prompt.style 'unifiedqa'"):
        preset("offline").with_overrides({"answerer.kind": "fid", "answerer.selection": "generate"})


def numeric_settings() -> list[str]:
    """Every dotted setting whose type is a number (int or float, optional or not; bool is not a number)."""
    settings = []
    for key in preset("offline").to_flat_dict():
        section, _, name = key.rpartition(".")
        owner = type(getattr(preset("offline"), section)) if section else PipelineConfig
        kinds = typing.get_args(typing.get_type_hints(owner)[name]) or (typing.get_type_hints(owner)[name],)
        if int in kinds or float in kinds:
            settings.append(key)
    return settings


def test_every_numeric_setting_has_a_range() -> None:
    # answerer.yes_bias and yes_bias_do are log-odds offsets: any real number, negative ones included.
    offsets = ("answerer.yes_bias", "answerer.yes_bias_do")
    for key in offsets:
        assert preset("offline").with_overrides({key: "-1e3"}).to_flat_dict()[key] == -1000.0
    keys = [key for key in numeric_settings() if key not in offsets]
    assert len(keys) == len(MINIMUMS) + 1 and "captioner.filter_threshold" in keys  # + vision_layer_norm_eps
    for key in keys:
        assert key in MINIMUMS or key == "vision_layer_norm_eps"
        with pytest.raises(InputError, match=re.escape(key)):
            preset("offline").with_overrides({key: -1})
        # The least allowed value is accepted (min_length must not exceed max_length).
        if key in MINIMUMS:
            least = {key: str(MINIMUMS[key]), **({"captioner.min_length": "0"} if key == "captioner.max_length" else {})}
            assert preset("offline").with_overrides(least).to_flat_dict()[key] == MINIMUMS[key]


def test_settings_are_type_checked() -> None:
    with pytest.raises(InputError, match="captioner.num_patches must be int; got 2.5"):
        preset("offline").with_overrides({"captioner.num_patches": 2.5})
    with pytest.raises(InputError, match="prompt.yes_no_exemplars must be bool; got 1"):
        preset("offline").with_overrides({"prompt.yes_no_exemplars": 1})
    with pytest.raises(InputError, match="seed must be int; got True"):
        PipelineConfig(seed=True).validate()
    with pytest.raises(InputError, match="captioner must be a CaptionerConfig"):
        PipelineConfig(captioner={"num_patches": 3}).validate()
    with pytest.raises(InputError, match="answerer.max_prompt_tokens must be int or none"):
        preset("offline").with_overrides({"answerer.max_prompt_tokens": 12.5})
    # An int is a float setting too.
    assert preset("offline").with_overrides({"captioner.filter_threshold": 1}).captioner.filter_threshold == 1


def test_pica_needs_an_exemplar_index() -> None:
    from zsvqa import Pipeline

    with pytest.raises(InputError, match="need an index: build one with `run.py index`"):
        Pipeline.from_preset("pica")
    out = run("ask", "--preset", "pica", "-q", "what?", "-c", "a dog")
    assert out.exit_code == 1 and "--exemplars DIR" in out.output


def test_python_api_checks_argument_types() -> None:
    """A string of captions is one caption, never its characters; other wrong types are a clear TypeError."""
    from PIL import Image

    from zsvqa import Pipeline, ask
    from zsvqa.pipeline import QuestionCaptions

    result = ask("what animal is it?", "a brown dog", preset_name="tiny", prompt__num_exemplars=0)
    assert result.all_captions == ["a brown dog"] and result.captions == ["a brown dog"]
    pipeline = Pipeline.from_preset("tiny", {"prompt.num_exemplars": "0"})
    assert pipeline.answer("what?", ("a dog", "a cat")).all_captions == ["a dog", "a cat"]
    assert pipeline.answer_captioned(QuestionCaptions("what?", "a red bus")).all_captions == ["a red bus"]
    picture = Image.new("RGB", (40, 30), (10, 200, 10))
    assert [r.question for r in pipeline.answer_image(picture, "what color is it?")] == ["what color is it?"]
    bad_calls = [
        (lambda: pipeline.answer(["what?"], ["a dog"]), r"question must be a string; got list"),
        (lambda: pipeline.answer(None, ["a dog"]), r"question must be a string; got NoneType"),
        (lambda: pipeline.answer("what?", ["a dog", 3]), r"captions\[1\] must be a string; got int"),
        (lambda: pipeline.answer("what?", {"a dog"}), r"captions must be a string or a list of strings; got set"),
        (lambda: pipeline.answer("what?", image=42), r"image must be a file path or a PIL image; got int"),
        (lambda: pipeline.answer_image(picture, [b"what?"]), r"questions\[0\] must be a string; got bytes"),
        (lambda: pipeline.answer_captioned({"question": "what?"}), r"captioned must be a QuestionCaptions"),
        (lambda: pipeline.answer_captioned(QuestionCaptions("what?", ["a dog"]), exemplars=["q: a"]), r"exemplars\[0\] must be"),
        (lambda: Pipeline({"name": "tiny"}), r"config must be a PipelineConfig"),
        (lambda: Pipeline.from_preset("tiny", [("seed", 1)]), r"overrides must be a dict"),
        (lambda: Pipeline.from_preset("tiny", {1: 2}), r"an override's key must be a dotted setting name"),
        (lambda: ask("what?", ["a dog"], preset_name=["tiny"]), r"preset_name must be a preset name"),
        (lambda: preset(None), r"preset name must be one of offline"),
    ]
    for call, message in bad_calls:
        with pytest.raises(TypeError, match=message):
            call()
    # Values (not types) stay InputErrors, which the CLI prints as one line.
    with pytest.raises(InputError, match="either an image or captions"):
        pipeline.answer("what?", ["a dog"], image=picture)
    with pytest.raises(InputError, match="no captions were given"):
        pipeline.answer("what?", ["  ", ""])


def test_random_model_warning_prints_once() -> None:
    """The pipeline logs it when built; the command line used to echo it a second time."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "run.py", "ask", "--preset", "tiny", "-q", "what is it?", "-c", "a dog"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("random models (tiny or random: names) are in use") == 1
    assert result.stdout.startswith("answer: ")


@pytest.mark.parametrize("name", list(PRESETS))
def test_config_command_prints_every_setting_as_set_takes_it(name: str) -> None:
    config = preset(name)
    out = run("config", "--preset", name, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == config.to_flat_dict()
    assert {"name", "seed", "captioner.num_patches", "answerer.model", "retrieval.n_shot"} <= set(json.loads(out.output))
    lines = run("config", "--preset", name).output.splitlines()
    assert lines == config.to_set_lines() and len(lines) == len(config.to_flat_dict())
    # Each line, given back to --set, reproduces the preset exactly (text values verbatim, none, true/false).
    settings = [arg for line in lines for arg in ("--set", line)]
    again = run("config", "--preset", "offline" if name != "offline" else "tiny", *settings, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == config.to_flat_dict()


def test_config_command_applies_overrides_and_rejects_bad_ones() -> None:
    out = run("config", "--preset", "tiny", "--set", "captioner.top_k=20", "--num-captions", "3", "--json")
    settings = json.loads(out.output)
    assert (settings["captioner.top_k"], settings["captioner.num_captions"]) == (20, 3)
    assert settings == preset("tiny").with_overrides({"captioner.top_k": 20, "captioner.num_captions": 3}).to_flat_dict()
    assert "captioner.filter_threshold=none" in run("config", "--preset", "tiny").output.splitlines()
    bad = run("config", "--preset", "tiny", "--set", "prompt.num_exemplars=-3")
    assert bad.exit_code == 1
    assert_one_error_line(bad.output, "prompt.num_exemplars must be at least 0")
