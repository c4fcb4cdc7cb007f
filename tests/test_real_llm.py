"""End to end with the real bundled Gemma-3-270M (de-quantized once, then cached; about a minute the first time).

Only what a real model reliably does is asserted: a short answer, a finite log-probability, and a prompt that
holds every exemplar. Nothing here measures accuracy.
"""

import json
import math
import re

import pytest
from click.testing import CliRunner

from conftest import CAPTIONS
from zsvqa import Pipeline, ask
from zsvqa.cli import main

pytestmark = pytest.mark.slow
# The offline preset with Img2LLM's prompt and template-written synthetic QA exemplars about the image.
SYNTHETIC = {"prompt.style": "img2llm", "prompt.template": "none", "prompt.exemplars": "synthetic",
             "question_gen.backend": "template"}


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.from_preset("offline")


@pytest.fixture(scope="module")
def synthetic(pipeline: Pipeline) -> Pipeline:
    with_exemplars = Pipeline(pipeline.config.with_overrides(SYNTHETIC))
    with_exemplars.__dict__["lm"] = pipeline.lm  # share the loaded model
    return with_exemplars


def test_ask_from_captions_with_gemma(synthetic: Pipeline) -> None:
    pipeline = synthetic
    result = pipeline.answer("What is the man riding?", CAPTIONS)
    assert result.answer and len(result.answer.split()) <= 5 and "\n" not in result.raw_answer
    assert math.isfinite(result.logprob)
    assert result.exemplars, "the template generator yields exemplars from these captions"
    prompt = result.prompt.lower()
    for exemplar in result.exemplars:
        assert exemplar.question in prompt and exemplar.answer in prompt
    assert prompt.endswith("what is the man riding?\nanswer:")
    assert set(result.timings) >= {"candidates", "question_generation", "prompt", "answer"}
    assert pipeline.answer("What is the man riding?", CAPTIONS).answer == result.answer  # deterministic


def test_llm_question_generator_with_gemma(pipeline: Pipeline) -> None:
    llm_pipeline = Pipeline(pipeline.config.with_overrides(
        {**SYNTHETIC, "question_gen.backend": "llm", "prompt.num_exemplars": 3}
    ))
    llm_pipeline.__dict__["lm"] = pipeline.lm  # share the loaded model
    result = llm_pipeline.answer("What color is the bicycle?", CAPTIONS[:2])
    # Img2LLM's yes/no exemplars lead and are not counted in num_exemplars.
    answers = [e.answer for e in result.exemplars]
    assert answers[0] == "no" and answers[:3].count("no") == 2  # "yes" is there when the LLM wrote its question
    generated = result.exemplars[3 if answers[1] == "yes" else 2:]
    assert 0 < len(generated) <= 3
    assert all(e.question.endswith("?") for e in result.exemplars)


def test_one_call_api_and_cli_json() -> None:
    result = ask("What is on the man's head?", CAPTIONS, prompt__num_exemplars=2,
                 **{key.replace(".", "__"): value for key, value in SYNTHETIC.items()})
    assert result.answer and [e.answer for e in result.exemplars[:3]] == ["no", "yes", "no"]
    assert 0 < len(result.exemplars) - 3 <= 2  # after the three yes/no exemplars
    out = CliRunner().invoke(main, ["ask", "-q", "What is the man riding?", "-c", CAPTIONS[0], "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["answer"] and re.fullmatch(r"[\w' .-]+", data["answer"])
    assert data["captions"] == [CAPTIONS[0]]


def test_converted_gguf_is_reused_not_reconverted(pipeline: Pipeline, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM

    from zsvqa import models

    source = models.resolve("bundled:gemma-3-270m")
    assert source.gguf_file and source.gguf_file.endswith(".gguf")
    monkeypatch.setattr(models, "load_pretrained", lambda *a, **k: pytest.fail("converted again"))
    cached = models.converted_gguf(AutoModelForCausalLM, source, "answerer", "--answerer-model")
    assert (models.Path(cached.location) / "config.json").exists() and cached.gguf_file is None


def test_the_issue_example_answers_no() -> None:
    """The new user's example: with the offline preset's grounded yes/no, a circle is no rectangle."""
    out = CliRunner().invoke(main, ["ask", "--preset", "offline", "--json", "-q", "is there a rectangle?",
                                    "-c", "a black circle."])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["answer"] == "no" and set(data["choice_scores"]) == {"yes", "no"}
    assert "circle.." not in data["prompt"] and ".?" not in data["prompt"]


def test_shared_prefix_reuse_equals_full_encoding_past_the_sliding_window(synthetic: Pipeline) -> None:
    """Gemma-3 has 512-token sliding-window layers: a cached head longer than that must change nothing."""
    from zsvqa.prompting import QAExemplar

    pipeline = synthetic  # Img2LLM's wordier prompt: a head past the 512-token window
    lm = pipeline.lm
    captions = [f"a man number {i} riding a red bicycle down a long city street near a bus stop" for i in range(30)]
    exemplars = [QAExemplar(f"what is man {i} riding?", "bicycle") for i in range(20)]
    for question in ("what color is the bike?", "is there a dog?"):
        prompt = pipeline.prompt_builder(question, captions, exemplars)
        assert lm.count_tokens(prompt.text[: prompt.shared_prefix]) > 600
        reused = lm.score(prompt.text, [" red\n", "yes\n"], prompt.shared_prefix)
        assert reused == pytest.approx(lm.score(prompt.text, [" red\n", "yes\n"]), abs=1e-3)
        assert lm.generate_one(prompt.text, prompt.shared_prefix).text == lm.generate([prompt.text])[0].text


@pytest.mark.parametrize("question,caption", [
    ("does the image contain a rectangle?", "a black rectangle."),
    ("is there not a green shape?", "a yellow triangle."),
])
def test_simple_scenes_of_issue_18_answer_yes(pipeline: Pipeline, question: str, caption: str) -> None:
    """One short exact caption: the captions decide, also through a "not"."""
    result = pipeline.answer(question, [caption])
    assert result.answer == "yes" and set(result.choice_scores) == {"yes", "no"}
    assert "grounding" in result.timings
