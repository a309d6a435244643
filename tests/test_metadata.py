"""A picture's ICC profile, EXIF and XMP (format version 12, metadata.py): read from the input, coded out of the
rate, written back into PNG and TIFF; formats that hold none get sRGB pixels and a warning."""
import hashlib
import io
import json
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from pranc_codec import CodecConfig, bitstream, decode, encode, lossless, read_metadata
from pranc_codec.cli import main
from pranc_codec.config import LosslessConfig
from pranc_codec.errors import FormatError, LimitError
from pranc_codec.image_io import read_image, read_picture
from pranc_codec.metadata import Metadata, drop_thumbnail, parse_kinds
from pranc_codec.quality_target import encode_to_psnr

from .conftest import smooth_image
from .test_alpha import cutout
from .test_image_io import rgb_icc_profile
from .test_lossless import screen

GOLDEN = Path(__file__).parent / "data" / "golden_v12.prc"
# Display P3's primaries adapted to D50 (the columns of its matrix), gamma 2.2
P3 = rgb_icc_profile("Display P3 test", ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419),
                                         (0.1571, 0.0666, 0.7841)), 2.2)
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>test</dc:title></rdf:Description>'
       b'</rdf:RDF></x:xmpmeta>')
MAKE, ORIENTATION, EXIF_IFD, GPS_IFD, TAKEN, IFD1 = 0x010F, 0x0112, 0x8769, 0x8825, 0x9003, -1


def quick(bpp: float = 1.0, steps: int = 200) -> CodecConfig:
    c = CodecConfig()
    return replace(c, rate=replace(c.rate, bpp=bpp), grid=replace(c.grid, steps=steps))


def _exif(orientation: int | None = 6) -> Image.Exif:
    ex = Image.Exif()
    if orientation:
        ex[ORIENTATION] = orientation  # rotate 90 degrees clockwise when displayed
    ex[MAKE] = "Canon"
    ex.get_ifd(EXIF_IFD)[TAKEN] = "2024:05:01 10:00:00"
    ex.get_ifd(GPS_IFD)[2] = (48.0, 51.0, 30.0)
    return ex


def photo(tmp_path: Path, name: str = "photo.jpg", h: int = 48, w: int = 64) -> tuple[Path, np.ndarray]:
    """A JPEG in Display P3 with EXIF (orientation 6, a make, a date, a place), XMP and a comment; and its pixels
    as stored (before the rotation)."""
    arr = smooth_image(h, w)
    arr[: h // 4] = (230, 120, 20)  # an orange beyond sRGB's gamut in P3: converting to sRGB moves it
    path = tmp_path / name
    Image.fromarray(arr).save(path, quality=98, icc_profile=P3, exif=_exif(), xmp=XMP, comment="a test")
    with Image.open(path) as im:
        stored = np.asarray(im.convert("RGB"))
    return path, stored


def _check_written(path: Path, image: np.ndarray) -> None:
    """``path`` holds ``image``, the P3 profile, the EXIF's make, date and place without its orientation, and the
    XMP."""
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im), image)
        assert im.info["icc_profile"] == P3 and im.info["xmp"] == XMP
        ex = im.getexif()
        assert ex[MAKE] == "Canon" and ORIENTATION not in ex
        assert ex.get_ifd(EXIF_IFD)[TAKEN] == "2024:05:01 10:00:00" and ex.get_ifd(GPS_IFD)[2] == (48.0, 51.0, 30.0)


def test_read_picture_keeps_the_profile_exif_and_xmp_where_asked(tmp_path):
    path, stored = photo(tmp_path)
    img, notes, meta = read_picture(path, keep=parse_kinds("all"))
    assert notes == [] and meta.kinds() == ["icc", "exif", "xmp", "text"] and meta.text == (("Comment", "a test"),)
    assert np.array_equal(img, np.rot90(stored, -1))  # the orientation applied, the P3 values kept
    assert meta.icc == P3 and meta.xmp == XMP
    ex = Image.Exif()
    ex.load(meta.exif)
    assert ex[MAKE] == "Canon" and ORIENTATION not in ex  # applied, so no viewer turns it again
    converted, notes = read_image(path)  # no profile kept: the colours converted to sRGB, as before
    assert "Display P3 test" in notes[0] and converted.shape == img.shape
    assert converted[:, -1, 0].mean() > img[:, -1, 0].mean() + 10  # P3's orange is redder in sRGB numbers
    img2, _, meta = read_picture(path, keep=parse_kinds("exif,xmp"))
    assert meta.icc is None and np.array_equal(img2, converted)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(stored).save(tmp_path / "srgb.png", icc_profile=srgb)
    assert not read_picture(tmp_path / "srgb.png", keep=parse_kinds("all"))[2]  # sRGB's profile says nothing
    assert parse_kinds("none") == frozenset() and parse_kinds(" ICC, xmp") == {"icc", "xmp"}
    for bad in ("gps", "", "icc,,jpeg"):
        with pytest.raises(ValueError, match="unknown metadata"):
            parse_kinds(bad)


def test_cli_keeps_the_metadata_through_encode_and_decode(tmp_path):
    path, stored = photo(tmp_path)
    prc = tmp_path / "photo.prc"
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(path), "-o", str(prc), "--bpp", "2", "--steps", "200", "--json"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    s = json.loads(lines[-1])
    assert s["metadata_bytes"] > 0 and s["width"] == 48 and s["height"] == 64  # turned as EXIF said
    assert any("the metadata (ICC, EXIF, XMP, text) takes" in line and "--metadata icc keeps the colours alone" in line
               for line in lines[:-1])  # of 3 kB
    data = prc.read_bytes()
    assert data[4] == bitstream.METADATA_VERSION
    header = bitstream.parse(data)[0]
    assert header.metadata.icc == P3 and header.metadata.xmp == XMP and header.picture.version == 8
    pixels = decode(data)
    for name, kinds in (("out.png", ["icc", "exif", "xmp", "text"]), ("out.webp", ["icc", "exif", "xmp"]),
                        ("out.tif", ["icc", "exif", "xmp"])):
        r = runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / name), "--json"])
        assert r.exit_code == 0 and json.loads(r.output.strip().splitlines()[-1])["metadata"] == kinds
        _check_written(tmp_path / name, pixels)
    with Image.open(tmp_path / "out.png") as im:
        assert im.text["Comment"] == "a test"
    assert "pranc: warning: TIFF cannot hold the picture's text entries: not written (write .png to keep them)" \
        in r.output
    r = runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / "out.ppm")])
    assert r.exit_code == 0, r.output
    assert "PPM holds no colour profile: converted from its ICC profile (Display P3 test) to sRGB" in r.output
    assert "PPM cannot hold the picture's EXIF, XMP or text entries: not written (write .png to keep it)" in r.output
    with Image.open(tmp_path / "out.ppm") as im:
        ppm = np.asarray(im)
    assert ppm[:, -1, 0].mean() > pixels[:, -1, 0].mean() + 10  # sRGB numbers, as a viewer without a profile shows
    info = runner.invoke(main, ["info", str(prc)]).output
    assert "metadata.icc_profile: Display P3 test" in info and "network: grid" in info and "version: 12" in info
    assert "metadata.text_entries: 1" in info

    r = runner.invoke(main, ["encode", str(path), "-o", str(tmp_path / "none.prc"), "--bpp", "2", "--steps", "200",
                             "--metadata", "none"])
    assert r.exit_code == 0 and "converted from its ICC profile" in r.output
    assert (tmp_path / "none.prc").read_bytes()[4] == bitstream.GRID_VERSION
    r = runner.invoke(main, ["encode", str(path), "-o", str(tmp_path / "x.prc"), "--metadata", "gps"])
    assert r.exit_code == 2 and r.output.startswith("pranc: error: --metadata: unknown metadata gps")


def test_the_metadata_comes_out_of_the_rate_and_under_the_ceiling():
    img = smooth_image(96, 128)
    rng = np.random.default_rng(1)
    meta = Metadata(xmp=bytes(rng.integers(65, 91, 1500, dtype=np.uint8)))  # 1.5 kB that deflate cannot shrink much
    plain = encode(img, quick(1.0))
    r = encode(img, quick(1.0), metadata=meta)
    assert r.stats.rate_ok and abs(r.stats.bpp - 1.0) <= 0.1 and r.stats.metadata_bytes > 900
    assert r.stats.bytes - r.stats.metadata_bytes < plain.stats.bytes - 800  # the pixels got the rest
    assert bitstream.parse(r.data)[0].metadata == meta and np.array_equal(decode(r.data), decode(r.data))
    c = quick(1.0)
    cap = r.stats.bytes - 400  # under the rate: the ceiling holds, the metadata with it
    r = encode(img, replace(c, rate=replace(c.rate, max_bytes=cap)), metadata=meta)
    assert cap * 0.9 <= r.stats.bytes <= cap and r.stats.metadata_bytes > 900
    with pytest.raises(LimitError, match="the metadata alone takes"):
        encode(img, replace(c, rate=replace(c.rate, max_bytes=r.stats.metadata_bytes + 10)), metadata=meta)
    # a PSNR target: the search on the pixels, the metadata wrapped round what it finds (a screen: exact)
    r = encode_to_psnr(screen(), 40.0, quick(), metadata=Metadata(icc=P3))
    assert r.data[4] == bitstream.METADATA_VERSION and r.stats.lossless and r.stats.target_psnr == 40.0
    assert np.array_equal(decode(r.data), screen())
    # an alpha picture keeps both
    r = encode(cutout(48, 64), quick(1.0), metadata=Metadata(icc=P3))
    h = bitstream.parse(r.data)[0]
    assert h.channels == 4 and h.picture.channels == 4 and decode(r.data).shape == (48, 64, 4)


def _picture(c: int = 3) -> bytes:
    return lossless.encode(np.ascontiguousarray(screen(c=c)[:24, :32]), LosslessConfig())


def _records(*items: tuple[int, bytes]) -> bytes:
    return b"".join(bytes([k]) + bitstream._varint(len(v)) + v for k, v in items)


def test_the_container_and_what_it_refuses(monkeypatch):
    meta = Metadata(icc=P3, exif=_exif(None).tobytes(), xmp=XMP)
    block = bitstream.metadata_block(meta)
    assert block[1] and len(block[0]) < len(P3) + len(XMP)  # deflated where smaller
    good = bitstream.pack_metadata(32, 24, 3, *block, _picture())
    assert bitstream.parse(good)[0].metadata == meta and decode(good).shape == (24, 32, 3)
    assert len(good) <= len(block[0]) + len(_picture()) + bitstream.metadata_overhead()
    raw = (_records((0, b"x"), (2, b"y"), (3, b"\x01k\x00\x02k2\x03v\xc3\xa9")), False)
    assert bitstream.parse(bitstream.pack_metadata(32, 24, 3, *raw, _picture()))[0].metadata == \
        Metadata(icc=b"x", xmp=b"y", text=(("k", ""), ("k2", "v\u00e9")))
    cases = [
        ((32, 24, 1, *block, _picture()), "picture of 32x24x3 in a 32x24x1 file"),
        ((16, 24, 3, *block, _picture()), "picture of 32x24x3 in a 16x24x3 file"),
        ((32, 24, 3, _records((2, b"y"), (0, b"x")), False, _picture()), "kind 0 out of place"),
        ((32, 24, 3, _records((1, b"y"), (1, b"x")), False, _picture()), "kind 1 out of place"),
        ((32, 24, 3, _records((4, b"y")), False, _picture()), "kind 4 out of place or unknown"),
        ((32, 24, 3, _records((3, b"\x01k\x05ab")), False, _picture()), "truncated text entry"),
        ((32, 24, 3, _records((3, b"\x00\x01v")), False, _picture()), "text entry without a keyword"),
        ((32, 24, 3, _records((3, b"\x01k\x02\xff\xfe")), False, _picture()), "text entry that is not UTF-8"),
        ((32, 24, 3, _records((0, b"")), False, _picture()), "truncated metadata record"),
        ((32, 24, 3, _records((0, b"abc"))[:-1], False, _picture()), "truncated metadata record"),
        ((32, 24, 3, b"", False, _picture()), "holds none"),
        ((32, 24, 3, zlib.compress(_records((0, b"x")))[:-2], True, _picture()), "truncated"),
        ((32, 24, 3, b"not zlib", True, _picture()), "corrupt metadata"),
        ((32, 24, 3, zlib.compress(_records((0, b"x"))) + b"!", True, _picture()), "followed by bytes"),
        ((32, 24, 3, *block, bitstream.pack_metadata(32, 24, 3, *block, _picture())), "not a file of version"),
    ]
    for args, msg in cases:
        with pytest.raises(FormatError, match=msg):
            bitstream.parse(bitstream.pack_metadata(*args))
    # a zlib bomb is refused once it passes the limit, without inflating the rest
    monkeypatch.setattr(bitstream, "MAX_METADATA_BYTES", 1000)
    bomb = zlib.compress(_records((2, bytes(5000))), 9)
    with pytest.raises(LimitError, match="inflates to more than 1000 bytes"):
        bitstream.parse(bitstream.pack_metadata(32, 24, 3, bomb, True, _picture()))
    with pytest.raises(LimitError, match="metadata of more than 1000 bytes"):
        bitstream.parse(bitstream.pack_metadata(32, 24, 3, _records((2, bytes(1200))), False, _picture()))
    body = good[:-4]
    for bad, msg in [(body + b"\0", "1 bytes after the picture"), (body[:-3], "runs past the end"),
                     (body[:5] + b"\x02" + body[6:], "unknown header flags 0x02")]:
        with pytest.raises(FormatError, match=msg):
            bitstream.parse(bad + zlib.crc32(bad).to_bytes(4, "little"))


GOLDEN_METADATA = Metadata(icc=P3, exif=_exif(None).tobytes(), xmp=XMP,
                           text=(("parameters", "golden, Steps: 1"), ("Author", "Zo\u00eb")))


def test_golden_file_decodes_to_its_pixels_and_metadata():
    """A file written by session 40's encoder (smooth_image(24, 32) at 8 bpp, 2000 steps, with the P3 profile,
    EXIF, XMP and text of this module: a grid picture file): every later decoder must read it to these pixels (SHA-256
    of the decoded uint8 array, row-major) and this metadata."""
    data = GOLDEN.read_bytes()
    header = bitstream.parse(data)[0]
    assert data[4] == bitstream.METADATA_VERSION and header.picture.version == bitstream.GRID_VERSION
    assert header.metadata == read_metadata(data) == GOLDEN_METADATA
    assert not read_metadata((GOLDEN.parent / "golden_v11.prc").read_bytes())  # none: an empty Metadata
    assert hashlib.sha256(decode(data).tobytes()).hexdigest() == \
        "72c46486a38b81e4d2e943dd780f1171ba31952bb9f3c4f057caf808ed25188e"


def test_a_grey_picture_keeps_its_profile_and_a_cmyk_one_is_converted(tmp_path):
    grey = smooth_image(24, 32, 1)[:, :, 0]
    Image.fromarray(grey).save(tmp_path / "g.png", icc_profile=P3)
    img, notes, meta = read_picture(tmp_path / "g.png", keep=parse_kinds("all"))
    assert img.shape == (24, 32, 1) and np.array_equal(img[:, :, 0], grey) and meta.icc == P3 and not notes
    out = io.BytesIO()
    Image.fromarray(smooth_image(24, 32)).convert("CMYK").save(out, "JPEG", icc_profile=_cmyk_profile())
    (tmp_path / "c.jpg").write_bytes(out.getvalue())
    img, notes, meta = read_picture(tmp_path / "c.jpg", keep=parse_kinds("all"))
    assert img.shape == (24, 32, 3) and meta.icc is None  # a CMYK profile describes no pixels pranc codes


def _cmyk_profile() -> bytes:
    """Any profile lcms reads, given to a CMYK picture (the conversion's result is not what is tested)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_a_corrupt_exif_is_left_out_of_a_tiff_with_a_warning(tmp_path):
    """A tampered file's EXIF that Pillow cannot read, or cannot write into a TIFF's directory (tag 0x0108 holding
    text: its writer raises struct.error), costs the EXIF alone: the picture and the rest are written."""
    unwritable = bytes.fromhex("4578696600004d4d002a00000008000101080002000000060000001a0000000043616e6f6e00")
    runner = CliRunner()
    for exif in (b"Exif\0\0not a TIFF header", unwritable):
        prc = tmp_path / "bad.prc"
        prc.write_bytes(bitstream.pack_metadata(32, 24, 3, *bitstream.metadata_block(Metadata(exif=exif, xmp=XMP)),
                                                _picture()))
        r = runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / "out.tif"), "-f", "--json"])
        assert r.exit_code == 0, r.output
        warning, summary = r.output.strip().splitlines()
        assert warning == "pranc: warning: the picture's EXIF is corrupt: left out of the TIFF"
        assert json.loads(summary)["metadata"] == ["xmp"]  # what the TIFF holds
        with Image.open(tmp_path / "out.tif") as im:
            assert np.array_equal(np.asarray(im), decode(prc.read_bytes())) and im.info["xmp"] == XMP
        assert runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / "out.png"), "-f"]).exit_code == 0


def test_a_png_keeps_its_text_chunks_in_order(tmp_path):
    """A generated picture's settings (tEXt "parameters"), an author in iTXt (UTF-8) and a compressed zTXt."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a lighthouse at dusk, Steps: 30, Sampler: Euler a, Seed: 1234")
    info.add_itxt("Author", "Zo\u00eb")
    info.add_text("Comment", "x" * 500, zip=True)
    Image.fromarray(smooth_image(48, 64)).save(tmp_path / "gen.png", pnginfo=info)
    img, _, meta = read_picture(tmp_path / "gen.png", keep=parse_kinds("all"))
    assert meta.text == (("parameters", "a lighthouse at dusk, Steps: 30, Sampler: Euler a, Seed: 1234"),
                         ("Author", "Zo\u00eb"), ("Comment", "x" * 500))
    assert not read_picture(tmp_path / "gen.png", keep=parse_kinds("icc,exif,xmp"))[2]
    r = encode(img, quick(2.0), metadata=meta)
    assert read_metadata(r.data) == meta
    assert r.stats.metadata_bytes < 200  # the 500 x's deflate
    out = tmp_path / "out.png"
    assert CliRunner().invoke(main, ["decode", "-", "-o", str(out)], input=r.data).exit_code == 0
    with Image.open(out) as im:
        assert list(im.text.items()) == list(meta.text)


def _thumbnail_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(smooth_image(120, 160)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _with_thumbnail(exif: bytes, thumb: bytes) -> bytes:
    """``exif`` (Pillow's, ``Exif\\0\\0`` and a big-endian TIFF) with an IFD1 and a JPEG thumbnail appended, linked
    from IFD0, as a camera writes them."""
    tiff = bytearray(exif[6:])
    assert tiff[:2] == b"MM"
    (ifd0,) = struct.unpack_from(">I", tiff, 4)
    (n,) = struct.unpack_from(">H", tiff, ifd0)
    link = ifd0 + 2 + 12 * n
    assert struct.unpack_from(">I", tiff, link) == (0,)
    ifd1 = len(tiff) + len(tiff) % 2
    tiff += b"\0" * (ifd1 - len(tiff))
    struct.pack_into(">I", tiff, link, ifd1)
    data = ifd1 + 2 + 3 * 12 + 4
    tiff += struct.pack(">H", 3) + struct.pack(">HHIHH", 0x0103, 3, 1, 6, 0)  # compression: JPEG
    tiff += struct.pack(">HHII", 0x0201, 4, 1, data) + struct.pack(">HHII", 0x0202, 4, 1, len(thumb))
    tiff += struct.pack(">I", 0) + thumb
    return exif[:6] + bytes(tiff)


def test_the_exif_thumbnail_is_left_out_and_nothing_else(tmp_path):
    thumb = _thumbnail_jpeg()
    plain = _exif(orientation=None).tobytes()
    exif = _with_thumbnail(plain, thumb)
    ex = Image.Exif()
    ex.load(exif)
    assert ex.get_ifd(IFD1)[0x0202] == len(thumb)  # the fixture is a thumbnail Pillow reads
    path = tmp_path / "camera.jpg"
    Image.fromarray(smooth_image(48, 64)).save(path, quality=95, exif=exif)
    _, _, meta = read_picture(path, keep=parse_kinds("all"))
    # IFD0 no longer links to IFD1, and IFD1 and the thumbnail are cut off: the rest byte for byte as written
    pad = len(meta.exif) - len(plain)  # IFD1 began on an even offset
    assert pad in (0, 1) and meta.exif == plain + bytes(pad) and len(exif) - len(meta.exif) > len(thumb)
    kept = Image.Exif()
    kept.load(meta.exif)
    assert kept[MAKE] == "Canon" and kept.get_ifd(EXIF_IFD)[TAKEN] == "2024:05:01 10:00:00"
    assert kept.get_ifd(GPS_IFD)[2] == (48.0, 51.0, 30.0) and not kept.get_ifd(IFD1)
    # without the prefix too, and as it was where there is nothing to take out
    assert drop_thumbnail(exif[6:]) == meta.exif[6:] and drop_thumbnail(plain) == plain
    # a thumbnail that something else follows (a value IFD0 points past it) is left where it is
    tiff = bytearray(exif[6:])
    (ifd0,) = struct.unpack_from(">I", tiff, 4)
    (n,) = struct.unpack_from(">H", tiff, ifd0)
    for i in range(n):
        tag, typ, count, _ = struct.unpack_from(">HHII", tiff, ifd0 + 2 + 12 * i)
        if tag == MAKE:  # "Canon\0" is 6 bytes, out of line: move it after the thumbnail
            struct.pack_into(">I", tiff, ifd0 + 2 + 12 * i + 8, len(tiff))
    moved = exif[:6] + bytes(tiff) + b"Canon\0"
    assert drop_thumbnail(moved) == moved
    # little-endian, as most cameras write it: IFD0 (a software name out of line), IFD1, the thumbnail
    name = b"camera firmware 1.0\0"
    ifd1 = 8 + 2 + 12 + 4 + len(name)
    le = (b"II*\0" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0131, 2, len(name), 26)
          + struct.pack("<I", ifd1) + name + struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, ifd1 + 30)
          + struct.pack("<HHII", 0x0202, 4, 1, len(thumb)) + struct.pack("<I", 0) + thumb)
    assert drop_thumbnail(le) == le[:22] + bytes(4) + le[26:ifd1]
    for bad in (b"", b"Exif\0\0", b"Exif\0\0II*\0\xff\xff\xff\xff", b"MM\0*\0\0\0\x08\0\x05", bytes(range(256)),
                exif[:len(plain) + 20]):  # not TIFF, truncated, a directory past the end, IFD1 cut short
        assert drop_thumbnail(bad) == bad
