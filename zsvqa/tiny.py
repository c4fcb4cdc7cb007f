"""Randomly initialised models of the real classes: small ones for tests and smoke runs (``tiny:NAME``), and
real-size ones for speed benchmarks (``random:NAME``, the same compute as the real models).

No vision weights can be installed offline, so these are built from configs, saved with `save_pretrained`,
and the product loads them back through its ordinary loading code. Their outputs are noise: use them for
mechanics, shapes, determinism, equivalence and timing, never for accuracy.

The tokenizer is the real bert-base-uncased WordPiece vocabulary shipped with the bundled
all-MiniLM-L6-v2 model, which is also BLIP's text vocabulary.
"""

from __future__ import annotations

import functools
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

    from zsvqa.locations import BUNDLED

    locate, _ = BUNDLED["all-MiniLM-L6-v2"]
    tokenizer = AutoTokenizer.from_pretrained(str(locate()))
    tokenizer.model_max_length = 512
    return tokenizer


# (text hidden, text layers, text heads, vision hidden, vision layers, vision heads, image size)
BLIP_SIZES = {
    "tiny": (HIDDEN, 2, 2, HIDDEN, 2, 2, IMAGE_SIZE),
    # BLIP large: ViT-L/16 at 384 px, BERT-base text transformer.
    "large": (768, 12, 12, 1024, 24, 16, 384),
}
# BLIP's special text tokens: [DEC] (30522) starts a caption, [SEP] ends it, [PAD] is 0.
BLIP_TEXT_TOKENS = dict(bos_token_id=30522, pad_token_id=0, sep_token_id=102, eos_token_id=102)
# (d_model, d_ff, d_kv, layers, heads)
T5_SIZES = {"tiny": (HIDDEN, 2 * HIDDEN, 16, 2, 2), "large": (1024, 4096, 64, 24, 16)}


def _blip_config(size: str) -> Any:
    from transformers import BlipConfig

    text_hidden, text_layers, text_heads, vision_hidden, vision_layers, vision_heads, image_size = BLIP_SIZES[size]
    text = dict(
        vocab_size=30524,
        hidden_size=text_hidden,
        encoder_hidden_size=vision_hidden,
        intermediate_size=4 * text_hidden if size != "tiny" else 2 * text_hidden,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        max_position_embeddings=512 if size != "tiny" else 64,
        **BLIP_TEXT_TOKENS,
    )
    vision = dict(
        hidden_size=vision_hidden,
        intermediate_size=4 * vision_hidden if size != "tiny" else 2 * vision_hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=PATCH_SIZE,
    )
    return BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=256 if size != "tiny" else 16)


def blip_processor(image_size: int) -> Any:
    """BLIP's processor: images resized (bicubic) to `image_size` square and normalised with CLIP's mean and
    deviation, as LAVIS's blip_image_eval; text in BLIP's vocabulary, bert-base-uncased plus [DEC] (the decoder's
    bos) and [ENC]."""
    from transformers import BlipImageProcessor, BlipProcessor

    tokenizer = _bert_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    return BlipProcessor(BlipImageProcessor(size={"height": image_size, "width": image_size}), tokenizer)


def _save_blip(model_cls_name: str, size: str, target: Path) -> None:
    import transformers

    getattr(transformers, model_cls_name)(_blip_config(size)).save_pretrained(target)
    blip_processor(BLIP_SIZES[size][-1]).save_pretrained(target)


def _t5(size: str, target: Path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = _bert_tokenizer()
    d_model, d_ff, d_kv, layers, heads = T5_SIZES[size]
    config = T5Config(
        vocab_size=len(tokenizer) if size == "tiny" else 32128,  # the real T5 vocabulary size, for its compute
        d_model=d_model,
        d_ff=d_ff,
        d_kv=d_kv,
        num_layers=layers,
        num_heads=heads,
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


def _clip(target: Path) -> None:
    """A sentence-transformers CLIP model (text and images into one space), as PICa's retrieval uses."""
    from sentence_transformers import SentenceTransformer
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    # A character-level byte BPE vocabulary (no merges): CLIP's own tokenizer class, a few hundred tokens.
    characters = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(characters + [c + "</w>" for c in characters])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=HIDDEN,
            intermediate_size=2 * HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=HIDDEN,
            intermediate_size=2 * HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
        ),
        projection_dim=16,
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    with tempfile.TemporaryDirectory() as plain:
        CLIPModel(config).save_pretrained(plain)
        CLIPProcessor(image_processor, tokenizer).save_pretrained(plain)
        # Saved as sentence-transformers saves its models, so it loads as the hub's clip-ViT-* models do.
        SentenceTransformer(plain, device="cpu").save(str(target))


BUILDERS: dict[str, Callable[[Path], None]] = {
    "blip-itm": functools.partial(_save_blip, "BlipForImageTextRetrieval", "tiny"),
    "blip-captioner": functools.partial(_save_blip, "BlipForConditionalGeneration", "tiny"),
    "t5": functools.partial(_t5, "tiny"),
    "causal-lm": _causal_lm,
    "clip": _clip,
    "blip-itm-large": functools.partial(_save_blip, "BlipForImageTextRetrieval", "large"),
    "blip-captioner-large": functools.partial(_save_blip, "BlipForConditionalGeneration", "large"),
    "t5-large": functools.partial(_t5, "large"),
}


def build(name: str, root: Path | None = None) -> Path:
    """Build (once, seeded) and return the directory of random model `name`."""
    from zsvqa.locations import cache_dir

    if name not in BUILDERS:
        raise ModelLoadError(f"unknown random model {name!r}; random models: {', '.join(BUILDERS)}")
    root = root or cache_dir() / "random-models"
    target = root / f"{name}-v{VERSION}"
    if (target / "config.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BUILDERS[name](staging)
    if target.exists() and not (target / "config.json").exists():
        shutil.rmtree(target, ignore_errors=True)  # left by an older layout: never a complete model
    try:
        staging.rename(target)
    except OSError:  # another process (a parallel test worker) put the same seeded model there first
        shutil.rmtree(staging, ignore_errors=True)
    return target
