"""The frozen language model that answers, behind one interface for causal, seq2seq and Fusion-in-Decoder LMs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from zsvqa.config import AnswererConfig
from zsvqa.models import load_frozen
from zsvqa.normalize import clean_answer
from zsvqa.prompting import Prompt


@dataclass
class Generation:
    text: str  # the continuation up to the first newline
    logprob: float  # summed log-probability of the tokens of `text` under greedy decoding
    num_tokens: int


@dataclass
class Answer:
    text: str  # normalized short answer
    raw_text: str  # what the model wrote, up to the first newline
    logprob: float


class FrozenLM:
    """Greedy generation with log-probabilities from a frozen LM.

    kind "causal": decoder-only (hub id, local directory or GGUF); "seq2seq": T5-style encoder-decoder;
    "fid": Fusion-in-Decoder over a seq2seq model, each passage encoded on its own and the encoder states
    concatenated before decoding.
    """

    def __init__(self, config: AnswererConfig, device: str = "cpu", dtype: str = "float32") -> None:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        self.config = config
        self.device = device
        cls = AutoModelForCausalLM if config.kind == "causal" else AutoModelForSeq2SeqLM
        self.model, self.tokenizer = load_frozen(
            cls, config.model, "answerer", "--answerer-model", device, gguf_file=config.gguf_file, dtype=dtype
        )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Batched causal generation continues from the right end of each prompt.
        self.tokenizer.padding_side = "left" if config.kind == "causal" else "right"

    @property
    def context_length(self) -> int:
        """The model's context in tokens; tokenizers without a limit report a huge sentinel, which is ignored."""
        limits = [getattr(self.model.config, "max_position_embeddings", None), self.tokenizer.model_max_length]
        known = [n for n in limits if isinstance(n, int) and 0 < n < 10**7]
        return min(known, default=512)

    @property
    def max_prompt_tokens(self) -> int:
        """Tokens a prompt (or one FiD passage) may take, leaving room for the answer in a causal LM."""
        room = self.context_length - (self.config.max_new_tokens if self.config.kind == "causal" else 0)
        return min(room, self.config.max_prompt_tokens or room)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text).input_ids)

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        inputs = self.tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_prompt_tokens
        )
        # Only what every LM takes (BERT-style tokenizers add token_type_ids, which decoders reject).
        return {"input_ids": inputs.input_ids.to(self.device), "attention_mask": inputs.attention_mask.to(self.device)}

    @torch.inference_mode()
    def generate(self, prompts: list[str], max_new_tokens: int | None = None) -> list[Generation]:
        """Greedy continuations of several prompts (causal or seq2seq), batched."""
        if not prompts:
            return []
        inputs = self._tokenize(prompts)
        output = self._generate(max_new_tokens, **inputs)
        return self._read(output)

    @torch.inference_mode()
    def generate_fused(self, passages: list[str], max_new_tokens: int | None = None) -> Generation:
        """Fusion-in-Decoder: encode each passage separately, decode once over all encoder states."""
        from transformers.modeling_outputs import BaseModelOutput

        inputs = self._tokenize(passages)
        states = self.model.get_encoder()(**inputs).last_hidden_state  # [passages, length, hidden]
        mask = inputs["attention_mask"].bool()
        fused = states[mask].unsqueeze(0)  # only real tokens, passage after passage: [1, total, hidden]
        fused_mask = torch.ones(fused.shape[:2], dtype=torch.long, device=self.device)
        output = self._generate(
            max_new_tokens, encoder_outputs=BaseModelOutput(last_hidden_state=fused), attention_mask=fused_mask
        )
        return self._read(output)[0]

    def _generate(self, max_new_tokens: int | None, **inputs: Any) -> Any:
        return self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens or self.config.max_new_tokens,
            do_sample=False,
            num_beams=1,
            output_scores=True,
            return_dict_in_generate=True,
            stopping_criteria=[_StopAtNewline(self.tokenizer, self._continuation_start(inputs))],
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def _continuation_start(self, inputs: dict[str, Any]) -> int:
        """Where the continuation begins: causal LMs return prompt + continuation, decoders one start token first."""
        return inputs["input_ids"].shape[1] if self.config.kind == "causal" else 1

    def _stop_ids(self) -> set[int]:
        """End-of-text ids: the tokenizer's, and the generation config's (one id or a list of them)."""
        configured = self.model.generation_config.eos_token_id
        configured = configured if isinstance(configured, list) else [configured]
        ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, *configured}
        return {i for i in ids if i is not None}

    def _read(self, output: Any) -> list[Generation]:
        """Cut each continuation at the first newline or end token and sum the log-probs of what is kept."""
        scores = torch.stack(output.scores, dim=1).float().log_softmax(-1)  # [batch, steps, vocab]
        tokens = output.sequences[:, -scores.shape[1] :]  # one score per generated token, at the end
        stop_ids = self._stop_ids()
        generations = []
        for row in range(tokens.shape[0]):
            kept: list[int] = []
            logprob = 0.0
            for step, token in enumerate(tokens[row].tolist()):
                if token in stop_ids:
                    break
                piece = self.tokenizer.decode(kept + [token], skip_special_tokens=True)
                if "\n" in piece:
                    if piece.split("\n", 1)[0].strip() != self.tokenizer.decode(kept, skip_special_tokens=True).strip():
                        kept.append(token)  # the newline token also carries answer text
                        logprob += scores[row, step, token].item()
                    break
                kept.append(token)
                logprob += scores[row, step, token].item()
            text = self.tokenizer.decode(kept, skip_special_tokens=True).split("\n", 1)[0].strip()
            generations.append(Generation(text, logprob if kept else -math.inf, len(kept)))
        return generations


class _StopAtNewline:
    """Stops each sequence once its continuation holds a newline (works for any vocabulary, unlike stop_strings)."""

    def __init__(self, tokenizer: Any, start: int) -> None:
        self.tokenizer = tokenizer
        self.start = start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        return torch.tensor(["\n" in text for text in texts], device=input_ids.device)


class Answerer:
    """Prompt -> Answer, with the frozen LM reading the prompt text, or its passages under FiD."""

    def __init__(self, lm: FrozenLM) -> None:
        self.lm = lm

    def __call__(self, prompt: Prompt) -> Answer:
        if self.lm.config.kind == "fid":
            generation = self.lm.generate_fused(prompt.passages)
        else:
            generation = self.lm.generate([prompt.text])[0]
        return Answer(clean_answer(generation.text), generation.text, generation.logprob)
