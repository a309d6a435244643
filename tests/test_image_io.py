"""Input-image policy: modes, orientation, bombs, and atomic output."""
import numpy as np
import pytest
from PIL import Image

from pranc_codec.errors import InputError, LimitError
from pranc_codec.image_io import atomic_write, read_image

from .conftest import smooth_image


def _save(tmp_path, img: Image.Image, name: str, **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


def test_rgb_png_is_read_exactly(tmp_path):
    arr = smooth_image(20, 30, 3)
    got, notes = read_image(_save(tmp_path, Image.fromarray(arr), "a.png"))
    assert np.array_equal(got, arr) and notes == []


def test_sixteen_bit_grayscale_is_scaled(tmp_path):
    arr16 = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    got, notes = read_image(_save(tmp_path, Image.fromarray(arr16), "g16.png"))
    assert got.shape == (20, 30, 1)
    assert np.array_equal(got[:, :, 0], np.rint(arr16 * (255 / 65535)).astype(np.uint8))
    assert any("16-bit" in n for n in notes)


def test_palette_and_cmyk_become_rgb(tmp_path):
    rgb = Image.fromarray(smooth_image(16, 16, 3))
    pal, _ = read_image(_save(tmp_path, rgb.convert("P"), "p.png"))
    assert pal.shape == (16, 16, 3)
    cmyk, _ = read_image(_save(tmp_path, rgb.convert("CMYK"), "c.jpg"))
    assert cmyk.shape == (16, 16, 3)


def test_opaque_alpha_is_silent(tmp_path):
    rgba = np.concatenate([smooth_image(8, 8, 3), np.full((8, 8, 1), 255, np.uint8)], -1)
    got, notes = read_image(_save(tmp_path, Image.fromarray(rgba), "o.png"))
    assert got.shape == (8, 8, 3) and notes == []


def test_exif_orientation_is_applied(tmp_path):
    arr = smooth_image(10, 20, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    p = _save(tmp_path, Image.fromarray(arr), "r.jpg", exif=exif, quality=95)
    got, _ = read_image(p)
    assert got.shape == (20, 10, 3)


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    p = _save(tmp_path, Image.new("L", (300, 300)), "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(LimitError, match="too large"):
        read_image(p)


def test_directory_and_missing(tmp_path):
    with pytest.raises(InputError, match="directory"):
        read_image(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "x.png")


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    import os

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.prc", b"data")
    assert os.listdir(tmp_path) == []
