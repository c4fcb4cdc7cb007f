"""The relevance map drawn over the image, because people would rather look than read."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image


def supported_formats() -> set[str]:
    """The file suffixes matplotlib can write (png, jpg, pdf, svg ...): checked before the pipeline runs."""
    from matplotlib.backend_bases import FigureCanvasBase

    return set(FigureCanvasBase.get_supported_filetypes())


def save_heatmap(image: Image.Image, relevance: list[list[float]], path: str | Path, title: str = "") -> Path:
    """Write a PNG of `image` with the patch relevance (rows x columns) overlaid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _draw(image, relevance, title, path)
    return path


def heatmap_image(image: Image.Image, relevance: list[list[float]], title: str = "") -> Image.Image:
    """`save_heatmap`'s picture as an in-memory RGB image (for the web demo)."""
    buffer = io.BytesIO()
    _draw(image, relevance, title, buffer)
    buffer.seek(0)
    with Image.open(buffer) as drawn:
        return drawn.convert("RGB")


def _draw(image: Image.Image, relevance: list[list[float]], title: str, target: str | Path | BinaryIO) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.asarray(relevance, dtype=float)
    figure, axis = plt.subplots(figsize=(6, 6 * image.height / max(image.width, 1)))
    axis.imshow(image)
    # Each patch covers an equal share of the image; `extent` stretches the grid over it.
    overlay = axis.imshow(grid, cmap="jet", alpha=0.5, extent=(0, image.width, image.height, 0), interpolation="bilinear")
    figure.colorbar(overlay, ax=axis, fraction=0.046, pad=0.04, label="relevance")
    axis.set_title(title, fontsize=10)
    axis.axis("off")
    try:
        figure.savefig(target, dpi=100, bbox_inches="tight", format="png" if not isinstance(target, Path) else None)
    finally:
        plt.close(figure)


# Box colours for the captions whose patches are drawn, in order.
BOX_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4"]


def patch_boxes_image(
    image: Image.Image, patch_indices: list[list[int]], grid: tuple[int, int], width: int = 3
) -> Image.Image:
    """`image` with the patches each caption saw drawn as boxes, one colour per caption (BOX_COLOURS, in order).

    Patch indices count row-major over `grid` (rows, columns), which covers the whole image, as the captioner's
    processor resizes the image to its square input.
    """
    from PIL import ImageDraw

    picture = image.convert("RGB")
    draw = ImageDraw.Draw(picture)
    rows, columns = grid
    cell_w, cell_h = picture.width / columns, picture.height / rows
    for number, indices in enumerate(patch_indices):
        colour = BOX_COLOURS[number % len(BOX_COLOURS)]
        inset = number % 3  # boxes of several captions on one patch stay apart
        for index in indices:
            row, column = divmod(int(index), columns)
            left, top = column * cell_w + inset, row * cell_h + inset
            right, bottom = (column + 1) * cell_w - 1 - inset, (row + 1) * cell_h - 1 - inset
            draw.rectangle([left, top, right, bottom], outline=colour, width=width)
    return picture
