"""The shared image reader on every mode and every kind of bad file a user may hand us."""

import io

import numpy as np
import pytest
from PIL import Image

from shared.data import ImageDecodeError, fit_square, load_rgb, load_square_array


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = save(Image.new("CMYK", (10, 10), (0, 255, 255, 0)), tmp_path / "red.jpg")
    image = load_rgb(path)
    assert image.mode == "RGB"
    r, g, b = image.getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    data = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    path = save(Image.fromarray(data, "I;16"), tmp_path / "deep.png")
    arr = np.asarray(load_rgb(path))
    assert arr.shape == (8, 8, 3)
    assert arr[0, 0, 0] == 0 and arr[-1, -1, 0] == 255
    assert 100 < arr[4, 0, 0] < 160  # mid-grey stays mid-grey


def test_palette_with_transparency_composites_on_white(tmp_path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    path = save(image, tmp_path / "pal.png", transparency=0)
    arr = np.asarray(load_rgb(path))
    assert tuple(arr[0, 0]) == (255, 0, 0)
    assert tuple(arr[3, 3]) == (255, 255, 255)


@pytest.mark.parametrize("mode,value", [("RGBA", (0, 0, 255, 0)), ("LA", (0, 0))])
def test_fully_transparent_pixels_become_white(tmp_path, mode, value):
    path = save(Image.new(mode, (3, 3), value), tmp_path / f"alpha-{mode}.png")
    assert np.all(np.asarray(load_rgb(path)) == 255)


def test_half_transparent_black_on_white_is_mid_grey(tmp_path):
    path = save(Image.new("RGBA", (2, 2), (0, 0, 0, 128)), tmp_path / "half.png")
    assert 120 <= np.asarray(load_rgb(path))[0, 0, 0] <= 135


def test_one_bit_and_greyscale_images(tmp_path):
    one = save(Image.new("1", (5, 5), 1), tmp_path / "one.bmp")
    grey = save(Image.new("L", (5, 5), 77), tmp_path / "grey.tiff")
    assert np.all(np.asarray(load_rgb(one)) == 255)
    assert np.all(np.asarray(load_rgb(grey)) == 77)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = save(image, tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_rgb(path).size == (20, 40)


def test_gif_gives_its_first_frame_and_webp_decodes(tmp_path):
    frames = [Image.new("P", (6, 6), i) for i in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50] + [0] * 759)
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert tuple(np.asarray(load_rgb(gif))[0, 0]) == (10, 20, 30)
    webp = save(Image.new("RGB", (8, 8), (9, 99, 199)), tmp_path / "x.webp", lossless=True)
    assert tuple(np.asarray(load_rgb(webp))[0, 0]) == (9, 99, 199)


def test_zero_byte_file_is_reported(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty file"):
        load_rgb(path)


def test_random_bytes_are_not_an_image(tmp_path):
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        load_rgb(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_reported(tmp_path, fmt):
    buffer = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, fmt)
    data = buffer.getvalue()
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        load_rgb(data[: len(data) // 2])


def test_wrong_extension_is_decoded_by_content(tmp_path):
    path = save(Image.new("RGB", (4, 4), (1, 2, 3)), tmp_path / "really-a-png.jpg", format="PNG")
    assert tuple(np.asarray(load_rgb(path))[0, 0]) == (1, 2, 3)


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    path = save(Image.new("1", (9000, 9000), 0), tmp_path / "bomb.png")
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageDecodeError, match="more than the"):
        load_rgb(path)
    with pytest.raises(ImageDecodeError, match="more than the 100"):
        load_rgb(save(Image.new("RGB", (20, 20)), tmp_path / "small.png"), max_pixels=100)


def test_crop_policy_fills_the_square_from_the_centre():
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 80, 100))  # blue at the left edge: cropped away
    out = np.asarray(fit_square(image, 50, "crop"))
    assert out.shape == (50, 50, 3) and np.all(out[:, :, 0] > 250)


def test_pad_policy_keeps_everything_and_pads_with_black():
    out = np.asarray(fit_square(Image.new("RGB", (300, 100), (255, 255, 255)), 60, "pad"))
    assert out.shape == (60, 60, 3)
    assert np.all(out[0] == 0) and np.all(out[30] == 255)


def test_unknown_policy_names_the_valid_ones():
    with pytest.raises(ValueError, match="crop, pad"):
        fit_square(Image.new("RGB", (2, 2)), 2, "stretch")


def test_large_jpeg_is_drafted_down_but_never_below_the_target(tmp_path):
    path = save(Image.new("RGB", (2000, 1500), (10, 200, 10)), tmp_path / "big.jpg")
    arr = load_square_array(path, 100)
    assert arr.shape == (100, 100, 3) and arr.dtype == np.uint8
    assert load_rgb(path, draft_size=100).size[1] >= 100
