"""The rough edges a new user hit (issue 19): each is one clear line or the right result."""

import json
import socket

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from synthetic_data import QUESTIONS, write_dataset, write_gqa
from zsvqa.cli import main
from zsvqa.datasets import check_images_folder, load_dataset
from zsvqa.demo import check_port_free
from zsvqa.errors import InputError, check_type
from zsvqa.evaluation import read_predictions
from zsvqa.images import load_image


def test_a_taken_port_is_one_line_naming_the_option() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(InputError, match=rf"port {port} on 127.0.0.1 is taken .*--port"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # free again once its holder is gone


@pytest.mark.parametrize("mode,top", [("I;16", 65535), ("I", 65535), ("F", 1.0)])
def test_high_bit_depth_images_are_scaled_to_8_bits(tmp_path, mode, top) -> None:
    ramp = np.linspace(0, top, 64 * 64).reshape(64, 64)
    image = Image.fromarray(ramp.astype(np.float32), mode="F") if mode == "F" else Image.fromarray(
        ramp.astype(np.uint16 if mode == "I;16" else np.int32)
    )
    assert image.mode == mode
    if mode == "I;16":  # also through a real 16-bit PNG file
        image.save(tmp_path / "grey16.png")
        image = tmp_path / "grey16.png"
    pixels = np.asarray(load_image(image)).astype(float)
    assert pixels.shape == (64, 64, 3)
    # Mid-grey on average and the full range: not clipped to white as convert("RGB") would.
    assert abs(pixels.mean() - 127.5) < 1.0 and pixels.min() == 0 and pixels.max() == 255


def test_images_option_says_what_the_path_is(tmp_path) -> None:
    a_file = tmp_path / "photo.jpg"
    a_file.write_bytes(b"x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_images_folder(a_file)
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    with pytest.raises(InputError, match="symbolic link loop"):
        check_images_folder(tmp_path / "loop_a")
    with pytest.raises(InputError, match="does not exist"):
        check_images_folder(tmp_path / "nothing")


def test_gqa_answer_without_types_is_refused(tmp_path) -> None:
    path = write_gqa(tmp_path)["questions"]
    data = json.loads(path.read_text())
    first = next(iter(data))
    del data[first]["types"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=rf"question '{first}' has an answer but no types.structural"):
        load_dataset("gqa", path, None, None)


def test_type_errors_name_the_type_not_the_content() -> None:
    with pytest.raises(TypeError) as caught:
        check_type("image", np.zeros((500, 500, 3)), str, "a file path or a PIL image")
    assert str(caught.value) == "image must be a file path or a PIL image; got numpy.ndarray"


def test_one_empty_question_fails_only_itself(tmp_path) -> None:
    paths = write_dataset(tmp_path)
    questions = json.loads(paths["questions"].read_text())
    questions["questions"][0]["question"] = "   "  # image 42 has two more questions
    paths["questions"].write_text(json.dumps(questions))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "eval", "--dataset", "vqav2", "--questions", str(paths["questions"]), "--annotations",
        str(paths["annotations"]), "--images", str(paths["images"]), "--out", str(out), "--preset", "tiny",
        "--no-cache", "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    records = read_predictions(out / "predictions.jsonl", keep_errors=True)
    errors = {qid: r["error"] for qid, r in records.items() if r.get("error")}
    assert errors == {questions["questions"][0]["question_id"]: "the question is empty"}
    assert len(records) == len(QUESTIONS)


def test_save_heatmap_says_where_it_wrote(tmp_path) -> None:
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (32, 40, 3), dtype=np.uint8)).save(image)
    target = tmp_path / "new" / "folder" / "heat.png"
    result = CliRunner().invoke(main, [
        "ask", "-q", "what is here?", "--image", str(image), "--preset", "tiny", "--save-heatmap", str(target),
    ])
    assert result.exit_code == 0, result.output
    assert target.is_file()
    assert f"heatmap written to {target.resolve()}" in result.output


def test_official_aokvqa_empty_choice_is_kept_but_never_chosen(tmp_path) -> None:
    """The official A-OKVQA val file has a question whose choices are 's', '', 'b', 'f'."""
    from synthetic_data import write_aokvqa
    from zsvqa.datasets.aokvqa import ChoiceMapper, read_aokvqa

    data = write_aokvqa(tmp_path)
    records = json.loads(data["questions"].read_text())
    records[0]["choices"] = ["s", "", "b", "f"]
    records[0]["correct_choice_idx"] = 3
    data["questions"].write_text(json.dumps(records))
    questions, _ = read_aokvqa(data["questions"])
    assert questions[0].choices == ["s", "", "b", "f"] and questions[0].multiple_choice_answer == "f"
    assert ChoiceMapper("unused")("", ["", "s", "b"]) == "s"  # an empty answer guesses the first usable choice
    records[0]["choices"] = ["s", "", " "]
    data["questions"].write_text(json.dumps(records))
    with pytest.raises(InputError, match="at least two of them non-empty"):
        read_aokvqa(data["questions"])
    from zsvqa.answering import Answerer
    from zsvqa.language_model import FrozenLM
    from zsvqa.config import AnswererConfig
    from zsvqa.prompting import Prompt

    answerer = Answerer(FrozenLM(AnswererConfig(model="tiny:causal-lm")), "score")
    assert set(answerer.score_choices(Prompt("Question: initial? Answer:", [], [], []), ["s", "", "b"])) == {"s", "b"}
