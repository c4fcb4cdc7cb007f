"""Each paper preset's numbers, pinned to the reference code or config they come from: changing one of them (a
GradCAM block of 6 for PNP-VQA's 7, say) must be a deliberate edit of this file, with its source.

Sources: LAVIS 1.0.2 `lavis/projects/pnp-vqa/eval/*.yaml` (every VQAv2, OK-VQA and GQA file has the same run
settings but num_captions_fid) and `configs/models/pnp-vqa/pnp_vqa_large.yaml`; LAVIS
`models/img2prompt_models/img2prompt_vqa.py` and CR-Gjx/Img2Prompt `Imape2Prompt_evaluation.py`, `run_okvqa.sh`
(its caption file name, `..._blk_7_sam_p1_min10_max20_cap100_bt1_npatch20_rp1_t1_topk50`, spells the captioning
run); microsoft/PICa `gpt3_api_okvqa.py` and its README's best command.
"""

from typing import Any

import pytest

from zsvqa.config import preset

PNP_VQA: dict[str, Any] = {
    "matcher.gradcam_layer": 7,  # block_num: 7
    "matcher.enc_token": True,  # compute_gradcam runs the ITM head, which feeds [ENC] at position 0
    "matcher.strip_question_mark": True,  # pnp_vqa.py forward_itm: text.strip('?')
    "captioner.relevance": "gradcam",
    "captioner.num_patches": 20,  # num_patches: 20 (K)
    "captioner.num_captions": 100,  # num_captions: 100 (N)
    "captioner.decoding": "sample",  # forward_cap samples: top_k 50, top_p 1, repetition_penalty 1
    "captioner.top_k": 50,
    "captioner.sampler": "top_k",  # forward_cap's top-k 50 distribution (transformers: its random stream too)
    "captioner.min_length": 10,  # cap_min_length: 10
    "captioner.max_length": 20,  # cap_max_length: 20
    "captioner.prompt": "a picture of ",  # prompt: 'a picture of '
    "captioner.filter_threshold": None,  # PNP-VQA filters no caption by its ITM score
    "question_gen.backend": "none",
    "prompt.style": "unifiedqa",
    "prompt.exemplars": "none",
    "prompt.num_captions": 100,  # all 100 captions go to the FiD reader
    "prompt.captions_per_passage": 1,  # num_captions_fid: 1
    "answerer.kind": "fid",  # pnp_unifiedqav2_fid
    "answerer.model": "allenai/unifiedqa-v2-t5-large-1363200",  # pnp_vqa_large.yaml question_answering_model
    "answerer.selection": "generate",  # inference_method: "generate", num_beams: 1
    "answerer.max_new_tokens": 19,  # max_len: 20, which counts T5's decoder start token (lavis_reference.py)
    "vision_layer_norm_eps": 1e-6,  # LAVIS's ViT builds its LayerNorms with eps=1e-6
}

IMG2LLM: dict[str, Any] = {
    "matcher.gradcam_layer": 7,  # img2prompt_vqa.py forward_itm(block_num=7); the caption run's "blk_7"
    "matcher.strip_question_mark": True,  # forward_itm: text.strip("?")
    "captioner.relevance": "gradcam",
    "captioner.num_patches": 20,  # forward_cap num_patches=20; "npatch20"
    "captioner.num_captions": 100,  # forward_cap num_captions=100; "cap100"
    "captioner.decoding": "sample",  # "sam_p1": sampling, top_p 1
    "captioner.top_k": 50,  # "topk50"
    "captioner.sampler": "top_k",  # forward_cap's top-k 50 distribution (transformers: its random stream too)
    "captioner.min_length": 10,  # "min10"
    "captioner.max_length": 20,  # "max20"; forward_cap cap_max_length=20
    "captioner.filter_threshold": 0.5,  # forward_cap keeps a caption when itm_outputs >= 0.5
    "candidates.extraction": "img2llm",  # answer_extraction
    "candidates.max_candidates": 30,  # answer_extraction(num_question_generation=30)
    "candidates.max_chunk_words": 3,  # noun chunks with len(chunk.text.split()) < 4
    "question_gen.backend": "t5",
    "question_gen.context": "all",  # "answer: %s  context: %s." with every caption (cap_use)
    "question_gen.max_input_tokens": 2048,  # the T5 tokenizer's max_length=2048
    "question_gen.num_beams": 3,  # generate(num_beams=3)
    "prompt.style": "img2llm",
    "prompt.exemplars": "synthetic",
    "prompt.num_captions": 30,  # --num_caps_per_img default 30
    "prompt.num_exemplars": 30,  # --num_question_per_img default 30
    "prompt.yes_no_exemplars": True,  # create_task_prompt's yes/no exemplars for VQAv2
    "answerer.kind": "causal",  # OPT
    "answerer.selection": "generate",
    "answerer.max_new_tokens": 10,  # --max_answer_length 10 (run_okvqa.sh, run_aokvqa.sh)
    "answerer.max_prompt_tokens": None,  # the whole prompt (Img2Prompt asserts it fits OPT's 2048)
}

PICA: dict[str, Any] = {
    "captioner.relevance": "full",  # one caption of the whole image per prompt
    "captioner.num_captions": 1,
    "question_gen.backend": "none",
    "prompt.style": "pica",
    "prompt.exemplars": "retrieved",
    "prompt.num_captions": 1,
    "retrieval.n_shot": 16,  # --n_shot 16
    "retrieval.n_ensemble": 5,  # --n_ensemble 5 (README's best setting)
    "retrieval.image_embedding_model": "sentence-transformers/clip-ViT-B-16",  # imagequestion: CLIP ViT-B/16
    "retrieval.embedding_model": "sentence-transformers/clip-ViT-B-16",  # coco_clip_vitb16_*_question.npy
    "retrieval.exemplar_answer": "first",  # traincontext_answer_dict[context_key][0]
    "answerer.selection": "generate",  # temperature 0, the ensemble's highest summed log-probability wins
    "answerer.max_new_tokens": 5,  # max_tokens=5
    "answerer.max_prompt_tokens": None,
}

PINNED = {
    "pnp-vqa": PNP_VQA,
    "pnp-vqa-gqa": {**PNP_VQA, "prompt.captions_per_passage": 5},  # gqa_eval_large.yaml: num_captions_fid: 5
    "img2llm": IMG2LLM,
    "img2llm-aokvqa": {**IMG2LLM, "prompt.yes_no_exemplars": False},  # Img2LLM's OK-VQA prompt for A-OKVQA
    "pica": PICA,
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_paper_preset_numbers(name: str) -> None:
    settings = preset(name).to_flat_dict()
    assert {key: settings[key] for key in PINNED[name]} == PINNED[name]
