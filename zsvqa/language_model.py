"""The frozen language model: loading (causal, seq2seq or Fusion-in-Decoder, local, hub or GGUF, placed over
devices or quantized), scoring continuations by log-likelihood, and greedy generation. What the answer is made
from (prompts, closed answer sets, calibration) is zsvqa.answering's."""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch

from zsvqa.config import AnswererConfig
from zsvqa.models import big_model_placement, cache_argument, load_frozen

SCORED_ROWS = 64  # continuations scored in one forward by score_many, each with a copy of its prompt's cache


@dataclass
class Generation:
    text: str  # the continuation up to the first newline
    logprob: float  # summed log-probability of the tokens of `text` under greedy decoding
    num_tokens: int


class FrozenLM:
    """Greedy generation with log-probabilities from a frozen LM.

    kind "causal": decoder-only (hub id, local directory or GGUF); "seq2seq": T5-style encoder-decoder;
    "fid": Fusion-in-Decoder over a seq2seq model, each passage encoded on its own and the encoder states
    concatenated before decoding.
    """

    def __init__(
        self, config: AnswererConfig, device: str = "cpu", dtype: str = "float32", quantize: str | None = None
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        self.config = config
        self.device = device
        cls = AutoModelForCausalLM if config.kind == "causal" else AutoModelForSeq2SeqLM
        placement = big_model_placement(config.device_map, config.load_in)
        self.model, self.tokenizer = load_frozen(
            cls, config.model, "answerer", "--answerer-model", device, gguf_file=config.gguf_file, dtype=dtype,
            placement=placement, quantize=quantize if config.kind != "causal" else None,
        )
        if placement:  # accelerate placed the layers: inputs go where the first ones are
            self.device = str(self.model.device)
        # The last positions' states reach the LM head as a strided slice; for bfloat16 torch's matmul then copies
        # the whole head for each row (2.3 s per batch for Gemma-3's 262k-word vocabulary) where a contiguous input
        # is one product.
        self.model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)
        # Looked up once: forward runs for every scored or generated answer.
        self._cache_argument = cache_argument(self.model)
        text_config = self.model.config.get_text_config()
        self._sliding_window = getattr(text_config, "sliding_window", None) or math.inf
        # Padding between a shared head and the prompts' tails needs explicit positions (see _after_head).
        forward = inspect.signature(self.model.forward).parameters
        self._takes_positions = "position_ids" in forward
        self._last_logits = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}  # not the whole prompt's
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Batched causal generation continues from the right end of each prompt.
        self.tokenizer.padding_side = "left" if config.kind == "causal" else "right"
        self._head: tuple[tuple[int, ...], Any] | None = None  # see _head_cache

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

    def score(self, prompt: str, continuations: list[str], shared_prefix: int = 0) -> list[float]:
        """Log-likelihood of each continuation after the prompt (causal LMs): `score_many` for one prompt. Its first
        `shared_prefix` characters are encoded once for consecutive prompts that share them (see `_head_cache`)."""
        return self.score_many([prompt], [continuations], shared_prefix)[0]

    @torch.inference_mode()
    def score_many(
        self, prompts: list[str], continuations: list[list[str]], shared_prefix: int = 0
    ) -> list[list[float]]:
        """`score` for several prompts at once (causal LMs): the prompts as one batch after their shared head (see
        `_after_head`), then the continuations, right-padded, over copies of their prompts' key/value caches,
        `SCORED_ROWS` at a time (each row holds a copy of its prompt's cache). Equal to `score` prompt by prompt,
        to float tolerance."""
        _, ids, mask, cache = self._after_head(prompts, shared_prefix)
        output = self.model(
            input_ids=ids, attention_mask=mask, use_cache=True, **self._with_cache(cache), **self._last_logits,
            **self._positions(_positions(mask)[:, -ids.shape[1] :]),
        )
        first = output.logits[:, -1].float().log_softmax(-1)
        pieces = [self._pieces(own) for own in continuations]
        totals = [[first[p, piece[0]].item() for piece in own] for p, own in enumerate(pieces)]
        rows = [(p, c) for p, own in enumerate(pieces) for c, piece in enumerate(own) if len(piece) > 1]
        cache = _cache_of(output)
        for start in range(0, len(rows), SCORED_ROWS):
            chunk = rows[start : start + SCORED_ROWS]
            last = start + SCORED_ROWS >= len(rows)
            for (p, c), logprob in zip(chunk, self._continue(cache if last else copy.deepcopy(cache), mask, [
                (p, pieces[p][c]) for p, c in chunk
            ])):
                totals[p][c] += logprob
        return totals

    def _continue(self, cache: Any, mask: torch.Tensor, rows: list[tuple[int, list[int]]]) -> list[float]:
        """The log-likelihood of each row's tokens after its first, each row a (prompt, tokens) continuing its
        prompt's cache (which this reorders into one copy per row)."""
        longest = max(len(piece) for _, piece in rows)
        owner = torch.tensor([p for p, _ in rows], device=self.device)
        cache.reorder_cache(owner)
        ids = torch.full((len(rows), longest), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
        for row, (_, piece) in enumerate(rows):
            ids[row, : len(piece)] = torch.tensor(piece)
        row_mask = torch.cat([mask[owner], torch.ones_like(ids)], dim=1)
        positions = mask[owner].sum(-1, keepdim=True) + torch.arange(longest, device=self.device)
        logits = self.model(
            input_ids=ids, attention_mask=row_mask, **self._with_cache(cache), **self._positions(positions)
        ).logits[:, :-1]
        # Each next token's log-probability, gathered before anything vocabulary-wide is kept.
        picked = (logits.float().log_softmax(-1)).gather(-1, ids[:, 1:, None])[..., 0]
        lengths = torch.tensor([len(piece) - 1 for _, piece in rows], device=self.device)
        kept = torch.arange(longest - 1, device=self.device) < lengths[:, None]
        return (picked * kept).sum(-1).tolist()

    def _after_head(
        self, prompts: list[str], shared_prefix: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """Several causal prompts as a batch after the head they share (their first `shared_prefix` characters,
        an image's instructions, captions and exemplars): (the head's ids, the ids still to encode, the attention
        mask over the whole prompts, the head's key/value cache copied for each prompt or None).

        The head is encoded once (and kept, see `_head_cache`); each prompt's tail follows it left-padded, so the
        padding sits between head and tail, masked, with positions counted on from the head. Where that padding
        could push head tokens out of a sliding attention window or the model takes no position ids, or no head is
        shared, the whole prompts are left-padded instead (the padding then comes before every real token, which
        changes nothing)."""
        rows = self.tokenizer(prompts, truncation=True, max_length=self.max_prompt_tokens).input_ids
        head = self._shared_head(prompts[0][:shared_prefix], rows) if shared_prefix else []
        padded = len({len(row) for row in rows}) > 1  # tails of one length need no padding after the head
        if head and padded and (max(len(row) for row in rows) > self._sliding_window or not self._takes_positions):
            head = []
        tails = [row[len(head) :] for row in rows]
        width = max(len(tail) for tail in tails)
        ids = torch.tensor([[self.tokenizer.pad_token_id] * (width - len(t)) + t for t in tails], device=self.device)
        tail_mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails], device=self.device)
        mask = torch.cat([torch.ones(len(rows), len(head), dtype=torch.long, device=self.device), tail_mask], dim=1)
        cache = None
        if head:
            cache = self._head_cache(tuple(head))
            cache.batch_repeat_interleave(len(rows))
        return torch.tensor(head, dtype=torch.long, device=self.device), ids, mask, cache

    def _shared_head(self, head_text: str, rows: list[list[int]]) -> list[int]:
        """The token ids of `head_text`, where every row begins with them and goes on after them; else []
        (tokenizing the head alone must give the prompts' own first tokens, or reusing its cache would change
        them)."""
        head = self.tokenizer(head_text).input_ids
        while head and head[-1] in self.tokenizer.all_special_ids:  # a closing [SEP] belongs to the whole prompt
            head.pop()
        if not head or any(len(row) <= len(head) or row[: len(head)] != head for row in rows):
            return []
        return head

    def _pieces(self, continuations: list[str]) -> list[list[int]]:
        pieces = [self.tokenizer(c, add_special_tokens=False).input_ids for c in continuations]
        if any(not piece for piece in pieces):
            raise ValueError("cannot score an empty continuation")
        return pieces

    def generate_one(self, prompt: str, shared_prefix: int = 0) -> Generation:
        """A greedy continuation of one prompt (causal), its shared prefix's key/value cache reused."""
        return self.generate([prompt], None, shared_prefix)[0]

    def _head_cache(self, head: tuple[int, ...]) -> Any:
        """A copy of the key/value cache of `head`, computed once for consecutive prompts that share it."""
        if self._head is None or self._head[0] != head:
            ids = torch.tensor([head], device=self.device)
            self._head = (head, _cache_of(self.model(input_ids=ids, use_cache=True)))
        return copy.deepcopy(self._head[1])

    def _with_cache(self, cache: Any) -> dict[str, Any]:
        return {self._cache_argument: cache}

    def _positions(self, positions: torch.Tensor) -> dict[str, Any]:
        """Explicit position ids, for models that take them (left-padded rows need them)."""
        return {"position_ids": positions} if self._takes_positions else {}

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text).input_ids)

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        inputs = self.tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_prompt_tokens
        )
        # Only what every LM takes (BERT-style tokenizers add token_type_ids, which decoders reject).
        return {"input_ids": inputs.input_ids.to(self.device), "attention_mask": inputs.attention_mask.to(self.device)}

    @torch.inference_mode()
    def generate(
        self, prompts: list[str], max_new_tokens: int | None = None, shared_prefix: int = 0
    ) -> list[Generation]:
        """Greedy continuations of several prompts (causal or seq2seq), batched; causal prompts that share their
        first `shared_prefix` characters encode that head once (see `_after_head`)."""
        if not prompts:
            return []
        if self.config.kind != "causal":
            return self._read(self._generate(max_new_tokens, **self._tokenize(prompts)))
        head, ids, mask, cache = self._after_head(prompts, shared_prefix)
        ids = torch.cat([head.expand(len(prompts), -1), ids], dim=1)  # generate encodes what its cache lacks
        # generate counts positions from the attention mask, so the padding after the head is skipped.
        return self._read(self._generate(max_new_tokens, input_ids=ids, attention_mask=mask, **self._with_cache(cache)))

    @torch.inference_mode()
    def generate_fused(self, passages: list[str], max_new_tokens: int | None = None) -> Generation:
        """Fusion-in-Decoder: encode each passage separately, decode once over all encoder states."""
        from transformers.modeling_outputs import BaseModelOutput

        fused = self._encode_passages(passages).unsqueeze(0)  # [1, total, hidden]
        fused_mask = torch.ones(fused.shape[:2], dtype=torch.long, device=self.device)
        output = self._generate(
            max_new_tokens, encoder_outputs=BaseModelOutput(last_hidden_state=fused), attention_mask=fused_mask
        )
        return self._read(output)[0]

    def _encode_passages(self, passages: list[str]) -> torch.Tensor:
        """Encoder states of every passage's real tokens, passage after passage: [total tokens, hidden].

        Passages go through the encoder `fid_encode_batch` at a time, shortest first, so that each batch pads to
        a length close to its own passages' (a state does not depend on the padding after it). None encodes
        them all in one batch padded to the longest, as LAVIS does.
        """
        ids = self.tokenizer(passages, truncation=True, max_length=self.max_prompt_tokens).input_ids
        batch_size = self.config.fid_encode_batch
        order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if batch_size else list(range(len(ids)))
        batch_size = batch_size or len(ids)
        states: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        encoder = self.model.get_encoder()
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            padded = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt").to(self.device)
            output = encoder(input_ids=padded.input_ids, attention_mask=padded.attention_mask).last_hidden_state
            for position, row in enumerate(rows):
                states[row] = output[position, : len(ids[row])]
        return torch.cat(states)

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


def _contiguous_input(module: torch.nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    return (inputs[0].contiguous(), *inputs[1:])


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: each row's first real token is position 0."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _cache_of(output: Any) -> Any:
    """The key/value cache a forward pass returned, under its new name or its old one."""
    return output.cache if "cache" in output else output.past_key_values


class _StopAtNewline:
    """Stops each sequence once its continuation holds a newline (works for any vocabulary, unlike stop_strings)."""

    def __init__(self, tokenizer: Any, start: int) -> None:
        self.tokenizer = tokenizer
        self.start = start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        return torch.tensor(["\n" in text for text in texts], device=input_ids.device)
