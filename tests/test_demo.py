"""The web demo: its handlers on the tiny preset (no Gradio needed), and the real page driven from headless
Chromium (skipped, with the reason, where Gradio, Playwright or a Chromium is missing)."""

import importlib.util
import os
import shutil
import socket
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from zsvqa.cli import main
from zsvqa.config import preset
from zsvqa.demo import EXAMPLE_IMAGES, INSTALL_HINT, Demo
from zsvqa.pipeline import Pipeline

QUESTION = "What color is the ball?"


@pytest.fixture(scope="module")
def demo() -> Demo:
    return Demo("tiny")


def knobs(demo: Demo, **changes: object) -> list[object]:
    from zsvqa.demo import KNOBS

    values = dict(zip([name for name, _ in KNOBS], demo.preset_knobs("tiny")))
    values.update(changes)
    return list(values.values())


def example(name: str) -> Image.Image:
    return Image.open(next(p for p in EXAMPLE_IMAGES if p.name == name))


def test_example_images_are_shipped() -> None:
    assert {p.name for p in EXAMPLE_IMAGES} >= {"red_ball.png", "house.png", "cars.png"}


def test_image_handler_shows_every_step(demo: Demo) -> None:
    out = demo.ask_image(example("red_ball.png"), QUESTION, "tiny", *knobs(demo))
    assert out.summary.startswith("### Answer: ") and "log-probability" in out.summary
    assert "image_features" in out.summary and "captioning" in out.summary and "answer " in out.summary
    assert isinstance(out.heatmap, Image.Image) and isinstance(out.patches, Image.Image)
    assert out.patches.size == (384, 384)
    assert out.captions.count("<li>") == preset("tiny").captioner.num_captions
    assert "Answer candidates:" in out.exemplars and "<td>" in out.exemplars
    assert QUESTION.lower() in out.prompt.lower()


def test_second_question_reuses_the_image_features(demo: Demo) -> None:
    demo.ask_image(example("house.png"), "What is this?", "tiny", *knobs(demo))
    again = demo.ask_image(example("house.png").copy(), "Is there a door?", "tiny", *knobs(demo))
    assert "image_features 0.00s (reused)" in again.summary


def test_the_pipeline_is_built_once_per_configuration(demo: Demo) -> None:
    first = demo.pipeline("tiny", {"captioner.num_patches": 4})
    assert demo.pipeline("tiny", {}) is first  # the same settings, spelled differently
    assert demo.pipeline("tiny", {"captioner.num_patches": 3}) is not first


def test_filtered_and_duplicate_captions_are_struck_through(demo: Demo) -> None:
    out = demo.ask_image(example("cars.png"), QUESTION, "tiny", *knobs(demo, caption_filter=0.99))
    assert "<s>" in out.captions and "(filtered, ITM 0." in out.captions


def test_captioner_reports_what_it_removed() -> None:
    pipeline = Pipeline(preset("tiny").with_overrides({"captioner.filter_threshold": 0.6}))
    captioned = pipeline.caption_image(example("red_ball.png"), QUESTION)[0]
    filtered = [r for r in captioned.removed if r.reason == "filtered"]
    assert len(filtered) == captioned.filtered_out and all(r.score < 0.6 for r in filtered)
    assert all(r.reason in ("filtered", "duplicate") for r in captioned.removed)
    assert captioned.patch_grid == (4, 4) and len(captioned.patch_indices) == len(captioned.captions)
    assert all(len(p) == 4 and all(0 <= i < 16 for i in p) for p in captioned.patch_indices)


def test_errors_show_in_the_page_and_the_app_keeps_serving(demo: Demo) -> None:
    assert demo.ask_image(None, QUESTION, "tiny", *knobs(demo)).summary.startswith("**Error:** no image")
    assert "the question is empty" in demo.ask_image(example("red_ball.png"), " ", "tiny", *knobs(demo)).summary
    broken = demo.ask_image(example("red_ball.png"), QUESTION, "tiny", *knobs(demo, answerer="no/such-model"))
    assert broken.summary.startswith("**Error:** could not load the answerer model") and broken.heatmap is None
    too_many = demo.ask_image(example("red_ball.png"), QUESTION, "tiny", *knobs(demo, num_patches=99))
    assert "exceeds the 16 patches" in too_many.summary
    assert demo.ask_image(example("red_ball.png"), QUESTION, "tiny", *knobs(demo)).summary.startswith("### Answer")


def test_captions_handler(demo: Demo) -> None:
    out = demo.ask_captions("a red ball\n\n  a green field  \n", "What color is the ball?", "tiny", *knobs(demo))
    assert out.summary.startswith("### Answer: ") and "a green field" in out.summary
    assert "image_features" not in out.summary and "a red ball" in out.prompt
    assert "no captions were given" in demo.ask_captions("  \n", "what?", "tiny", *knobs(demo)).summary


def test_demo_without_gradio_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    out = CliRunner().invoke(main, ["demo", "--preset", "tiny"])
    assert out.exit_code == 1 and out.output.strip() == f"Error: {INSTALL_HINT}"


# The real page in a real browser.


def chromium() -> str | None:
    found = os.environ.get("ZSVQA_CHROMIUM") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def missing(reason: str) -> None:
    """Skip for a user without the browser tools; CI sets ZSVQA_REQUIRE_BROWSER, where a skip would hide them."""
    if os.environ.get("ZSVQA_REQUIRE_BROWSER"):
        pytest.fail(f"the browser tests must run here (ZSVQA_REQUIRE_BROWSER is set): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def page_url():
    for module, extra in (("gradio", "pip install -e '.[demo]'"), ("playwright", "pip install -e '.[demo]'")):
        if importlib.util.find_spec(module) is None:
            missing(f"{module} is not installed ({extra})")
    if chromium() is None:
        missing("no Chromium found (apt-get install chromium, or set ZSVQA_CHROMIUM to its path)")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from zsvqa.demo import serve

    port = free_port()
    app = serve("tiny", port, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture
def page(page_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(page_url)
            yield page
        finally:
            browser.close()


def test_browser_image_question(page, tmp_path) -> None:
    page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLE_IMAGES[0]))
    page.locator("#image-question textarea").fill("How many cars are there?")
    page.locator("#image-ask").click()
    answer = page.locator("#image-answer")
    answer.get_by_text("Answer:").wait_for(timeout=120_000)
    page.locator("#caption-list li").first.wait_for()
    page.screenshot(path=tmp_path / "image_tab.png", full_page=True)
    assert "log-probability" in answer.inner_text()
    assert page.locator("#heatmap img").count() == 1 and page.locator("#patches img").count() == 1
    assert page.locator("#caption-list li").count() == preset("tiny").captioner.num_captions


@pytest.mark.slow
def test_browser_typed_captions_with_the_bundled_llm(page, tmp_path) -> None:
    page.get_by_role("tab", name="Captions only").click()
    page.locator("#typed-preset input").fill("offline")  # the bundled LLM
    page.locator("#typed-preset input").press("Enter")
    page.wait_for_timeout(1000)  # the preset's knobs are filled in
    page.locator("#typed-captions textarea").fill("a man riding a red bicycle down a city street\na red bicycle")
    page.locator("#typed-question textarea").fill("What color is the bicycle?")
    page.locator("#typed-ask").click()
    answer = page.locator("#typed-answer")
    answer.get_by_text("Answer:").wait_for(timeout=300_000)
    page.screenshot(path=tmp_path / "captions_tab.png", full_page=True)
    assert "Answer: red" in answer.inner_text()
