"""Composite files (format version 10, composite.py): a screen exact, its photographs fitted, pasted on decode."""
import hashlib
import json
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pranc_codec import CodecConfig, bitstream, composite, decode, encode, lossless
from pranc_codec.cli import main
from pranc_codec.composite import Box, find_regions
from pranc_codec.config import CompositeConfig, LosslessConfig
from pranc_codec.errors import FormatError
from pranc_codec.metrics import psnr

from .conftest import smooth_image
from .test_lossless import screen

PHOTO = Box(x=100, y=40, w=80, h=64)  # where page() pastes its photograph
GOLDEN = Path(__file__).parent / "data" / "golden_v10.prc"


def photo(h: int, w: int, seed: int = 1) -> np.ndarray:
    """A photograph's stand-in: smooth colours with a little grain, so that nearly every pixel has its own."""
    grain = np.random.RandomState(seed).normal(0, 4, (h, w, 3))
    return np.clip(np.rint(smooth_image(h, w, 3, seed).astype(np.float64) + grain), 0, 255).astype(np.uint8)


def page(h: int = 128, w: int = 192) -> np.ndarray:
    """A screen (flat colours, glyphs) with a photograph in it at PHOTO."""
    img = np.tile(screen(96, 128), (2, 2, 1))[:h, :w].copy()
    img[PHOTO.y: PHOTO.y + PHOTO.h, PHOTO.x: PHOTO.x + PHOTO.w] = photo(PHOTO.h, PHOTO.w)
    return img


def quick(bpp: float = 1.0, **composite_fields) -> CodecConfig:
    c = CodecConfig()
    return replace(c, rate=replace(c.rate, bpp=bpp), grid=replace(c.grid, steps=300),
                   composite=replace(c.composite, **composite_fields))


def test_a_photograph_in_a_screen_is_found_to_the_pixel():
    assert find_regions(page(), CompositeConfig()) == [PHOTO]
    # a photograph whose top rows are one colour the screen has not (a sky, a scan's border): still its own
    img = page()
    img[PHOTO.y: PHOTO.y + 3, PHOTO.x: PHOTO.x + PHOTO.w] = (13, 77, 201)
    assert find_regions(img, CompositeConfig()) == [PHOTO]
    # two photographs, one grey picture
    img = page(192, 256)
    img[130:180, 20:90] = photo(50, 70, seed=2)
    assert find_regions(img, CompositeConfig()) == [PHOTO, Box(20, 130, 70, 50)]
    assert find_regions(np.ascontiguousarray(img[:, :, 1:2]), CompositeConfig()) == [PHOTO, Box(20, 130, 70, 50)]


def test_no_regions_in_a_screen_a_photograph_or_a_small_one():
    cfg = CompositeConfig()
    assert find_regions(screen(), cfg) == []  # glyphs and flat colours only
    assert find_regions(photo(128, 192), cfg) == []  # a photograph: coded whole
    img = page()
    img[:, :60] = photo(128, 60, seed=3)  # a second photograph over a third of it: the screen is not a screen
    assert find_regions(img, cfg) == []
    small = screen(96, 128)
    small[10:34, 10:90] = photo(24, 80)  # 24 pixels high: under min_side
    assert find_regions(small, cfg) == []
    assert find_regions(small, replace(cfg, min_side=16)) == [Box(10, 10, 80, 24)]


def test_a_composite_file_is_the_screen_exact_and_the_photograph_fitted():
    img = page()
    r = encode(img, quick(0.5))
    assert r.stats.model == "composite" and r.data[4] == bitstream.COMPOSITE_VERSION and r.stats.rate_ok
    header, _ = bitstream.parse(r.data)
    assert [(g.x, g.y, g.header.width, g.header.height) for g in header.regions] == [(100, 40, 80, 64)]
    out = decode(r.data)
    inside = np.zeros(img.shape[:2], bool)
    inside[PHOTO.y: PHOTO.y + PHOTO.h, PHOTO.x: PHOTO.x + PHOTO.w] = True
    assert np.array_equal(out[~inside], img[~inside])  # the screen: exact
    assert 25 < psnr(out[inside][None], img[inside][None]) < 60  # the photograph: fitted, lossy
    assert r.stats.psnr == pytest.approx(psnr(out, img))
    assert abs(r.stats.bpp - 0.5) <= 0.05
    # without composite files: the better of the palette file and the network's (the network alone with
    # --lossless never), far behind
    for off, kinds in [(quick(0.5, enabled=False), ("palette", "grid")),
                       (replace(quick(0.5), lossless=LosslessConfig(mode="never")), ("grid",))]:
        whole = encode(img, off)
        assert whole.stats.model in kinds and whole.stats.psnr < r.stats.psnr - 3, (whole.stats.model, whole.stats.psnr)


def test_the_network_is_fitted_too_and_kept_where_the_composite_is_worse(monkeypatch):
    from pranc_codec import codec

    img, cfg = page(), replace(quick(0.5), lossless=replace(LosslessConfig(), palette=False))
    made = encode(img, cfg)
    assert made.stats.model == "composite"
    for psnr_shift, kept in [(+100.0, "composite"), (-100.0, "grid")]:
        fake = replace(made, stats=replace(made.stats, psnr=made.stats.psnr + psnr_shift))
        monkeypatch.setattr(codec, "_composite", lambda *a, **k: fake)
        assert encode(img, cfg).stats.model == kept


def test_a_ceiling_holds_for_the_composite_file():
    img = page()
    cap = int(0.5 * img.shape[0] * img.shape[1] / 8)
    c = quick(0.5)
    r = encode(img, replace(c, rate=replace(c.rate, max_bytes=cap)))
    assert r.stats.model == "composite" and r.stats.bytes <= cap


def test_no_composite_where_the_regions_would_get_too_few_bits():
    img, cfg = page(), CompositeConfig()
    n = img.shape[0] * img.shape[1]
    base = img.copy()
    base[PHOTO.y: PHOTO.y + PHOTO.h, PHOTO.x: PHOTO.x + PHOTO.w] = img[PHOTO.y, PHOTO.x]
    fixed = len(lossless.encode(base, LosslessConfig())) + bitstream.composite_overhead(1)
    least = fixed + cfg.min_region_bpp * PHOTO.area / 8  # bytes: the base, and the regions at min_region_bpp
    calls = []

    def region(crop, budget):
        calls.append((crop, budget))
        return b""

    assert composite.attempt(img, least * 0.99, cfg, LosslessConfig(), region) is None and not calls
    composite.attempt(img, least * 1.01, cfg, LosslessConfig(), region)
    (crop, budget), = calls
    assert np.array_equal(crop, img[PHOTO.y: PHOTO.y + PHOTO.h, PHOTO.x: PHOTO.x + PHOTO.w])
    assert budget == pytest.approx(least * 1.01 - fixed)
    assert 8 * least / n < 0.5  # so the 0.5 bpp encodes here are composite files


def _region_file(w: int = 16, h: int = 8, c: int = 3) -> bytes:
    return encode(np.ascontiguousarray(photo(h, w)[:, :, :c]),
                  replace(quick(2.0), lossless=LosslessConfig(mode="never"))).data


def _base(w: int = 32, h: int = 24, c: int = 3) -> bytes:
    return lossless.encode(np.ascontiguousarray(screen(c=c)[:h, :w]), LosslessConfig())


def test_the_container_and_what_it_refuses():
    region = _region_file()
    good = bitstream.pack_composite(32, 24, 3, _base(), [(0, 0, region), (16, 16, region)])
    header, _ = bitstream.parse(good)
    assert [(r.x, r.y) for r in header.regions] == [(0, 0), (16, 16)] and decode(good).shape == (24, 32, 3)
    assert len(good) <= len(_base()) + 2 * len(region) + bitstream.composite_overhead(2)
    cases = {
        "outside the 32x24 picture": [(17, 0, region)],
        "overlaps another": [(0, 0, region), (8, 4, region)],
        "not a version-8 file": [(0, 0, _base(16, 8))],
        "of 1 channels in a 3-channel file": [(0, 0, _region_file(c=1))],
        "regions outside 1..8": [(0, 0, region)] * 9,
    }
    for msg, regions in cases.items():
        with pytest.raises(FormatError, match=msg):
            bitstream.parse(bitstream.pack_composite(32, 24, 3, _base(), regions))
    with pytest.raises(FormatError, match="regions outside"):
        bitstream.parse(bitstream.pack_composite(32, 24, 3, _base(), []))
    with pytest.raises(FormatError, match="composite base of 32x24x1"):
        bitstream.parse(bitstream.pack_composite(32, 24, 3, _base(c=1), [(0, 0, region)]))
    with pytest.raises(FormatError, match="base is not a version-9 file"):
        bitstream.parse(bitstream.pack_composite(32, 24, 3, region, [(0, 0, region)]))
    # bytes after the last region, a region running past the end, a nested file's own CRC
    body = good[:-4]
    for bad, msg in [(body + b"\0", "1 bytes after the last region"), (body[:-3], "runs past the end")]:
        with pytest.raises(FormatError, match=msg):
            bitstream.parse(bad + zlib.crc32(bad).to_bytes(4, "little"))
    flipped = bytearray(body)
    flipped[-5] ^= 0xFF  # inside the second region's file: its CRC no longer holds
    with pytest.raises(FormatError):
        bitstream.parse(bytes(flipped) + zlib.crc32(bytes(flipped)).to_bytes(4, "little"))


def test_golden_file_decodes_to_its_pixels():
    """A file written by session 38's encoder (page() at 0.5 bpp, 300 steps): every later decoder must read it to
    these pixels (SHA-256 of the decoded uint8 array, row-major)."""
    img = decode(GOLDEN.read_bytes())
    assert hashlib.sha256(img.tobytes()).hexdigest() == \
        "899dc022c43bed6c31a14f50a2d6a9473447145f2dadb3ede21b7dec00cf76ee"
    outside = np.ones(img.shape[:2], bool)
    outside[PHOTO.y: PHOTO.y + PHOTO.h, PHOTO.x: PHOTO.x + PHOTO.w] = False
    assert np.array_equal(img[outside], page()[outside])


def test_cli_encode_info_decode(tmp_path):
    png, prc, out = tmp_path / "page.png", tmp_path / "page.prc", tmp_path / "out.png"
    Image.fromarray(page()).save(png)
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(png), "-o", str(prc), "--bpp", "0.5", "--steps", "300", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["model"] == "composite" and s["psnr"] > 25 and not s["lossless"]
    r = runner.invoke(main, ["encode", str(png), "-o", str(tmp_path / "b.prc"), "--bpp", "0.5", "--steps", "300"])
    assert "the screen exact and its photographs fitted" in r.output
    info = json.loads(runner.invoke(main, ["info", str(prc), "--json"]).output)
    assert info["version"] == 10 and info["network"] == "grid, in regions" and info["seam_filter"] == 0
    assert [(g["x"], g["y"], g["width"], g["height"]) for g in info["regions"]] == [(100, 40, 80, 64)]
    text = runner.invoke(main, ["info", str(prc)]).output.splitlines()  # a region a line, the names aligned
    assert [ln.split(": ", 1)[0].strip() for ln in text if ln.lstrip().startswith("regions")] == ["regions[0]"]
    assert any(ln.split(": ", 1)[1].startswith("x=100, y=40, width=80, height=64, latents=") for ln in text)
    assert len({ln.index(": ") for ln in text}) == 1
    assert runner.invoke(main, ["decode", str(prc), "-o", str(out)]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(out)), decode(prc.read_bytes()))


def test_no_kodak_photograph_has_regions():
    """A photograph is coded whole: no Kodak picture, in colour or in grey, gets a composite file (and so every
    Kodak file stays as it was)."""
    from pranc_codec.image_io import read_image

    from .test_synthetic import KODAK

    if not KODAK.is_dir():
        pytest.skip("../shared/data/kodak not present")
    pictures = [read_image(p)[0] for p in sorted(KODAK.glob("*.png"))]
    assert len(pictures) == 24
    for img in pictures:
        assert find_regions(img, CompositeConfig()) == []
        assert find_regions(np.ascontiguousarray(img[:, :, 1:2]), CompositeConfig()) == []
