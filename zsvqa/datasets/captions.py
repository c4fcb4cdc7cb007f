"""Files that go with a split: precomputed captions (checked to cover every question's image before work), and
a data file's fingerprint for the run's record of what it read."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

from zsvqa.datasets.base import VQAQuestion, id_order, image_key, read_json
from zsvqa.errors import InputError


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """A file by what it holds (size and SHA-256), so the same data given by another path is the same data."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def read_captions_file(path: str | Path) -> dict[int | str, list[str]]:
    """Precomputed captions: a plain {image_id: [captions]} JSON, or the COCO captions annotation format."""
    data = read_json(path, "captions")
    captions: dict[int | str, list[str]] = defaultdict(list)
    try:
        if isinstance(data, dict) and "annotations" in data:
            for record in data["annotations"]:
                captions[image_key(record["image_id"])].append(str(record["caption"]).strip())
        elif isinstance(data, dict):
            for image_id, values in data.items():
                values = [values] if isinstance(values, str) else values
                captions[image_key(image_id)] += [str(v).strip() for v in values]
        else:
            raise TypeError("expected a JSON object")
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"captions file {str(path)!r} must be {{image_id: [captions]}} or COCO captions annotations: {error}"
        ) from error
    return dict(captions)


def check_captions_cover(
    questions: list[VQAQuestion], captions: dict[int | str, list[str]], source: str = "the precomputed captions"
) -> None:
    """Every image of the questions needs a non-empty caption, checked before work as image files are."""
    missing = sorted({q.image_id for q in questions if not any(c.strip() for c in captions.get(q.image_id, []))}, key=id_order)
    if missing:
        raise InputError(f"{len(missing)} images have no captions in {source}, e.g. image ids {missing[:5]}")
