#!/usr/bin/env python
"""zsvqa against LAVIS on shared random weights: the same models, image and question through both, stage by stage.

    bash ../shared/lavis-bench/setup.sh                         # once: LAVIS 1.0.2 in its own venv
    python benchmarks/lavis_equivalence.py                       # base size (a few minutes on 2 CPU cores)
    python benchmarks/lavis_equivalence.py --size large          # PNP-VQA's own sizes (ViT-L BLIP, T5-large)

Two processes, because LAVIS needs transformers 4.25 and zsvqa 5.x: the lavis-bench venv's Python runs
benchmarks/lavis_reference.py, which builds LAVIS's BLIP ITM, BLIP captioner and UnifiedQA FiD as `pnp_vqa` builds
them (random weights), saves them (the BLIP models as LAVIS checkpoint files, the T5 as a Hugging Face directory) and
records LAVIS's outputs; this script (the project's venv) then loads the checkpoint files through zsvqa's own loader
(`--itm-model file.pth`: zsvqa/lavis_checkpoint.py converts them) and the T5 through its FiD answerer, feeds them the
same image and question, and prints the largest absolute difference of each quantity:

- pixels (zsvqa's BLIP processor against LAVIS's blip_image_eval), and the image states of both vision transformers;
- the ITM match probability; the GradCAM map at block 7 (relative to its largest value, and normalised to sum one as
  the captioner samples from it) and how many of its 20 most relevant patches agree;
- the captioner's logits along LAVIS's greedy caption from those 20 patches, and whether zsvqa's greedy decoding
  writes the same tokens;
- the FiD passages (LAVIS's prepare_qa_input against zsvqa's unifiedqa prompt, on LAVIS's sampled captions), their
  token ids, and the FiD log-probabilities along LAVIS's greedy answer (of its tokens, and of the whole vocabulary).

A benchmark, not a test: it needs the LAVIS venv. Results also go to WORK/equivalence.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zsvqa.cli import ScriptCommand, configure_logging  # noqa: E402

TOLERANCE = 1e-5


@click.command(cls=ScriptCommand, help=__doc__)
@click.option("--size", type=click.Choice(["base", "large"]), default="base", show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=Path("/tmp/zsvqa-lavis-equivalence"),
              show_default=True, help="where LAVIS's checkpoints, outputs and zsvqa's conversions go")
@click.option("--lavis-python", default="/tmp/lavis-bench/venv/bin/python", show_default=True,
              help="the lavis-bench venv's Python (../shared/lavis-bench/setup.sh makes it)")
@click.option("--harness", default=None, help="the lavis-bench folder, if not ../shared/lavis-bench")
@click.option("--num-captions", default=10, show_default=True, help="captions LAVIS samples for the FiD passages")
@click.option("--reuse", is_flag=True, help="compare with LAVIS outputs already in --work (no LAVIS run)")
def main(size: str, work: Path, lavis_python: str, harness: str | None, num_captions: int, reuse: bool) -> None:
    configure_logging(False)
    work = work / size
    if not (reuse and (work / "reference.pt").exists()):
        if not Path(lavis_python).exists():
            raise click.ClickException(f"no LAVIS venv at {lavis_python}: run bash ../shared/lavis-bench/setup.sh")
        command = ["nice", "-n", "19", lavis_python, str(ROOT / "benchmarks" / "lavis_reference.py"), "--size", size,
                   "--out", str(work), "--num-captions", str(num_captions)]
        if subprocess.run(command + (["--harness", harness] if harness else [])).returncode:
            raise click.ClickException("LAVIS's side (benchmarks/lavis_reference.py) failed; its output is above")
    os.environ["ZSVQA_CACHE"] = str(work / "cache")  # the conversions stay with this run
    rows = compare(work)
    print_table(rows, size)
    (work / "equivalence.json").write_text(json.dumps(rows, indent=1) + "\n")


def compare(work: Path) -> list[dict[str, Any]]:
    import torch

    from zsvqa.language_model import FrozenLM
    from zsvqa.captioning import PatchCaptioner
    from zsvqa.config import preset
    from zsvqa.images import load_image
    from zsvqa.matching import ImageQuestionMatcher, normalize_relevance
    from zsvqa.prompting import PromptBuilder

    torch.set_num_threads(2)
    lavis = torch.load(work / "reference.pt", weights_only=True)
    pnp = preset("pnp-vqa")
    image, question = load_image(work / "image.png"), lavis["question"]
    rows: list[dict[str, Any]] = []

    def row(name: str, ours: Any, theirs: Any, scale: float = 1.0, note: str = "") -> None:
        ours, theirs = torch.as_tensor(ours).double(), torch.as_tensor(theirs).double()
        if ours.shape != theirs.shape:
            raise SystemExit(f"{name}: zsvqa's shape {tuple(ours.shape)} is not LAVIS's {tuple(theirs.shape)}")
        rows.append({"quantity": name, "max_abs_diff": (ours - theirs).abs().max().item() / scale, "note": note})

    matcher = ImageQuestionMatcher(dataclasses.replace(pnp.matcher, model=str(work / "itm.pth")))
    pixels = matcher.processor(images=image, return_tensors="pt").pixel_values
    row(f"pixels ({pixels.shape[-1]}x{pixels.shape[-2]} from {image.width}x{image.height})", pixels, lavis["pixels"])
    features = matcher.encode_image(image)
    row("ITM image embeddings", features.embeds, lavis["itm_embeds"])
    (match,) = matcher(features, [question])
    row("ITM match probability", match.itm_score, lavis["itm_logits"].softmax(-1)[0, 1])
    _, cams = matcher._gradcam(features, [question])  # the map before normalisation, as LAVIS's
    theirs = lavis["gradcam"]
    row(f"GradCAM map, block {pnp.matcher.gradcam_layer} (/ its largest value)", cams[0].flatten(), theirs,
        scale=theirs.max().item(), note=f"largest value {theirs.max().item():.3g}")
    top_ours, top_theirs = set(cams[0].flatten().topk(20).indices.tolist()), set(theirs.topk(20).indices.tolist())
    row("GradCAM as sampled (sums to one)", normalize_relevance(cams[0]).flatten(), theirs / theirs.sum(),
        note=f"top-20 patches shared: {len(top_ours & top_theirs)}/20")

    captioner_config = dataclasses.replace(pnp.captioner, model=str(work / "captioner.pth"), decoding="greedy")
    captioner = PatchCaptioner(captioner_config)
    caption_features = captioner.encode_image(image)
    row("captioner image embeddings", caption_features.embeds, lavis["captioner_embeds"])
    patches, ids = lavis["caption_patches"], lavis["caption_ids"][None]
    states = caption_features.embeds[0, 1:][patches][None]
    with torch.no_grad():
        logits = captioner.model.text_decoder(
            input_ids=ids, attention_mask=torch.ones_like(ids), encoder_hidden_states=states,
            encoder_attention_mask=torch.ones(states.shape[:2], dtype=torch.long)).logits[0]
    prompt_length = captioner.prompt_ids.shape[1]
    lavis_caption = captioner.processor.tokenizer.decode(ids[0, prompt_length:], skip_special_tokens=True)
    greedy = captioner._generate(caption_features, patches[None], torch.Generator())[0]
    same_caption = greedy == " ".join(lavis_caption.split())
    row("caption logits (greedy caption, top-20 patches)", logits, lavis["caption_logits"],
        note=f"{ids.shape[1]} tokens; zsvqa's greedy caption the same: {'yes' if same_caption else 'NO'}")

    builder = PromptBuilder(pnp.prompt)
    passages = builder(question, lavis["captions"]).passages
    same_passages = sum(a == b for a, b in zip(passages, lavis["passages"]))
    answerer = dataclasses.replace(pnp.answerer, model=str(work / "t5"))
    lm = FrozenLM(answerer)
    their_ids = [row_ids[row_ids != lm.tokenizer.pad_token_id].tolist() for row_ids in lavis["passage_ids"]]
    our_ids = lm.tokenizer(passages).input_ids
    outputs: list[Any] = []
    generate = lm.model.generate
    lm.model.generate = lambda **kwargs: outputs.append(generate(**kwargs)) or outputs[-1]
    answer = lm.generate_fused(passages)
    scores = torch.stack(outputs[0].scores, dim=1)[0].float().log_softmax(-1)  # [steps, vocabulary]
    tokens = outputs[0].sequences[0, -scores.shape[0]:]
    theirs_tokens = lavis["answer_ids"]
    steps = min(len(tokens), len(theirs_tokens))
    same_tokens = len(tokens) == len(theirs_tokens) and tokens.tolist() == theirs_tokens.tolist()
    same_ids = sum(a == b for a, b in zip(our_ids, their_ids))
    theirs_scores = lavis["answer_logprobs"]
    row("FiD answer: log-probs of its tokens", scores[torch.arange(steps), theirs_tokens[:steps]],
        theirs_scores[torch.arange(steps), theirs_tokens[:steps]])
    row("FiD answer: log-probs, whole vocabulary at each token", scores[:steps], theirs_scores[:steps],
        note=f"passages identical {same_passages}/{len(passages)}, their token ids {same_ids}/{len(their_ids)}; "
             f"answer tokens {len(tokens)} (LAVIS {len(theirs_tokens)}), the same: {'yes' if same_tokens else 'NO'}; "
             f"answer text {'identical' if answer.text == lavis['answer'].strip() else 'DIFFERS'}")
    return rows


def print_table(rows: list[dict[str, Any]], size: str) -> None:
    print(f"\nzsvqa against LAVIS 1.0.2, shared random weights ({size} size), max |diff|; at most {TOLERANCE:g}: ok")
    print("| quantity | max abs diff | ok | note |\n|---|---:|---|---|")
    for r in rows:
        ok = "ok" if r["max_abs_diff"] <= TOLERANCE else "OVER"
        print(f"| {r['quantity']} | {r['max_abs_diff']:.2e} | {ok} | {r['note']} |")


if __name__ == "__main__":
    main()
