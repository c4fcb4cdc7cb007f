"""The relevance map drawn over the image, because people would rather look than read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def supported_formats() -> set[str]:
    """The file suffixes matplotlib can write (png, jpg, pdf, svg ...): checked before the pipeline runs."""
    from matplotlib.backend_bases import FigureCanvasBase

    return set(FigureCanvasBase.get_supported_filetypes())


def save_heatmap(image: Image.Image, relevance: list[list[float]], path: str | Path, title: str = "") -> Path:
    """Write a PNG of `image` with the patch relevance (rows x columns) overlaid."""
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
