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


def _images(folder: Path, names: list[str]) -> None:
    """Tiny generated images: the tiny models need pixels, not content."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        pixels = np.random.RandomState(index).randint(0, 256, (32, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)


# A-OKVQA: (question_id, image_id, question, choices, correct_choice_idx, ten direct answers, difficult)
AOKVQA = [
    ("22MexNkBPpdZGX6sxbxVBH", 42, "What is the bus used for?", ["racing", "transport", "cooking", "sleeping"], 1,
     ["transport"] * 6 + ["travel"] * 4, False),
    ("2GXQ3u6TD5Bmyd4P3Nz2Gr", 42, "Why are the people waiting?", ["for a bus", "to eat", "to swim", "to sleep"], 0,
     ["bus"] * 5 + ["ride bus"] * 5, False),
    ("7q4ZcwDYD3PKrzmC3Nb2Ty", 1337, "What might the man be training for?", ["race", "exam", "wedding", "dinner"], 0,
     ["race"] * 2 + ["exercise"] * 8, True),
]
# COCO 2017 captions (captions_val2017.json): the file A-OKVQA's precomputed captions come from.
COCO2017_CAPTIONS = {42: ["a red bus on a city street", "people waiting at a bus stop"],
                     1337: ["a man riding a bike on a sunny day"]}


def write_aokvqa(root: Path, answers: bool = True) -> dict[str, Path]:
    """aokvqa_v1p0_val.json (or, without answers, the test split's shape), val2017/ and captions_val2017.json."""
    records = []
    for question_id, image_id, question, choices, correct, direct, difficult in AOKVQA:
        record = {"split": "val" if answers else "test", "image_id": image_id, "question_id": question_id,
                  "question": question, "choices": choices, "difficult_direct_answer": difficult}
        if answers:
            record |= {"correct_choice_idx": correct, "direct_answers": direct, "rationales": ["r1", "r2", "r3"]}
        records.append(record)
    root.mkdir(parents=True, exist_ok=True)
    paths = {"questions": root / f"aokvqa_v1p0_{'val' if answers else 'test'}.json", "images": root / "val2017",
             "captions": root / "captions_val2017.json"}
    paths["questions"].write_text(json.dumps(records))
    _images(paths["images"], [f"{i:012d}.jpg" for i in sorted({r[1] for r in AOKVQA})])
    annotations = [{"image_id": i, "id": n, "caption": c}
                   for n, (i, c) in enumerate((i, c) for i, cs in COCO2017_CAPTIONS.items() for c in cs)]
    paths["captions"].write_text(json.dumps({"images": [{"id": i} for i in COCO2017_CAPTIONS],
                                             "annotations": annotations}))
    return paths


# GQA: (question_id, imageId, question, answer, structural type, semantic type)
GQA = [
    ("20968379", "n161313", "Is the sky blue?", "yes", "verify", "attr"),
    ("20968380", "n161313", "What is on the table?", "cup", "query", "rel"),
    ("201640614", "2354786", "Which color is the car, red or blue?", "red", "choose", "attr"),
]
GQA_CAPTIONS = {"n161313": ["a cup on a wooden table under a blue sky"], "2354786": ["a red car parked outside"]}


def write_gqa(root: Path) -> dict[str, Path]:
    """testdev_balanced_questions.json, images/ and a {imageId: [captions]} file."""
    questions = {
        question_id: {"imageId": image_id, "question": question, "answer": answer, "fullAnswer": f"It is {answer}.",
                      "isBalanced": True, "groups": {"global": None, "local": "x"}, "semantic": [], "entailed": [],
                      "equivalent": [question_id], "semanticStr": "",
                      "types": {"structural": structural, "semantic": semantic, "detailed": f"{semantic}X"}}
        for question_id, image_id, question, answer, structural, semantic in GQA
    }
    root.mkdir(parents=True, exist_ok=True)
    paths = {"questions": root / "testdev_balanced_questions.json", "images": root / "images",
             "captions": root / "gqa_captions.json"}
    paths["questions"].write_text(json.dumps(questions))
    _images(paths["images"], [f"{i}.jpg" for i in GQA_CAPTIONS])
    paths["captions"].write_text(json.dumps(GQA_CAPTIONS))
    return paths


def write_large_dataset(root: Path, num_images: int) -> dict[str, Path]:
    """The VQAv2 files with `num_images` images and two questions each: enough work to stop a run midway."""
    images = root / "val2014"
    images.mkdir(parents=True, exist_ok=True)
    questions, annotations = [], []
    for index in range(num_images):
        image_id = 100 + index
        pixels = np.random.RandomState(index).randint(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"COCO_val2014_{image_id:012d}.jpg")
        for number, (_, question, answers, answer_type, question_type) in enumerate(QUESTIONS[index % 3 :][:2]):
            question_id = image_id * 10 + number
            questions.append({"image_id": image_id, "question": question, "question_id": question_id})
            annotations.append({
                "question_id": question_id, "image_id": image_id, "answer_type": answer_type,
                "question_type": question_type, "multiple_choice_answer": answers[0],
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
            })
    paths = {"images": images, "questions": root / "questions.json", "annotations": root / "annotations.json"}
    paths["questions"].write_text(json.dumps({"questions": questions}))
    paths["annotations"].write_text(json.dumps({"annotations": annotations}))
    return paths
