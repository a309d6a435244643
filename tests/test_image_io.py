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
    monkeypatch.setattr(os, "link", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.prc", b"data")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.prc", b"data", force=True)
    assert os.listdir(tmp_path) == []


def test_atomic_write_gives_a_new_file_the_umasks_permissions_and_keeps_a_replaced_files(tmp_path):
    import os
    import stat

    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.prc", b"one")
        assert stat.S_IMODE(os.stat(tmp_path / "a.prc").st_mode) == 0o640  # not mkstemp's owner-only 0o600
        os.umask(0o022)
        atomic_write(tmp_path / "b.png", b"two")
        assert stat.S_IMODE(os.stat(tmp_path / "b.png").st_mode) == 0o644
        os.chmod(tmp_path / "b.png", 0o604)
        atomic_write(tmp_path / "b.png", b"three", force=True)
        assert stat.S_IMODE(os.stat(tmp_path / "b.png").st_mode) == 0o604
        assert (tmp_path / "b.png").read_bytes() == b"three"
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path)) == ["a.prc", "b.png"]


def test_atomic_write_does_not_clobber_a_file_that_appears_while_it_writes(tmp_path, monkeypatch):
    import os

    target = tmp_path / "out.prc"
    real_fsync = os.fsync

    def racing_fsync(fd):  # another process creates the output between the check and the rename
        real_fsync(fd)
        target.write_bytes(b"theirs")

    monkeypatch.setattr(os, "fsync", racing_fsync)
    with pytest.raises(InputError, match="already exists"):
        atomic_write(target, b"ours")
    assert target.read_bytes() == b"theirs"
    assert os.listdir(tmp_path) == ["out.prc"]


def test_standard_input_is_read_in_chunks_and_refused_past_its_limit(monkeypatch):
    import io
    import sys

    from pranc_codec import image_io
    from pranc_codec.errors import LimitError

    class Pipe(io.BytesIO):
        def __init__(self, data):
            super().__init__(data)
            self.requested = 0

        def read(self, n=-1):
            assert n > 0  # never "read everything"
            self.requested += n
            return super().read(n)

        def isatty(self):
            return False

    png = io.BytesIO()
    Image.fromarray(np.full((3, 5, 3), 7, np.uint8)).save(png, format="PNG")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(Pipe(png.getvalue())))
    arr, _ = read_image("-")
    assert arr.shape == (3, 5, 3) and int(arr.max()) == 7

    pipe = Pipe(b"x" * 5000)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(pipe))
    monkeypatch.setattr(image_io, "_CHUNK", 1000)
    with pytest.raises(LimitError, match="more than 2500 bytes"):
        image_io.read_bytes("-", limit=2500)
    assert pipe.requested == 2501  # stopped at the first byte past the limit
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(Pipe(b"y" * 2500)))
    assert image_io.read_bytes("-", limit=2500) == b"y" * 2500
