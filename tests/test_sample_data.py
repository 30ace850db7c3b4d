import hashlib

import numpy as np
from PIL import Image

from tests.conftest import run_entrypoint


def folder_digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_digits_cli_writes_an_rgb_imagefolder_deterministically(tmp_path):
    for name in ("a", "b"):
        result = run_entrypoint("shared.sample_data", "digits", "--out", str(tmp_path / name),
                                "--size", "16", base=tmp_path)
        assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "a").rglob("*.png"))
    assert len(files) == 1797
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [str(d) for d in range(10)]
    image = Image.open(files[0])
    assert image.mode == "RGB" and image.size == (16, 16)
    assert folder_digest(tmp_path / "a") == folder_digest(tmp_path / "b")


def test_digits_are_dark_ink_on_white(digits_folder):
    arr = np.asarray(Image.open(next((digits_folder / "0").glob("*.png"))))
    assert arr.shape == (32, 32, 3)
    assert arr[0, 0].min() > 240 and arr.min() < 80
