"""A small synthetic dataset in the official VQAv2 formats: generated images, ten answers per question."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

QUESTIONS = [
    # (image index, question, ten answers, answer type, question type)
    (0, "What color is the bus?", ["red"] * 8 + ["orange"] * 2, "other", "what color is the"),
    (0, "Is there a dog?", ["no"] * 10, "yes/no", "is there a"),
    (0, "How many people are there?", ["2"] * 6 + ["3"] * 4, "number", "how many"),
    (1, "What is the man riding?", ["bike"] * 7 + ["bicycle"] * 3, "other", "what is the man"),
    (1, "Is it sunny?", ["yes"] * 9 + ["no"], "yes/no", "is it"),
    (2, "What animal is this?", ["cat"] * 10, "other", "what animal is"),
]
IMAGE_IDS = [42, 1337, 9001]
CAPTIONS = {
    42: ["a red bus on a city street", "two people waiting at a bus stop"],
    1337: ["a man riding a bike on a sunny day", "a cyclist on a road"],
    9001: ["a cat sleeping on a sofa", "a small gray cat"],
}


def write_dataset(root: Path, split: str = "val2014") -> dict[str, Path]:
    images = root / split
    images.mkdir(parents=True, exist_ok=True)
    for index, image_id in enumerate(IMAGE_IDS):
        pixels = np.random.RandomState(index).randint(0, 256, (60 + 10 * index, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"COCO_{split}_{image_id:012d}.jpg")
    questions, annotations = [], []
    for number, (image, question, answers, answer_type, question_type) in enumerate(QUESTIONS):
        question_id = IMAGE_IDS[image] * 1000 + number
        questions.append({"image_id": IMAGE_IDS[image], "question": question, "question_id": question_id})
        annotations.append({
            "question_id": question_id,
            "image_id": IMAGE_IDS[image],
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
            "answer_type": answer_type,
            "question_type": question_type,
            "multiple_choice_answer": max(set(answers), key=answers.count),
        })
    paths = {"images": images, "questions": root / "questions.json", "annotations": root / "annotations.json",
             "captions": root / "captions.json"}
    paths["questions"].write_text(json.dumps({"questions": questions}))
    paths["annotations"].write_text(json.dumps({"annotations": annotations}))
    paths["captions"].write_text(json.dumps({str(k): v for k, v in CAPTIONS.items()}))
    return paths
