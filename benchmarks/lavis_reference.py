#!/usr/bin/env python
"""LAVIS's side of the equivalence checks: builds LAVIS's own BLIP ITM and captioner (and, above tiny, PNP-VQA's
UnifiedQA FiD) with random weights, saves them as LAVIS saves checkpoints, runs LAVIS's own methods on one image
and question, and records what they give.

Runs in the venv of ../shared/lavis-bench (LAVIS 1.0.2, transformers 4.25.1), never in the project's:

    bash ../shared/lavis-bench/setup.sh                  # once
    /tmp/lavis-bench/venv/bin/python benchmarks/lavis_reference.py --size tiny \
        --out tests/fixtures/lavis_tiny
    /tmp/lavis-bench/venv/bin/python benchmarks/lavis_reference.py --size base --out /tmp/lavis-eq

`benchmarks/lavis_equivalence.py` runs the base size itself and compares; the tiny size is the committed test
fixture (tests/test_lavis_checkpoint.py), compressed with xz to stay small.

Sizes:
- "tiny": a 1-block ViT of width 64 on 24x24-pixel images with 1-pixel patches, so that the 24x24 patch grid and
  the 12 cross-attention heads LAVIS's compute_gradcam assumes hold; BERTs of width 24 from med_config.json, 9
  blocks for the ITM (block 7 needs one after it: in the last block only the [ENC] token reaches the ITM head, and
  GradCAM averages the question's other tokens), 2 for the captioner;
- "base": ViT-B/16 at 384 px with med_config.json (BLIP base), and pnp_vqa_base.yaml's UnifiedQA T5-base;
- "large": pnp_vqa_large.yaml as it is (ViT-L/16, med_large_config.json, T5-large).
Written to --out: itm.pth and captioner.pth ({"model": state_dict}, as LAVIS's checkpoints), image.png,
reference.pt (LAVIS's outputs), and t5/ (above tiny: the FiD's T5 as a Hugging Face directory).
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import sys
import tempfile
import types
from typing import Any

# transformers 4.25 turns T5's SentencePiece model into a fast tokenizer through protobuf code generated for
# protobuf 3; the pure-Python protobuf still reads it.
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUESTION = "what is the man riding?"
BLOCK = 7  # PNP-VQA's GradCAM block (the eval yamls' block_num)
NUM_PATCHES = 20  # K
CAP_MIN_LENGTH, CAP_MAX_LENGTH = 10, 20  # forward_cap's, counting the 4 prompt tokens
QA_MAX_LEN = 20  # forward_qa's max_len (the decoder start token included)
TINY_VIT = dict(img_size=24, patch_size=1, embed_dim=64, depth=1, num_heads=1)
TINY_TEXT = dict(hidden_size=24, intermediate_size=48, max_position_embeddings=64, encoder_width=64)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "base", "large"], default="base")
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-captions", type=int, default=10, help="captions sampled for the FiD passages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--root", default=os.environ.get("LAVIS_BENCH_ROOT", "/tmp/lavis-bench"),
                        help="the folder setup.sh made (LAVIS/, venv/, hf/)")
    parser.add_argument("--harness", default=os.environ.get("LAVIS_BENCH_HARNESS",
                                                            os.path.join(REPO, "..", "shared", "lavis-bench")),
                        help="the lavis-bench folder (its bench.py imports LAVIS without its eager __init__)")
    return parser.parse_args()


def import_lavis(args: argparse.Namespace) -> types.ModuleType:
    """LAVIS's modules through the harness's shims (bench.py: no eager imports, torchvision's Python parts)."""
    if not os.path.exists(os.path.join(args.harness, "bench.py")):
        sys.exit(f"no lavis-bench harness at {args.harness}: pass --harness (the folder with setup.sh and bench.py)")
    sys.path.insert(0, os.path.abspath(args.harness))
    import bench

    bench.setup_env(args)
    import torch

    torch.set_num_threads(args.threads)
    bench.import_torchvision_cpu_shim()
    bench.import_lavis(os.path.join(args.root, "LAVIS"))
    return bench


def text_config_file(base: str, folder: str, layers: int) -> str:
    """LAVIS's med_config.json at the tiny size (12 heads kept: compute_gradcam reshapes to 12 heads)."""
    from lavis.common.utils import get_abs_path

    with open(get_abs_path(base)) as f:
        config = json.load(f)
    config.update(TINY_TEXT, num_hidden_layers=layers)
    path = os.path.join(folder, f"med_tiny_{layers}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def build_blip(bench: types.ModuleType, size: str, folder: str) -> tuple[Any, Any]:
    """BlipITM and BlipCaption as their from_config builds them, without loading a checkpoint."""
    from omegaconf import OmegaConf

    from lavis.common.utils import get_abs_path
    from lavis.models.blip_models.blip_caption import BlipCaption
    from lavis.models.blip_models.blip_image_text_matching import BlipITM
    from lavis.models.med import XBertEncoder, XBertLMHeadDecoder
    from lavis.models.pnp_vqa_models.pnp_vqa import PNPVQA
    from lavis.models.vit import VisionTransformerEncoder

    if size != "tiny":
        config = OmegaConf.load(get_abs_path(PNPVQA.PRETRAINED_MODEL_CONFIG_DICT[size])).model
        if size == "base":  # BLIP base: ViT-B/16 and its med_config (pnp_vqa_base.yaml itself keeps BLIP large)
            for part in (config.image_question_matching_model, config.image_captioning_model):
                part.vit_type, part.med_config_path = "base", "configs/models/med_config.json"
        return bench.build_blip_pair(config)

    def vit() -> Any:
        encoder = VisionTransformerEncoder(**TINY_VIT)
        encoder.vision_width = TINY_VIT["embed_dim"]
        return encoder

    def text(layers: int) -> Any:
        return OmegaConf.create({"med_config_path": text_config_file("configs/models/med_config.json", folder, layers)})

    itm = BlipITM(vit(), XBertEncoder.from_config(text(BLOCK + 2)), embed_dim=16)
    captioner = BlipCaption(vit(), XBertLMHeadDecoder.from_config(text(2)), prompt="a picture of ")
    return itm, captioner


def shrink_for_fixture(model: Any, keep_ids: list[int], seed: int) -> None:
    """Make a tiny model's weights tell its parts apart, and its file compress well. LayerNorm weights and biases
    start as ones and zeros, so a converter that swapped two of them would go unnoticed: they get noise. Then every
    weight goes on a grid of 1/1024 (few distinct values), and the word embeddings (with the tied output layer and its
    bias) are zero except for the tokens the fixture uses and a few more. LAVIS computes with these as with any."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
            parameter.copy_((parameter * 1024).round() / 1024)
        for name, parameter in model.named_parameters():
            if name.endswith("word_embeddings.weight") or name.endswith("predictions.bias"):
                kept = parameter[keep_ids].clone()
                parameter.zero_()
                parameter[keep_ids] = kept
        for name, parameter in model.named_parameters():
            if name.endswith("predictions.bias"):  # active tokens ahead of the zero rows, so captions use them
                parameter[keep_ids] = (torch.rand(len(keep_ids), generator=generator) * 4 + 1).mul(256).round() / 256


def save(obj: Any, path: str, compress: bool) -> str:
    import torch

    if not compress:
        torch.save(obj, path)
        return path
    with lzma.open(path + ".xz", "wb", preset=9) as f:
        torch.save(obj, f)
    return path + ".xz"


def build_fid(args: argparse.Namespace, size: str, folder: str) -> Any:
    """PNPUnifiedQAv2FiD as from_config builds it, minus the hub weights (random); its T5 saved as a Hugging Face
    directory (fast tokenizer: the project's transformers reads tokenizer.json) before LAVIS wraps the encoder."""
    from omegaconf import OmegaConf
    from transformers import T5Config, T5TokenizerFast

    from lavis.common.utils import get_abs_path
    from lavis.models.pnp_vqa_models.pnp_unifiedqav2_fid import PNPUnifiedQAv2FiD, T5EncoderWrapper
    from lavis.models.pnp_vqa_models.pnp_vqa import PNPVQA

    config = OmegaConf.load(get_abs_path(PNPVQA.PRETRAINED_MODEL_CONFIG_DICT[size])).model.question_answering_model
    # The harness's HF cache holds the stand-in T5 tokenizer under the large id only; a tokenizer has no size.
    tokenizer_id = "allenai/unifiedqa-v2-t5-large-1363200"
    qa = PNPUnifiedQAv2FiD(T5Config.from_json_file(get_abs_path(config.t5_config_path)), tokenizer_id)
    t5_dir = os.path.join(folder, "t5")
    qa.save_pretrained(t5_dir)
    T5TokenizerFast.from_pretrained(tokenizer_id).save_pretrained(t5_dir, legacy_format=False)
    qa.encoder = T5EncoderWrapper(qa.encoder)  # what load_unifiedqa does after loading the weights
    return qa


def main() -> None:
    args = parse_args()
    bench = import_lavis(args)
    import torch
    from PIL import Image

    from lavis.models.pnp_vqa_models.pnp_vqa import PNPVQA
    from lavis.processors.blip_processors import BlipImageEvalProcessor, BlipQuestionProcessor

    tiny = args.size == "tiny"
    os.makedirs(args.out, exist_ok=True)
    scratch = tempfile.mkdtemp()
    torch.manual_seed(args.seed)
    itm, captioner = build_blip(bench, args.size, scratch)
    qa = None if tiny else build_fid(args, args.size, args.out)
    tokenizer = itm.tokenizer
    question = BlipQuestionProcessor()(QUESTION)  # the eval yamls' blip_question
    if tiny:
        extra = torch.randperm(30522, generator=torch.Generator().manual_seed(args.seed))[:300].tolist()
        keep = sorted(set(tokenizer(question).input_ids + tokenizer(captioner.prompt).input_ids + extra
                          + [tokenizer.bos_token_id, tokenizer.enc_token_id, tokenizer.unk_token_id]))
        shrink_for_fixture(itm, keep, args.seed)
        shrink_for_fixture(captioner, keep, args.seed + 1)
    model = PNPVQA(itm, captioner, qa).eval()  # load_model(..., is_eval=True)

    files = {"itm": save({"model": itm.state_dict()}, os.path.join(args.out, "itm.pth"), tiny),
             "captioner": save({"model": captioner.state_dict()}, os.path.join(args.out, "captioner.pth"), tiny)}
    image_size = TINY_VIT["img_size"] if tiny else 384
    image_path = os.path.join(args.out, "image.png")
    bench.make_image(args.seed, size=(96, 72) if tiny else (640, 480)).save(image_path)
    pixels = BlipImageEvalProcessor(image_size=image_size)(Image.open(image_path).convert("RGB")).unsqueeze(0)

    record: dict[str, Any] = {"question": question, "block": BLOCK, "pixels": pixels}
    with torch.no_grad():  # LAVIS's eval runner; forward_itm turns gradients on for GradCAM itself
        record["itm_embeds"] = itm.visual_encoder.forward_features(pixels)
        record["captioner_embeds"] = captioner.forward_encoder({"image": pixels})
        record["itm_logits"] = itm({"image": pixels, "text_input": [question.strip("?")]}, match_head="itm")
        samples = model.forward_itm({"image": pixels, "text_input": [question]}, block_num=BLOCK)
        record["gradcam"] = samples["gradcams"][0]
        record.update(caption_outputs(captioner, record["captioner_embeds"], record["gradcam"]))
        if qa is not None:
            torch.manual_seed(args.seed)
            samples = model.forward_cap(samples, cap_max_length=CAP_MAX_LENGTH, cap_min_length=CAP_MIN_LENGTH,
                                        top_p=1, top_k=50, repetition_penalty=1.0, num_captions=args.num_captions,
                                        num_patches=NUM_PATCHES)
            record.update(fid_outputs(model, samples, args.num_captions))
    if tiny:  # the fixture checks what the models give, not their 577 x 64 image states (which would not compress)
        del record["itm_embeds"], record["captioner_embeds"]
    files["reference"] = save(record, os.path.join(args.out, "reference.pt"), tiny)
    shutil.rmtree(scratch)
    print(json.dumps({"size": args.size, "files": files, "question": question,
                      "caption": record["caption"], "answer": record.get("answer"),
                      "lavis": open(os.path.join(args.root, "LAVIS", "LAVIS_COMMIT")).read().strip()}))


def caption_outputs(captioner: Any, embeds: Any, gradcam: Any) -> dict[str, Any]:
    """The captioner on the K most relevant patches, gathered as forward_cap gathers its sampled ones: the greedy
    caption (generate with forward_cap's prompt, lengths and token ids) and the decoder's logits along it."""
    import torch

    patches = gradcam.topk(NUM_PATCHES).indices.sort().values
    index = (patches + 1).view(1, -1, 1).expand(-1, -1, embeds.size(2))
    states = torch.gather(embeds, 1, index)
    states_mask = torch.ones(states.shape[:-1], dtype=torch.long)
    tokenizer = captioner.tokenizer
    prompt = tokenizer([captioner.prompt], return_tensors="pt")
    prompt.input_ids[:, 0] = tokenizer.bos_token_id
    prompt_ids = prompt.input_ids[:, :-1]
    sequence = captioner.text_decoder.generate(
        input_ids=prompt_ids, max_length=CAP_MAX_LENGTH, min_length=CAP_MIN_LENGTH, do_sample=False, num_beams=1,
        eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
        encoder_hidden_states=states, encoder_attention_mask=states_mask)
    logits = captioner.text_decoder(input_ids=sequence, attention_mask=torch.ones_like(sequence),
                                    encoder_hidden_states=states, encoder_attention_mask=states_mask,
                                    return_dict=True).logits
    caption = tokenizer.batch_decode(sequence, skip_special_tokens=True)[0][len(captioner.prompt):]
    return {"caption_patches": patches, "caption_ids": sequence[0], "caption_logits": logits[0], "caption": caption}


def fid_outputs(model: Any, samples: dict[str, Any], num_captions: int) -> dict[str, Any]:
    """forward_qa's answer, and LAVIS's FiD log-probabilities over the whole vocabulary at each of its tokens (its own
    forward over the passages padded to the longest and concatenated, as generate sees them)."""
    import torch

    answers = model.forward_qa(samples, num_beams=1, max_len=QA_MAX_LEN, min_len=0, internal_bsz_fid=1,
                               num_captions=num_captions, num_captions_fid=1)
    qa = model.question_answering_model
    passages = samples["question_captions"][0]
    tokens = qa.tokenizer(passages, padding="longest", truncation=True, return_tensors="pt")
    ids, mask = tokens.input_ids.unsqueeze(0), tokens.attention_mask.unsqueeze(0)
    sequence = qa.generate(input_ids=ids, attention_mask=mask, num_beams=1, min_length=0, max_length=QA_MAX_LEN)
    # return_dict=False: LAVIS's T5EncoderWrapper hands back a tuple, which T5's dict output cannot take.
    logits = qa(input_ids=ids, attention_mask=mask, decoder_input_ids=sequence[:, :-1], return_dict=False)[0]
    logprobs = logits.log_softmax(-1)[0]  # [answer tokens, vocabulary]
    return {"captions": samples["captions"][0], "passages": passages, "passage_ids": tokens.input_ids,
            "answer": answers[0], "answer_ids": sequence[0, 1:], "answer_logprobs": logprobs}


if __name__ == "__main__":
    main()
