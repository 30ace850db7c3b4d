"""The embedded sample data: scikit-learn's digits (1,797 real 8x8 handwritten digits, 10 classes).

`python -m shared.sample_data digits --out DIR [--size 32]` writes them as a labelled ImageFolder of
RGB PNGs, dark ink on white, upscaled smoothly. The output is the same on every run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

DATASETS = ("digits",)


def digits_images(size: int = 32) -> tuple[list[np.ndarray], list[str]]:
    """The digits as size x size x 3 uint8 arrays and their labels ("0".."9")."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = []
    for pixels in digits.images:
        grey = (255 - np.rint(pixels * (255 / 16))).astype(np.uint8)
        upscaled = Image.fromarray(grey, "L").resize((size, size), Image.Resampling.BILINEAR)
        images.append(np.asarray(upscaled.convert("RGB")))
    return images, [str(t) for t in digits.target]


def write_digits(out: Path, size: int = 32) -> int:
    out = Path(out)
    images, labels = digits_images(size)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"digit-{index:04d}.png", optimize=False)
    return len(images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.sample_data", description=__doc__)
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the ImageFolder to")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    args = parser.parse_args(argv)
    if args.size < 8:
        parser.error("--size must be at least 8")
    count = write_digits(args.out, args.size)
    print(f"wrote {count} digit images ({args.size}x{args.size}) to {args.out}")


if __name__ == "__main__":
    main()
