"""Input-image policy: modes, orientation, bombs, and atomic output."""
import io
import sys

import numpy as np
import pytest
from PIL import Image

from pranc_codec.errors import InputError, LimitError
from pranc_codec.image_io import atomic_write, read_image
from pranc_codec.metrics import psnr

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


@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_is_noted(tmp_path, channels):
    """Pillow reads a 16-bit RGB(A) PNG as 8-bit by truncation: the user is told, as for 16-bit grey (it was
    silent)."""
    import struct
    import zlib

    h, w = 4, 5
    arr = (np.arange(h * w * channels).reshape(h, w, channels) * 2999 % 65536).astype(">u2")
    raw = b"".join(b"\0" + arr[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour_type = 2 if channels == 3 else 6
    path = tmp_path / "c16.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    got, notes = read_image(path, keep_alpha=True)
    assert np.array_equal(got, (arr >> 8).astype(np.uint8)) and notes == ["16-bit image reduced to 8 bits"]
    assert read_image(_save(tmp_path, Image.fromarray(smooth_image(4, 5, 3)), "c8.png"))[1] == []


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


def test_an_animation_codes_its_first_frame_and_says_so(tmp_path):
    frames = [Image.new("RGB", (8, 6), (40 * i, 10, 200 - 40 * i)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "one.gif")
    arr, notes = read_image(tmp_path / "a.gif")
    one, one_notes = read_image(tmp_path / "one.gif")
    assert np.array_equal(arr, one)  # the first frame, as a still picture of it reads
    assert notes == ["3 frames: only the first is coded"] and one_notes == []


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


def test_atomic_write_takes_a_name_as_long_as_the_file_system_allows(tmp_path):
    """A 255-byte name is valid; its temporary file's name, the name and 14 more bytes, was not (ENAMETOOLONG:
    "cannot write (File name too long)")."""
    name = "x" * 251 + ".png"
    atomic_write(tmp_path / name, b"data")
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name).read_bytes() == b"data"
    atomic_write(tmp_path / name, b"more", force=True)
    assert (tmp_path / name).read_bytes() == b"more"


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


def rgb_icc_profile(name: str, columns: tuple, gamma: float) -> bytes:
    """A minimal ICC v2 display profile: a 3x3 matrix to the D50 PCS and one gamma curve per channel."""
    import struct

    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def xyz(v):
        return b"XYZ " + bytes(4) + b"".join(s15(c) for c in v)

    text = name.encode() + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    tags = [(b"desc", desc), (b"wtpt", xyz((0.9642, 1.0, 0.8249))), (b"rXYZ", xyz(columns[0])),
            (b"gXYZ", xyz(columns[1])), (b"bXYZ", xyz(columns[2])), (b"rTRC", curve), (b"gTRC", curve),
            (b"bTRC", curve)]
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for sig, data in tags:
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data + bytes(-len(data) % 4)
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"none" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + bytes(12) + b"acsp"
              + bytes(24) + struct.pack(">I", 0) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(48))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def test_a_wide_gamut_picture_is_converted_to_srgb_and_an_srgb_one_is_not(tmp_path):
    from PIL import ImageCms

    # Display P3's primaries adapted to D50 (the columns of its matrix), gamma 2.2
    p3 = rgb_icc_profile("Display P3 test", ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419),
                                             (0.1571, 0.0666, 0.7841)), 2.2)
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(__import__("io").BytesIO(p3))).strip() \
        == "Display P3 test"
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[:2] = (128, 128, 128)
    arr[2:] = (200, 100, 50)
    path = _save(tmp_path, Image.fromarray(arr), "p3.png", icc_profile=p3)
    out, notes = read_image(path)
    grey, orange = out[0, 0].astype(int), out[3, 3].astype(int)
    assert max(grey) - min(grey) <= 1 and abs(int(grey[0]) - 128) <= 4  # the neutral axis stays neutral
    assert orange[0] > 210 and orange[2] < 45  # P3's orange is beyond sRGB's: more saturated in sRGB numbers
    assert len(notes) == 1 and "Display P3 test" in notes[0] and "sRGB" in notes[0]

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out, notes = read_image(_save(tmp_path, Image.fromarray(arr), "srgb.png", icc_profile=srgb))
    np.testing.assert_array_equal(out, arr)
    assert notes == []
    out, notes = read_image(_save(tmp_path, Image.fromarray(arr), "junk.png", icc_profile=b"not a profile" * 20))
    np.testing.assert_array_equal(out, arr)
    assert len(notes) == 1 and "ICC profile ignored" in notes[0]


def test_a_named_pipe_is_read_whole_and_bounded_like_standard_input(tmp_path):
    import os
    import threading

    from pranc_codec import image_io
    from pranc_codec.errors import LimitError

    fifo = tmp_path / "pipe.prc"
    for payload, limit in ((b"z" * 2000, 2500), (b"z" * 3000, 2500)):
        os.mkfifo(fifo)
        writer = threading.Thread(target=lambda: fifo.write_bytes(payload))
        writer.start()
        try:
            if len(payload) <= limit:  # its size on disk is 0: the reader must not trust it
                assert image_io.read_bytes(fifo, limit=limit) == payload
            else:
                with pytest.raises(LimitError, match="more than 2500 bytes"):
                    image_io.read_bytes(fifo, limit=limit)
        finally:
            writer.join(timeout=10)
            os.unlink(fifo)


def test_a_heic_photo_is_read_with_its_metadata(tmp_path):
    """An iPhone's kind of file (HEIF with HEVC, EXIF, a P3 profile), through pillow-heif (the test extra)."""
    pillow_heif = pytest.importorskip("pillow_heif")
    from pranc_codec.image_io import read_picture
    from pranc_codec.metadata import parse_kinds

    from .test_metadata import P3

    arr = smooth_image(48, 64)
    heif = pillow_heif.from_bytes(mode="RGB", size=(64, 48), data=arr.tobytes())
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    path = tmp_path / "IMG_0001.HEIC"
    heif.save(path, quality=95, chroma=444, exif=exif.tobytes(), icc_profile=P3)
    img, notes, meta = read_picture(path, keep=parse_kinds("all"))
    assert img.shape == (48, 64, 3) and notes == []
    assert psnr(img, arr) > 35  # HEVC at quality 95
    assert meta.icc == P3
    ex = Image.Exif()
    ex.load(meta.exif)
    assert ex[0x010F] == "Apple"


def test_a_heic_photo_without_pillow_heif_gets_one_line_saying_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(100))
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if it were not installed
    with pytest.raises(InputError, match=r"a HEIF/HEIC picture, which needs pillow-heif to read .*\[heif\]"):
        read_image(path)
    avif = tmp_path / "a.avif"  # AVIF is ISO-BMFF too, and Pillow's own
    Image.fromarray(smooth_image(16, 16)).save(avif, quality=90)
    assert avif.read_bytes()[8:12] == b"avif" and read_image(avif)[0].shape == (16, 16, 3)


def test_a_picture_wider_than_webp_allows_is_refused_before_decoding():
    from pranc_codec.image_io import check_output_size, output_format

    assert output_format("a.webp") == "WEBP"
    check_output_size("a.webp", "WEBP", 16383, 16383)
    check_output_size("a.png", "PNG", 16384, 2)
    with pytest.raises(InputError, match="WebP holds at most 16383 pixels a side, not 16384x2"):
        check_output_size("a.webp", "WEBP", 16384, 2)


def test_a_corrupt_file_or_exif_that_pillow_trips_on_is_one_line_or_a_note(tmp_path):
    """Pillow's plugins raise TypeError, KeyError or struct.error on some corrupt files, which read_image let
    through (an internal error, exit 70). A TIFF whose second page has no width: a corrupt image. A JPEG whose
    EXIF Pillow cannot write back when it applies the orientation: the picture, unturned, with a note."""
    import struct

    frames = [Image.fromarray(smooth_image(16, 24, seed=i)) for i in range(2)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    data = bytearray(buf.getvalue())
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    ifd = struct.unpack_from("<I", data, ifd + 2 + 12 * struct.unpack_from("<H", data, ifd)[0])[0]  # page 2
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        if struct.unpack_from("<H", data, ifd + 2 + 12 * k)[0] == 256:  # ImageWidth
            struct.pack_into("<H", data, ifd + 2 + 12 * k, 0xFFF0)
    (tmp_path / "pages.tif").write_bytes(bytes(data))
    with pytest.raises(InputError, match="unreadable or corrupt image"):
        read_image(tmp_path / "pages.tif")

    # EXIF (big-endian TIFF): tag 0x0108 holding text, which Pillow's writer cannot pack, and orientation 6
    text_at = 8 + 2 + 12 * 2 + 4  # after the directory
    entries = [(0x0108, 2, 6, text_at), (0x0112, 3, 1, 6 << 16)]
    exif = b"Exif\0\0MM\0*" + struct.pack(">IH", 8, len(entries))
    exif += b"".join(struct.pack(">HHII", *e) for e in entries) + struct.pack(">I", 0) + b"Canon\0"
    arr = smooth_image(16, 24)
    Image.fromarray(arr).save(tmp_path / "e.jpg", quality=95, subsampling=0, exif=exif)
    img, notes = read_image(tmp_path / "e.jpg")
    assert img.shape == (16, 24, 3) and psnr(img, arr) > 30  # as stored: not turned
    assert len(notes) == 1 and "its EXIF is corrupt" in notes[0] and "orientation not applied" in notes[0]


def test_a_decoded_png_is_written_at_the_fast_zlib_level_and_reads_back_exactly():
    """PNG_LEVEL (4) rather than Pillow's 6: the zlib header's FLEVEL field says which (RFC 1950: 1 for levels
    2-5, 2 for 6), and the pixels and metadata come back as written."""
    import struct

    from pranc_codec.image_io import PNG_LEVEL, image_bytes, image_file
    from pranc_codec.metadata import Metadata

    def idat_header(data: bytes) -> int:
        pos = 8
        while pos < len(data):
            n, kind = struct.unpack(">I4s", data[pos:pos + 8])
            if kind == b"IDAT":
                return data[pos + 8 + 1] >> 6  # the FLG byte's top two bits
            pos += 12 + n
        raise AssertionError("no IDAT")

    img = smooth_image(48, 64, seed=3)
    data = image_bytes(img)
    assert PNG_LEVEL == 4 and idat_header(data) == 1
    plain = io.BytesIO()
    Image.fromarray(img).save(plain, format="PNG")
    assert idat_header(plain.getvalue()) == 2  # Pillow's default level, which the codec no longer writes
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), img)
    text = Metadata(text=(("Title", "a picture"),))
    with_meta, _, written = image_file(img, "PNG", text)
    assert written == ["text"] and idat_header(with_meta) == 1
    assert Image.open(io.BytesIO(with_meta)).text == {"Title": "a picture"}
