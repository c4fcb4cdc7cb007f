"""LAVIS BLIP checkpoints loaded by path: ``--itm-model model_large_retrieval_coco_train2014.pth``.

LAVIS's PNP-VQA and Img2Prompt configs load BLIP's own checkpoint files (``{"model": state_dict}``, as BLIP's
training code saves them), not Hugging Face models. `load_frozen` hands such a file here: it is converted once into
the Hugging Face class the stage uses (`BlipForImageTextRetrieval` for the matcher, `BlipForConditionalGeneration`
for the captioner), cached as a GGUF conversion is, and loaded as any model directory.

The configuration is LAVIS's, with sizes read from the weights: the vision transformer's width, depth, patch and
image size from its weights' shapes, its heads 64 wide (ViT-B: 768 wide, 12 heads; ViT-L: 1024, 16) and LayerNorm
eps 1e-6 (lavis/models/vit.py); the text transformer from med_config.json (12 heads, LayerNorm eps 1e-12, GELU),
its widths, depth and vocabulary from its weights. What a training checkpoint holds besides the model (momentum
encoders, queues, the temperature) is ignored, as LAVIS's own `load_state_dict(strict=False)` ignores it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zsvqa.errors import ModelLoadError
from zsvqa.locations import ModelSource, cached_conversion, file_key

# In the cache key: a changed conversion converts again.
CONVERSION_VERSION = 1
VIT_HEAD_WIDTH = 64
TEXT_HEADS = 12  # med_config.json and med_large_config.json
VIT_LAYER_NORM_EPS = 1e-6
TEXT_LAYER_NORM_EPS = 1e-12
VISION = "visual_encoder."
# LAVIS's ViT (timm's names) -> Hugging Face's BlipVisionModel. The text transformer and the heads keep their names:
# LAVIS's med.py and Hugging Face's BLIP text model both follow BLIP's.
VISION_RENAMES = [
    (r"visual_encoder\.cls_token$", "vision_model.embeddings.class_embedding"),
    (r"visual_encoder\.pos_embed$", "vision_model.embeddings.position_embedding"),
    (r"visual_encoder\.patch_embed\.proj\.", "vision_model.embeddings.patch_embedding."),
    (r"visual_encoder\.blocks\.(\d+)\.norm1\.", r"vision_model.encoder.layers.\1.layer_norm1."),
    (r"visual_encoder\.blocks\.(\d+)\.norm2\.", r"vision_model.encoder.layers.\1.layer_norm2."),
    (r"visual_encoder\.blocks\.(\d+)\.attn\.qkv\.", r"vision_model.encoder.layers.\1.self_attn.qkv."),
    (r"visual_encoder\.blocks\.(\d+)\.attn\.proj\.", r"vision_model.encoder.layers.\1.self_attn.projection."),
    (r"visual_encoder\.blocks\.(\d+)\.mlp\.", r"vision_model.encoder.layers.\1.mlp."),
    (r"visual_encoder\.norm\.", "vision_model.post_layernorm."),
]


@dataclass(frozen=True)
class BlipLayout:
    """Where one Hugging Face BLIP class's parts are in a LAVIS state dict."""

    kind: str  # what the checkpoint is, for messages
    option: str  # the option that takes it
    text: str  # the key prefix of its BERT
    heads: tuple[str, ...]  # keys of its heads that must be there


LAYOUTS = {
    "BlipForImageTextRetrieval": BlipLayout(
        "BLIP image-text matching (ITM)", "--itm-model", "text_encoder.",
        ("itm_head.weight", "itm_head.bias", "vision_proj.weight", "text_proj.weight"),
    ),
    "BlipForConditionalGeneration": BlipLayout(
        "BLIP caption", "--captioner-model", "text_decoder.bert.",
        ("text_decoder.cls.predictions.transform.dense.weight", "text_decoder.cls.predictions.bias"),
    ),
}


def converted_lavis(cls: Any, source: ModelSource, role: str, option: str) -> ModelSource:
    """The cached Hugging Face directory of the LAVIS checkpoint file `source`, converted into `cls` the first time.
    Classes other than the two BLIP ones get `source` back (the loader then says a file is not a model)."""
    layout = LAYOUTS.get(cls.__name__)
    if layout is None:
        return source
    path = Path(source.location)

    what = f"the {role} model {source.name!r}"

    def convert(staging: Path) -> None:
        write_converted(read_state_dict(path, what), cls, layout, staging, what)

    key = f"lavis-v{CONVERSION_VERSION}:{cls.__name__}:{file_key(path)}"
    target = cached_conversion(path.stem, key, convert, f"{source.name} from a LAVIS checkpoint into {cls.__name__}")
    return ModelSource(source.name, str(target))


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a LAVIS checkpoint: its "model" entry, or the file itself if it is a bare state dict.
    Memory-mapped where the file allows (ViT-L checkpoints with their momentum encoders pass 1.5 GB)."""
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # saved by torch before 1.6
    except Exception as error:  # torch.load raises UnpicklingError, RuntimeError, EOFError, ... on other files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(
            f"{what} is a file, but neither a .gguf file nor a LAVIS checkpoint that torch.load "
            f"reads ({reason}); give a model directory, a hub id or a LAVIS BLIP .pth file"
        ) from error
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise ModelLoadError(f"{what} holds no state dict (a dict of tensors, or one under 'model')")
    return tensors


def write_converted(state: dict[str, torch.Tensor], cls: Any, layout: BlipLayout, folder: Path, what: str) -> None:
    """Check `state` against `cls` built from its sizes, then write a Hugging Face directory: config, weights and
    BLIP's processor. Every weight the model has must come from the file, with its shape."""
    from safetensors.torch import save_file

    from zsvqa.tiny import blip_processor

    _require(state, layout, what, _config_keys(layout) + layout.heads)
    config = blip_config(state, layout, what)
    config.architectures = [cls.__name__]
    with torch.device("meta"):
        expected = {k: v.shape for k, v in cls(config).state_dict().items()}
    # Tied weights (the caption decoder's output layer is its word embeddings) are one tensor under two names in
    # LAVIS's file; Hugging Face ties them again on load.
    for tied in getattr(cls, "_tied_weights_keys", None) or {}:
        expected.pop(tied, None)
    renamed = {hf_name(k): (k, v) for k, v in state.items()}
    missing = [k for k in expected if k not in renamed]
    if missing:
        raise ModelLoadError(
            f"{what} is not a complete {layout.kind} checkpoint: it lacks the weights of {_listed(missing)}"
        )
    for key, shape in expected.items():
        lavis_key, tensor = renamed[key]
        if tensor.shape != shape:
            raise ModelLoadError(
                f"{what}: {lavis_key} has shape {tuple(tensor.shape)}, but the model its other weights describe "
                f"needs {tuple(shape)}"
            )
    # Floating weights in float32, as LAVIS's float32 model copies them in.
    weights = {
        k: (renamed[k][1].float() if renamed[k][1].is_floating_point() else renamed[k][1]).contiguous()
        for k in expected
    }
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(folder)
    blip_processor(config.vision_config.image_size).save_pretrained(folder)


def hf_name(lavis_key: str) -> str:
    """The Hugging Face name of a LAVIS BLIP weight (keys of no Hugging Face weight come back unchanged, unused)."""
    for pattern, replacement in VISION_RENAMES:
        renamed, count = re.subn("^" + pattern, replacement, lavis_key)
        if count:
            return renamed
    return lavis_key


def blip_config(state: dict[str, torch.Tensor], layout: BlipLayout, what: str) -> Any:
    """LAVIS's configuration of the model in `state`, sizes read from its weights."""
    from transformers import BlipConfig

    from zsvqa.tiny import BLIP_TEXT_TOKENS

    patch_weight = state[VISION + "patch_embed.proj.weight"]  # [width, 3, patch, patch]
    width, patch_size = patch_weight.shape[0], patch_weight.shape[-1]
    grid = math.isqrt(state[VISION + "pos_embed"].shape[1] - 1)
    if width % VIT_HEAD_WIDTH:
        raise ModelLoadError(
            f"{what} has a vision transformer {width} wide; LAVIS's (768 for ViT-B, 1024 for ViT-L) have heads "
            f"{VIT_HEAD_WIDTH} wide"
        )
    vision = dict(
        hidden_size=width,
        intermediate_size=state[VISION + "blocks.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=_count(state, VISION + "blocks."),
        num_attention_heads=width // VIT_HEAD_WIDTH,
        image_size=grid * patch_size,
        patch_size=patch_size,
        layer_norm_eps=VIT_LAYER_NORM_EPS,
        hidden_act="gelu",
    )
    text = layout.text
    words = state[text + "embeddings.word_embeddings.weight"]
    text_config = dict(
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        encoder_hidden_size=state[text + "encoder.layer.0.crossattention.self.key.weight"].shape[1],
        intermediate_size=state[text + "encoder.layer.0.intermediate.dense.weight"].shape[0],
        num_hidden_layers=_count(state, text + "encoder.layer."),
        num_attention_heads=TEXT_HEADS,
        max_position_embeddings=state[text + "embeddings.position_embeddings.weight"].shape[0],
        layer_norm_eps=TEXT_LAYER_NORM_EPS,
        hidden_act="gelu",
        **BLIP_TEXT_TOKENS,
    )
    projection = state["vision_proj.weight"].shape[0] if "vision_proj.weight" in state else 256
    return BlipConfig(text_config=text_config, vision_config=vision, image_text_hidden_size=projection)


def _config_keys(layout: BlipLayout) -> tuple[str, ...]:
    text = layout.text
    return (
        VISION + "patch_embed.proj.weight",
        VISION + "pos_embed",
        VISION + "blocks.0.mlp.fc1.weight",
        text + "embeddings.word_embeddings.weight",
        text + "embeddings.position_embeddings.weight",
        text + "encoder.layer.0.crossattention.self.key.weight",
        text + "encoder.layer.0.intermediate.dense.weight",
    )


def _require(state: dict[str, torch.Tensor], layout: BlipLayout, what: str, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in state]
    if not missing:
        return
    others = [o for o in LAYOUTS.values() if o is not layout and all(k in state for k in _config_keys(o) + o.heads)]
    hint = f"; it is a {others[0].kind} checkpoint: give it to {others[0].option}" if others else ""
    raise ModelLoadError(f"{what} is not a LAVIS {layout.kind} checkpoint: it lacks {_listed(missing)}{hint}")


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    """How many numbered blocks `prefix` has (prefix + "N." for N = 0, 1, ...)."""
    return len({k[len(prefix) :].split(".", 1)[0] for k in state if k.startswith(prefix)})


def _listed(keys: list[str], shown: int = 4) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more
