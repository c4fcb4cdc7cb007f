"""LAVIS BLIP checkpoints loaded by path, against outputs LAVIS itself recorded.

tests/fixtures/lavis_tiny was made by LAVIS 1.0.2 (../shared/lavis-bench's venv):
    /tmp/lavis-bench/venv/bin/python benchmarks/lavis_reference.py --size tiny --out tests/fixtures/lavis_tiny
It holds a tiny BlipITM and BlipCaption with random weights saved as LAVIS saves checkpoints (xz-compressed here),
the image, and what LAVIS gave on it for "what is the man riding?": its pixels, ITM logits, forward_itm's GradCAM map
at block 7, and the captioner's logits along its greedy caption from the map's 20 most relevant patches.
"""

from __future__ import annotations

import dataclasses
import lzma
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zsvqa import lavis_checkpoint
from zsvqa.captioning import PatchCaptioner
from zsvqa.cli import main
from zsvqa.config import preset
from zsvqa.errors import ModelLoadError
from zsvqa.matching import ImageQuestionMatcher
from zsvqa.models import load_frozen

FIXTURE = Path(__file__).parent / "fixtures" / "lavis_tiny"
TOLERANCE = 1e-5


def unpacked(name: str, folder: Path) -> Path:
    target = folder / name.removesuffix(".xz")
    with lzma.open(FIXTURE / name) as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    return target


@pytest.fixture(scope="module")
def lavis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("lavis")
    with lzma.open(FIXTURE / "reference.pt.xz") as f:
        reference = torch.load(f, weights_only=True)
    return {**reference, "itm": unpacked("itm.pth.xz", folder), "captioner": unpacked("captioner.pth.xz", folder),
            "image": Image.open(FIXTURE / "image.png").convert("RGB")}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZSVQA_CACHE", str(tmp_path / "cache"))


def matcher_for(path: Path) -> ImageQuestionMatcher:
    # The pnp-vqa preset's matcher (GradCAM at block 7, [ENC], "?" stripped) on the converted checkpoint.
    return ImageQuestionMatcher(dataclasses.replace(preset("pnp-vqa").matcher, model=str(path)))


def close(actual: torch.Tensor, expected: torch.Tensor, scale: float = 1.0) -> None:
    torch.testing.assert_close(actual / scale, expected / scale, atol=TOLERANCE, rtol=0)


def test_converted_itm_gives_lavis_pixels_logits_and_gradcam(lavis: dict[str, Any]) -> None:
    matcher = matcher_for(lavis["itm"])
    assert matcher.config.gradcam_layer == lavis["block"] == 7
    pixels = matcher.processor(images=lavis["image"], return_tensors="pt").pixel_values
    close(pixels, lavis["pixels"])
    features = matcher.encode_image(lavis["image"])
    question = lavis["question"]
    close(matcher._itm_logits(features, matcher._tokenize_questions([question])), lavis["itm_logits"])
    (result,) = matcher(features, [question])
    assert result.itm_score == pytest.approx(lavis["itm_logits"].softmax(-1)[0, 1].item(), abs=TOLERANCE)
    _, cams = matcher._gradcam(features, [question])
    expected = lavis["gradcam"]
    assert expected.max() > 0 and (expected > 0).sum() > 20  # a map with something to compare
    # GradCAM values are small (attention times gradient): compared relative to the map's largest value.
    close(cams[0].flatten(), expected, scale=expected.max().item())
    close(result.relevance.flatten(), expected / expected.sum(), scale=(expected / expected.sum()).max().item())
    assert set(cams[0].flatten().topk(20).indices.tolist()) == set(expected.topk(20).indices.tolist())


def test_converted_captioner_gives_lavis_caption_logits_and_greedy_caption(lavis: dict[str, Any]) -> None:
    config = dataclasses.replace(preset("pnp-vqa").captioner, model=str(lavis["captioner"]), decoding="greedy")
    captioner = PatchCaptioner(config)
    features = captioner.encode_image(lavis["image"])
    patches = lavis["caption_patches"]
    states = features.embeds[0, 1:][patches][None]  # the patches' states, as the captioner gathers them
    ids = lavis["caption_ids"][None]
    logits = captioner.model.text_decoder(
        input_ids=ids, attention_mask=torch.ones_like(ids), encoder_hidden_states=states,
        encoder_attention_mask=torch.ones(states.shape[:2], dtype=torch.long),
    ).logits
    close(logits[0], lavis["caption_logits"])
    # The captioner's own greedy decoding writes LAVIS's caption tokens (decoded the captioner's way).
    prompt_length = captioner.prompt_ids.shape[1]
    assert ids[0, :prompt_length].tolist() == captioner.prompt_ids[0].tolist()
    expected = captioner.processor.tokenizer.decode(ids[0, prompt_length:], skip_special_tokens=True)
    assert captioner._generate(features, patches[None], torch.Generator()) == [" ".join(expected.split())]


def test_conversion_is_cached_and_extra_training_state_is_ignored(lavis: dict[str, Any], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A training checkpoint also holds momentum encoders, queues and more; LAVIS's strict=False load skips them.
    checkpoint = {"model": torch.load(lavis["itm"], weights_only=True)["model"], "epoch": 5}
    checkpoint["model"]["visual_encoder_m.pos_embed"] = torch.zeros(1, 3)
    checkpoint["model"]["image_queue"] = torch.zeros(4, 2)
    training = tmp_path / "model_tiny_retrieval_coco.pth"
    torch.save(checkpoint, training)
    first = matcher_for(training)
    calls: list[str] = []
    real = lavis_checkpoint.write_converted
    monkeypatch.setattr(lavis_checkpoint, "write_converted", lambda *a: calls.append("converted") or real(*a))
    second = matcher_for(training)
    assert calls == []  # the second load read the cache
    converted = list((tmp_path / "cache" / "converted").iterdir())
    assert [p.name.split("-")[0] for p in converted] == ["model_tiny_retrieval_coco"]
    features = second.encode_image(lavis["image"])
    tokens = second._tokenize_questions([lavis["question"]])
    close(second._itm_logits(features, tokens), lavis["itm_logits"])
    close(first._itm_logits(first.encode_image(lavis["image"]), tokens), lavis["itm_logits"])


def test_files_that_are_not_blip_checkpoints_are_refused_in_one_line(lavis: dict[str, Any], tmp_path: Path) -> None:
    from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval

    def load(cls: Any, path: Path) -> None:
        load_frozen(cls, str(path), "image-text matching", "--itm-model")

    # A caption checkpoint given as the matcher: what it lacks, and where it belongs.
    with pytest.raises(ModelLoadError, match=r"is not a LAVIS BLIP image-text matching \(ITM\) checkpoint: it lacks "
                       r"text_encoder\.embeddings\.word_embeddings\.weight, .* and \d+ more; it is a BLIP caption "
                       r"checkpoint: give it to --captioner-model$"):
        load(BlipForImageTextRetrieval, lavis["captioner"])
    with pytest.raises(ModelLoadError, match=r"not a LAVIS BLIP caption checkpoint: it lacks text_decoder\.bert\."):
        load(BlipForConditionalGeneration, lavis["itm"])
    # A file torch cannot read, a pickle of no tensors, and a state dict with a block's weights missing.
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ModelLoadError, match=r"is a file, but neither a \.gguf file nor a LAVIS checkpoint"):
        load(BlipForImageTextRetrieval, text)
    empty = tmp_path / "empty.pth"
    torch.save({"model": {"epoch": 3}}, empty)
    with pytest.raises(ModelLoadError, match="holds no state dict"):
        load(BlipForImageTextRetrieval, empty)
    state = torch.load(lavis["itm"], weights_only=True)["model"]
    del state["visual_encoder.blocks.0.mlp.fc2.weight"]
    partial = tmp_path / "partial.pth"
    torch.save({"model": state}, partial)
    with pytest.raises(ModelLoadError, match=r"not a complete .* it lacks the weights of "
                       r"vision_model\.encoder\.layers\.0\.mlp\.fc2\.weight$"):
        load(BlipForImageTextRetrieval, partial)
    assert not list((tmp_path / "cache" / "converted").iterdir())  # no half conversion left behind
    # Models other than BLIP's do not take checkpoint files.
    with pytest.raises(ModelLoadError, match=r"is a file, not a \.gguf file or a model directory; give "
                       r"--answerer-model a directory"):
        load_frozen(torch.nn.Module, str(lavis["itm"]), "answerer", "--answerer-model")


def test_cli_says_in_one_line_which_option_takes_a_checkpoint(lavis: dict[str, Any], tmp_path: Path) -> None:
    lavis["image"].save(tmp_path / "photo.png")
    result = CliRunner().invoke(main, ["ask", "--preset", "tiny", "-q", "what is it?", "--image",
                                       str(tmp_path / "photo.png"), "--itm-model", str(lavis["captioner"])])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "give it to --captioner-model" in errors[0] and "Traceback" not in result.output
