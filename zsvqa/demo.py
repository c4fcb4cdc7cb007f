"""The web demo (`run.py demo`): every step of an answer on one page, over the Python API.

The handlers (`Demo.ask_image`, `Demo.ask_captions`, `Demo.preset_knobs`) are plain Python and need no Gradio;
`build_app` wraps them in a Gradio page, imported only there (Gradio is the optional extra `demo`).
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from zsvqa.config import EXEMPLAR_SOURCES, QUESTION_GENERATORS, RELEVANCE_MODES, ANSWER_SELECTIONS, PRESETS, preset
from zsvqa.errors import InputError, ZsvqaError
from zsvqa.heatmap import BOX_COLOURS, heatmap_image, patch_boxes_image
from zsvqa.pipeline import Pipeline, VQAResult

INSTALL_HINT = "the demo needs Gradio: pip install -e '.[demo]'"
EXAMPLE_IMAGES = sorted((Path(__file__).parent / "demo_images").glob("*.png"))
BOXED_CAPTIONS = 3  # captions whose sampled patches are drawn
PIPELINES_KEPT = 3  # pipelines (each with its loaded models) kept per process, most recently used

# The knobs on the page, in order, and the setting each one sets.
KNOBS: list[tuple[str, str]] = [
    ("relevance", "captioner.relevance"),
    ("num_patches", "captioner.num_patches"),
    ("num_captions", "captioner.num_captions"),
    ("caption_filter", "captioner.filter_threshold"),
    ("question_generator", "question_gen.backend"),
    ("exemplars", "prompt.exemplars"),
    ("answerer", "answerer.model"),
    ("selection", "answerer.selection"),
]
INTEGER_KNOBS = {"num_patches", "num_captions"}


@dataclass
class ImageAnswer:
    """What the image tab shows."""

    summary: str  # Markdown: the answer, its log-probability and the time per stage, or the error
    heatmap: Image.Image | None
    patches: Image.Image | None
    captions: str  # HTML
    exemplars: str  # HTML: candidates and synthetic QA pairs
    prompt: str


@dataclass
class CaptionAnswer:
    """What the captions tab shows."""

    summary: str
    exemplars: str
    prompt: str


def install_check() -> None:
    """Raises InputError with the one-line install hint when Gradio is missing."""
    try:
        import gradio  # noqa: F401
    except ImportError as error:
        raise InputError(INSTALL_HINT) from error


def knob_overrides(**knobs: Any) -> dict[str, Any]:
    """Knob values as config overrides; None (an empty field) keeps the preset's, except the caption filter,
    where empty means no filter."""
    overrides: dict[str, Any] = {}
    for name, key in KNOBS:
        value = knobs.get(name)
        if isinstance(value, str):
            value = value.strip()
        if name == "caption_filter":
            overrides[key] = None if value in (None, "") else float(value)
        elif value not in (None, ""):
            overrides[key] = int(value) if name in INTEGER_KNOBS else value
    return overrides


class Demo:
    """The page's handlers, with pipelines cached per configuration: models load once per process."""

    def __init__(self, default_preset: str = "offline") -> None:
        preset(default_preset)  # an unknown name fails here, before serving
        self.default_preset = default_preset
        self._pipelines: OrderedDict[str, Pipeline] = OrderedDict()
        self._lock = threading.Lock()  # one request runs the models at a time (and the cache stays consistent)

    def pipeline(self, preset_name: str, overrides: dict[str, Any]) -> Pipeline:
        config = preset(preset_name).with_overrides(overrides)
        key = json.dumps(config.to_flat_dict(), sort_keys=True, default=str)
        if key not in self._pipelines:
            self._pipelines[key] = Pipeline(config)
            while len(self._pipelines) > PIPELINES_KEPT:
                self._pipelines.popitem(last=False)
        self._pipelines.move_to_end(key)
        return self._pipelines[key]

    def preset_knobs(self, preset_name: str) -> list[Any]:
        """The knobs' values in `preset_name`, in KNOBS order (the page resets them when the preset changes)."""
        flat = preset(preset_name).to_flat_dict()
        return [flat[key] for _, key in KNOBS]

    def ask_image(self, image: Image.Image | str | None, question: str, preset_name: str, *knobs: Any) -> ImageAnswer:
        """Answer a question about an image: the image tab's handler. Errors come back as the summary."""
        try:
            if image is None:
                raise InputError("no image: upload one, take one with the webcam or pick an example")
            overrides = knob_overrides(**dict(zip([name for name, _ in KNOBS], knobs)))
            with self._lock:
                pipeline = self.pipeline(preset_name, overrides)
                captioned = pipeline.caption_image(image, [question])[0]
                result = pipeline.answer_captioned(captioned)
                picture = _rgb(image, pipeline.config.exif_orientation)  # as the pipeline saw it
                # matplotlib's pyplot is not thread-safe: drawn under the lock too.
                heatmap = heatmap_image(picture, result.relevance) if result.relevance else None
            boxes = None
            if captioned.patch_grid and any(captioned.patch_indices[:BOXED_CAPTIONS]):
                boxes = patch_boxes_image(picture, captioned.patch_indices[:BOXED_CAPTIONS], captioned.patch_grid)
            boxed = len(captioned.patch_indices[:BOXED_CAPTIONS]) if boxes is not None else 0
            return ImageAnswer(
                summary=_summary(result),
                heatmap=heatmap,
                patches=boxes,
                captions=_captions_html(result, captioned.removed, boxed),
                exemplars=_exemplars_html(result),
                prompt=result.prompt,
            )
        except ZsvqaError as error:
            return ImageAnswer(_error(error), None, None, "", "", "")

    def ask_captions(self, captions: str, question: str, preset_name: str, *knobs: Any) -> CaptionAnswer:
        """Answer from typed captions, one per line: the offline path, no vision model loaded."""
        try:
            lines = [line for line in (captions or "").splitlines() if line.strip()]
            overrides = knob_overrides(**dict(zip([name for name, _ in KNOBS], knobs)))
            with self._lock:
                result = self.pipeline(preset_name, overrides).answer(question, lines)
            return CaptionAnswer(
                _summary(result) + "\n\n" + _captions_html(result, [], 0), _exemplars_html(result), result.prompt
            )
        except ZsvqaError as error:
            return CaptionAnswer(_error(error), "", "")


def _rgb(image: Image.Image | str, exif_orientation: bool) -> Image.Image:
    from zsvqa.images import load_image

    return load_image(image, exif_orientation)


def _error(error: Exception) -> str:
    return f"**Error:** {_md(str(error))}"


def _md(text: str) -> str:
    """Text shown literally inside Markdown."""
    return html.escape(re.sub(r"([\\`*_\[\]#|])", r"\\\1", text), quote=False)


def _summary(result: VQAResult) -> str:
    stages = ", ".join(
        f"{stage} {seconds:.2f}s" + (" (reused)" if stage in result.cached else "")
        for stage, seconds in result.timings.items()
    )
    lines = [
        f"### Answer: {_md(result.answer or '(empty)')}",
        f"log-probability **{result.logprob:.3f}**"
        + (f" · image-question match {result.itm_score:.3f}" if result.itm_score is not None else ""),
        f"time per stage: {stages}",
    ]
    if result.warning:
        lines.append(f"*{_md(result.warning)}*")
    return "\n\n".join(lines)


def _captions_html(result: VQAResult, removed: list[Any], boxed: int) -> str:
    in_prompt = set(result.captions)
    items = []
    for number, caption in enumerate(result.all_captions):
        swatch = ""
        if number < boxed:
            colour = BOX_COLOURS[number % len(BOX_COLOURS)]
            swatch = f'<span style="color:{colour}" title="its patches are drawn in this colour">&#9632;</span> '
        note = "" if caption in in_prompt else ' <em>(not in the prompt)</em>'
        items.append(f"<li>{swatch}{html.escape(caption)}{note}</li>")
    for caption in removed:
        why = caption.reason + (f", ITM {caption.score:.2f}" if caption.score is not None else "")
        items.append(f'<li class="removed"><s>{html.escape(caption.text)}</s> <em>({html.escape(why)})</em></li>')
    kept = f"{len(result.all_captions)} captions, {len(removed)} removed by de-duplication or the filter"
    return f'<div id="caption-list"><p>{kept}</p><ol>{"".join(items)}</ol></div>'


def _exemplars_html(result: VQAResult) -> str:
    candidates = ", ".join(html.escape(c) for c in result.candidates) or "<em>none</em>"
    rows = "".join(
        f"<tr><td>{html.escape(e.question)}</td><td>{html.escape(e.answer)}</td></tr>" for e in result.exemplars
    )
    table = (
        f"<table><tr><th>question</th><th>answer</th></tr>{rows}</table>" if rows else "<p><em>none</em></p>"
    )
    return f"<p><b>Answer candidates:</b> {candidates}</p><p><b>QA exemplars in the prompt:</b></p>{table}"


def build_app(default_preset: str = "offline", demo: Demo | None = None) -> Any:
    """The Gradio page over `Demo`'s handlers: a tab that answers about an image, one that answers from typed
    captions."""
    install_check()
    import gradio as gr

    demo = demo or Demo(default_preset)
    with gr.Blocks(title="zsvqa: how each answer is reached") as app:
        gr.Markdown(
            "# zsvqa: zero-shot VQA, step by step\n"
            "Relevance of each patch to the question → captions of sampled patches → answer candidates and "
            "synthetic QA pairs → the prompt → the frozen language model's answer."
        )
        _image_tab(gr, demo, default_preset)
        _captions_tab(gr, demo, default_preset)
    return app


def _knob_widgets(gr: Any, demo: Demo, preset_name: str) -> list[Any]:
    """The settings widgets, holding the preset's values."""
    values = dict(zip([name for name, _ in KNOBS], demo.preset_knobs(preset_name)))
    return [
        gr.Dropdown(list(RELEVANCE_MODES), value=values["relevance"], label="relevance mode"),
        gr.Number(values["num_patches"], precision=0, minimum=1, label="K: patches per caption"),
        gr.Number(values["num_captions"], precision=0, minimum=1, label="N: captions"),
        gr.Number(values["caption_filter"], minimum=0, maximum=1, label="caption filter: ITM threshold (empty: off)"),
        gr.Dropdown(list(QUESTION_GENERATORS), value=values["question_generator"], label="question generator"),
        gr.Dropdown(list(EXEMPLAR_SOURCES), value=values["exemplars"], label="exemplars"),
        gr.Textbox(values["answerer"], label="answerer model (hub id, directory, .gguf or bundled:NAME)"),
        gr.Dropdown(list(ANSWER_SELECTIONS), value=values["selection"], label="answer selection"),
    ]


def _question_controls(
    gr: Any, demo: Demo, default_preset: str, tab: str, question: str
) -> tuple[Any, Any, list[Any], Any]:
    """A tab's question box, preset choice, settings and Answer button (element ids prefixed by `tab`)."""
    question_box = gr.Textbox(question, label="question", elem_id=f"{tab}-question")
    preset_box = gr.Dropdown(list(PRESETS), value=default_preset, label="preset", elem_id=f"{tab}-preset")
    with gr.Accordion("settings", open=False):
        knobs = _knob_widgets(gr, demo, default_preset)
    ask = gr.Button("Answer", variant="primary", elem_id=f"{tab}-ask")
    return question_box, preset_box, knobs, ask


def _image_tab(gr: Any, demo: Demo, default_preset: str) -> None:
    with gr.Tab("Image"):
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="pil", sources=["upload", "webcam"], label="image", elem_id="image-input")
                if EXAMPLE_IMAGES:
                    gr.Examples([[str(p)] for p in EXAMPLE_IMAGES], inputs=[image], label="example images")
                question, preset_box, knobs, ask = _question_controls(
                    gr, demo, default_preset, "image", "What color is the ball?"
                )
            with gr.Column(scale=2):
                summary = gr.Markdown(elem_id="image-answer")
                with gr.Row():
                    heatmap = gr.Image(label="relevance heatmap", elem_id="heatmap", interactive=False)
                    patches = gr.Image(
                        label=f"patches sampled for the first {BOXED_CAPTIONS} captions", elem_id="patches",
                        interactive=False,
                    )
                captions = gr.HTML(label="captions", elem_id="captions")
                exemplars = gr.HTML(elem_id="image-exemplars")
                with gr.Accordion("full prompt", open=False):
                    prompt = gr.Textbox(lines=12, max_lines=40, show_label=False, elem_id="image-prompt")

        def on_image(*args: Any) -> tuple[Any, ...]:
            out = demo.ask_image(*args)
            return out.summary, out.heatmap, out.patches, out.captions, out.exemplars, out.prompt

        outputs = [summary, heatmap, patches, captions, exemplars, prompt]
        ask.click(on_image, [image, question, preset_box, *knobs], outputs)
        question.submit(on_image, [image, question, preset_box, *knobs], outputs)
        preset_box.change(demo.preset_knobs, [preset_box], knobs)


def _captions_tab(gr: Any, demo: Demo, default_preset: str) -> None:
    with gr.Tab("Captions only"):
        gr.Markdown(
            "Answer from captions you type, one per line: no vision model is loaded (the offline preset "
            "answers with the bundled LLM)."
        )
        with gr.Row():
            with gr.Column(scale=1):
                typed = gr.Textbox(
                    "a man riding a red bicycle down a city street\na person on a bike next to parked cars",
                    lines=6, label="captions, one per line", elem_id="typed-captions",
                )
                typed_question, typed_preset, typed_knobs, typed_ask = _question_controls(
                    gr, demo, default_preset, "typed", "What is the man riding?"
                )
            with gr.Column(scale=2):
                typed_summary = gr.Markdown(elem_id="typed-answer")
                typed_exemplars = gr.HTML(elem_id="typed-exemplars")
                with gr.Accordion("full prompt", open=False):
                    typed_prompt = gr.Textbox(lines=12, max_lines=40, show_label=False, elem_id="typed-prompt")

        def on_captions(*args: Any) -> tuple[Any, ...]:
            out = demo.ask_captions(*args)
            return out.summary, out.exemplars, out.prompt

        typed_outputs = [typed_summary, typed_exemplars, typed_prompt]
        typed_ask.click(on_captions, [typed, typed_question, typed_preset, *typed_knobs], typed_outputs)
        typed_preset.change(demo.preset_knobs, [typed_preset], typed_knobs)


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another program holds, in one line, before Gradio's own traceback would."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InputError(f"port {port} on {host} is taken ({error.strerror}); choose another with --port") from error


def serve(default_preset: str = "offline", port: int = 7860, share: bool = False, host: str = "127.0.0.1",
          block: bool = True) -> Any:
    """Build and launch the page; with block=False, return the app with its server running."""
    app = build_app(default_preset)
    app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=not block)
    return app
