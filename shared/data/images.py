"""Decoding any image a user may hand us into RGB uint8, and fitting it to a square size.

Every PIL mode is converted deliberately (alpha composited on white, 16-bit scaled, CMYK and
palettes converted), EXIF orientation is applied, and a pixel-count bound refuses decompression
bombs from the header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shared.choices import RESIZE_POLICIES
from shared.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# The only decoders untrusted bytes reach, whatever a file is named. Pillow knows some 40 formats,
# each one more decoder to attack (its EPS reader even runs Ghostscript when one is installed).
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")  # JPEG includes multi-picture (MPO) files
MAX_PIXELS = 64_000_000  # ~8000x8000; above this an image is refused, not decoded
# Longer side over shorter side. Beyond this an image is a strip, not a picture: cropping keeps a
# sliver of it and padding a line, neither fit to classify, so it is refused from its header.
MAX_ASPECT_RATIO = 32
PAD_VALUE = 0


class ImageDecodeError(UserError):
    """An image that cannot be used; the message says why in plain words."""


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def check_size(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse, before any pixel is decoded, an image with no pixels, too many or a strip's shape."""
    if width <= 0 or height <= 0:
        raise ImageDecodeError("image has no pixels")
    if width * height > max_pixels:
        raise ImageDecodeError(f"{width}x{height} pixels is more than the {max_pixels:,} allowed")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageDecodeError(f"{width}x{height} is a strip, not a picture: the longer side may be"
                               f" at most {MAX_ASPECT_RATIO} times the shorter")


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}:
        # 16-bit and 32-bit greyscale: scale the full range to 8 bits instead of clipping.
        data = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or data.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(data / scale * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")
    if mode in {"RGBA", "LA", "PA", "La", "RGBa"} or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV


@contextmanager
def _reading() -> Iterator[None]:
    """Turn whatever Pillow raises on bad bytes into an ImageDecodeError that says why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not a recognised image format (JPEG, PNG, BMP, GIF, WebP or TIFF)"
                               ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None


def _stream(source: str | Path | bytes) -> io.BytesIO | Path:
    if isinstance(source, bytes):
        if not source:
            raise ImageDecodeError("empty file (0 bytes)")
        return io.BytesIO(source)
    if Path(source).stat().st_size == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    return Path(source)


def image_size(source: str | Path | bytes) -> tuple[int, int]:
    """Width and height as the header states them; no pixel is decoded (to budget the work)."""
    stream = _stream(source)
    with _reading(), Image.open(stream, formats=FORMATS) as image:
        return image.size


def load_rgb(
    source: str | Path | bytes, *, max_pixels: int = MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Open an image file (or bytes) as an upright RGB PIL image.

    `draft_size` lets the JPEG decoder scale down by 2/4/8 while decoding when the result only needs
    to be that large: a big speed-up for large photos, never smaller than asked.
    Raises ImageDecodeError with the reason for an empty, corrupt, truncated or oversized image.
    """
    stream = _stream(source)
    with _reading(), Image.open(stream, formats=FORMATS) as image:
        width, height = image.size
        check_size(width, height, max_pixels)
        image.seek(0)  # animated GIF/WebP/TIFF: first frame
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        upright = _to_rgb(ImageOps.exif_transpose(image)).copy()
        upright.info["stored_size"] = (width, height)  # before draft scaling, for reports
        upright.info["format"] = image.format  # what the bytes are, whatever a file is named
        return upright


def fit_square(image: Image.Image, size: int, policy: str = "crop") -> Image.Image:
    """Resize to size x size keeping the aspect ratio.

    `crop`: the centred square of side min(width, height) scaled to `size` (nothing is distorted,
    the edges of long images are lost). `pad`: the whole image scaled so its longer side is `size`,
    padded with black (nothing is lost, small images get borders). The crop box is taken in source
    coordinates, so no intermediate image is ever larger than size x size: the work per image is
    bounded by the source and the output, whatever the shape.
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize policy {policy!r} is unknown; valid: {', '.join(RESIZE_POLICIES)}")
    width, height = image.size
    if policy == "crop":
        # The box that scaling the short side to `size` and cutting the centre on whole output
        # pixels would keep (as this did until 2026-11), so models trained before sample the same.
        scale = size / min(width, height)
        scaled = (max(size, round(width * scale)), max(size, round(height * scale)))
        sx, sy = width / scaled[0], height / scaled[1]
        left, top = (scaled[0] - size) // 2, (scaled[1] - size) // 2
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return image.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
    scale = size / max(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size), (PAD_VALUE,) * 3)
    canvas.paste(resized, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


def load_square_array(
    source: str | Path | bytes, size: int, policy: str = "crop", *, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode and fit an image in one step: a size x size x 3 uint8 array."""
    image = load_rgb(source, max_pixels=max_pixels, draft_size=size)
    return np.asarray(fit_square(image, size, policy), dtype=np.uint8)
