"""Big-LLM settings fail with one clear line where they cannot run; chat models get their chat template."""

import sys

import pytest
import torch

from conftest import CAPTIONS
from zsvqa.language_model import FrozenLM
from zsvqa.config import AnswererConfig, preset
from zsvqa.errors import InputError
from zsvqa.pipeline import Pipeline
from zsvqa.prompting import Prompt, chat_prompt

# A ChatML-style template, as instruction-tuned models ship them.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.mark.parametrize("setting", [{"device_map": "auto"}, {"load_in": "8bit"}, {"load_in": "4bit"}])
def test_big_model_settings_on_a_cpu_machine_are_one_clear_error(setting, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    name, value = next(iter(setting.items()))
    with pytest.raises(InputError, match=f"^answerer.{name}={value} needs a CUDA GPU and none is visible"):
        FrozenLM(AnswererConfig(model="tiny:causal-lm", **setting))


def test_quantized_loading_without_bitsandbytes_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # find_spec then reports it missing
    with pytest.raises(InputError, match="^answerer.load_in=4bit needs the bitsandbytes package: pip install"):
        FrozenLM(AnswererConfig(model="tiny:causal-lm", load_in="4bit"))


def test_bad_big_model_settings_are_refused_in_the_config() -> None:
    with pytest.raises(InputError, match="answerer.load_in must be 8bit, 4bit or none; got '3bit'"):
        preset("tiny").with_overrides({"answerer.load_in": "3bit"})
    with pytest.raises(InputError, match="answerer.chat_template needs a causal chat LM"):
        preset("pnp-vqa").with_overrides({"answerer.chat_template": "true"})


@pytest.fixture()
def chat_lm() -> FrozenLM:
    lm = FrozenLM(AnswererConfig(model="tiny:causal-lm", max_new_tokens=4))
    lm.tokenizer.chat_template = CHAT_TEMPLATE
    return lm


def test_chat_prompt_puts_system_and_user_parts_where_the_template_says(chat_lm) -> None:
    head = "Context: a red bus.\n"
    prompt = Prompt(text=head + "Question: what color?\nAnswer:", passages=[], captions=[], exemplars=[],
                    shared_prefix=len(head))
    chat = chat_prompt(prompt, chat_lm.tokenizer)
    assert chat.text.startswith("<|system|>\nYou answer questions about an image")
    assert chat.text.endswith(f"<|user|>\n{prompt.text}\n<|assistant|>\n")
    assert chat.text[: chat.shared_prefix].endswith(head) and chat.passages == [chat.text]
    assert chat.answer_prefix == ""


def test_chat_template_in_the_pipeline_and_a_tokenizer_without_one(chat_lm) -> None:
    pipeline = Pipeline(preset("tiny").with_overrides({"answerer.chat_template": "true"}))
    pipeline.__dict__["lm"] = chat_lm  # the tiny LM with a chat template in place of the preset's
    result = pipeline.answer("What is the man riding?", CAPTIONS)
    assert result.prompt.startswith("<|system|>") and "<|user|>\n" in result.prompt
    assert result.prompt.endswith("Question:what is the man riding?\nAnswer:\n<|assistant|>\n")
    chat_lm.tokenizer.chat_template = None
    with pytest.raises(InputError, match="answerer.chat_template is on, but the tokenizer of .* has no chat template"):
        pipeline.answer("What is the man riding?", CAPTIONS)


def test_chat_template_tokens_count_in_the_prompt_budget(chat_lm) -> None:
    budget = 160
    overrides = {"answerer.chat_template": "true", "answerer.max_prompt_tokens": budget, "prompt.num_captions": 30}
    pipeline = Pipeline(preset("tiny").with_overrides(overrides))
    chat_lm.config = pipeline.config.answerer
    pipeline.__dict__["lm"] = chat_lm
    captions = [f"a man riding a red bicycle past shop number {n}" for n in range(30)]
    result = pipeline.answer("What is the man riding?", captions)
    assert result.prompt.startswith("<|system|>")
    used = chat_lm.count_tokens(result.prompt)
    # Filled up to the budget (captions were dropped to fit), and the template's tokens inside it.
    assert budget - 15 < used <= budget
    plain = Pipeline(preset("tiny").with_overrides({**overrides, "answerer.chat_template": "false"}))
    plain.__dict__["lm"] = chat_lm
    assert len(plain.answer("What is the man riding?", captions).captions) > len(result.captions)
