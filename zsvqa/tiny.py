"""Small randomly initialised models of the real classes, for tests and smoke runs.

No vision weights can be installed offline, so the `tiny` preset builds these from configs, saves them with
`save_pretrained`, and the product loads them back through its ordinary loading code. Their outputs are
noise: use them for mechanics, shapes, determinism and equivalence, never for accuracy.

The tokenizer is the real bert-base-uncased WordPiece vocabulary shipped with the bundled
all-MiniLM-L6-v2 model, which is also BLIP's text vocabulary.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from zsvqa.errors import ModelLoadError

# Bumped whenever a config below changes, so stale builds in the cache are not reused.
VERSION = 1
IMAGE_SIZE = 64
PATCH_SIZE = 16
HIDDEN = 32


def _bert_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from zsvqa.models import BUNDLED

    locate, _ = BUNDLED["all-MiniLM-L6-v2"]
    tokenizer = AutoTokenizer.from_pretrained(str(locate()))
    tokenizer.model_max_length = 512
    return tokenizer


def _blip_config() -> Any:
    from transformers import BlipConfig

    text = dict(
        vocab_size=30524,
        hidden_size=HIDDEN,
        encoder_hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=30522,
        pad_token_id=0,
        sep_token_id=102,
        eos_token_id=102,
    )
    vision = dict(
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    return BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=16)


def _save_blip(model_cls: Any, target: Path) -> None:
    from transformers import BlipImageProcessor, BlipProcessor

    tokenizer = _bert_tokenizer()
    # BLIP's text vocabulary is bert-base-uncased plus [DEC] (the decoder's bos) and [ENC].
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    processor = BlipProcessor(
        BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}), tokenizer
    )
    model_cls(_blip_config()).save_pretrained(target)
    processor.save_pretrained(target)


def _blip_itm(target: Path) -> None:
    from transformers import BlipForImageTextRetrieval

    _save_blip(BlipForImageTextRetrieval, target)


def _blip_captioner(target: Path) -> None:
    from transformers import BlipForConditionalGeneration

    _save_blip(BlipForConditionalGeneration, target)


def _t5(target: Path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = _bert_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=HIDDEN,
        d_ff=2 * HIDDEN,
        d_kv=16,
        num_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    T5ForConditionalGeneration(config).save_pretrained(target)
    tokenizer.save_pretrained(target)


def _causal_lm(target: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _bert_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)


BUILDERS: dict[str, Callable[[Path], None]] = {
    "blip-itm": _blip_itm,
    "blip-captioner": _blip_captioner,
    "t5": _t5,
    "causal-lm": _causal_lm,
}


def build(name: str, root: Path | None = None) -> Path:
    """Build (once, seeded) and return the directory of tiny model `name`."""
    from zsvqa.models import cache_dir

    if name not in BUILDERS:
        raise ModelLoadError(f"unknown tiny model 'tiny:{name}'; tiny models: {', '.join(BUILDERS)}")
    root = root or cache_dir() / "tiny"
    target = root / f"{name}-v{VERSION}"
    if (target / "config.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BUILDERS[name](staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
