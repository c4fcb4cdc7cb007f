"""Reading images: any format PIL reads, converted to RGB (turned upright by EXIF orientation where asked), with
clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from zsvqa.config import PipelineConfig
from zsvqa.errors import InputError

# JPEGs far larger than any model input are decoded at a reduced scale (PIL's draft mode) instead of in full;
# the processor then resizes them to the model's size.
DRAFT_SIZE = (1536, 1536)
# Grey-level modes wider than 8 bits (16-bit PNGs open as I;16 or I; floats as F): PIL's convert("RGB") clips
# them at 255, so a 16-bit image would come out almost white.
HIGH_BIT_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def load_image(
    source: str | Path | Image.Image, exif_orientation: bool = PipelineConfig.exif_orientation
) -> Image.Image:
    """An RGB image from a path or a PIL image; with `exif_orientation`, turned upright by its EXIF tag."""
    upright = ImageOps.exif_transpose if exif_orientation else lambda image: image
    if isinstance(source, Image.Image):
        return _to_rgb(upright(source), "the given image")
    path = check_image_path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format == "JPEG":
                    image.draft("RGB", DRAFT_SIZE)
                image.load()
                return _to_rgb(upright(image), str(path))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(f"image {str(path)!r} cannot be read: {error}") from error
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt data
        raise InputError(f"image {str(path)!r} is corrupt or truncated: {error}") from error


def check_image_path(source: str | Path) -> Path:
    path = Path(source)
    if not path.is_file():
        raise InputError(f"image {str(path)!r} does not exist or is not a file")
    return path


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    if image.width == 0 or image.height == 0:
        raise InputError(f"image {name!r} has zero size")
    if image.mode in HIGH_BIT_DEPTH:
        image = _to_8_bits(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent areas become white, as on a page, rather than the black PIL would give.
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def _to_8_bits(image: Image.Image) -> Image.Image:
    """A high-bit-depth grey image scaled to 8 bits: 16-bit modes by 1/257 (65535 -> 255); 32-bit integer and float
    images by their own range (a 16-bit PNG may open as I, its values up to 65535)."""
    import numpy as np

    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        top = 65535.0
    else:
        low, high = float(values.min()), float(values.max())
        top = 1.0 if image.mode == "F" and low >= 0 and high <= 1 else 255.0 if high <= 255 else 65535.0
        if high > 65535 or low < 0:
            values, top = values - low, max(high - low, 1e-12)
    return Image.fromarray(np.clip(np.rint(values * 255.0 / top), 0, 255).astype(np.uint8), mode="L")
