"""Pictures with transparency (format version 11, alpha.py): the alpha kept (exact, or within 50 dB with its 0s
and 255s exact), the colour coded for the rate it leaves, fitted on the seen pixels alone."""
import hashlib
import json
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pranc_codec import CodecConfig, alpha, bitstream, decode, encode, lossless
from pranc_codec.cli import main
from pranc_codec.config import LosslessConfig
from pranc_codec.errors import FormatError, LimitError
from pranc_codec.image_io import read_image
from pranc_codec.metrics import psnr

from .conftest import smooth_image
from .test_lossless import screen

GOLDEN = Path(__file__).parent / "data" / "golden_v11.prc"


def disc(h: int, w: int) -> np.ndarray:
    """uint8 (h, w, 1): an opaque disc with a two-pixel anti-aliased edge on nothing."""
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(y - h / 2 + 0.5, x - w / 2 + 0.5)
    return np.clip(np.rint((0.42 * min(h, w) - r) * 127.5 + 127.5), 0, 255).astype(np.uint8)[:, :, None]


def cutout(h: int = 96, w: int = 128, c: int = 3, seed: int = 0) -> np.ndarray:
    """A photograph's stand-in (smooth colours and grain) cut out along a disc, its hidden pixels noise (what an
    editor may leave there)."""
    a = disc(h, w)
    grain = np.random.RandomState(seed + 2).normal(0, 4, (h, w, c))
    colour = np.clip(np.rint(smooth_image(h, w, c, seed) + grain), 0, 255).astype(np.uint8)
    colour[a[:, :, 0] == 0] = np.random.RandomState(seed + 1).randint(0, 256, (int((a == 0).sum()), c))
    return np.concatenate([colour, a], axis=2)


def quick(bpp: float = 1.0) -> CodecConfig:
    c = CodecConfig()
    return replace(c, rate=replace(c.rate, bpp=bpp), grid=replace(c.grid, steps=200))


def _alpha_kept(out: np.ndarray, img: np.ndarray) -> float:
    """The decoded alpha's PSNR against the picture's, after checking that its 0s and 255s are exact (no hidden
    pixel shows, no opaque one lets the background through)."""
    a, b = out[:, :, -1], img[:, :, -1]
    assert np.array_equal(a == 0, b == 0) and np.array_equal(a[b == 255], b[b == 255])
    return psnr(a[:, :, None], b[:, :, None])


def test_the_alpha_is_kept_and_the_visible_colour_measured():
    img = cutout()
    r = encode(img, quick(0.75))
    assert r.data[4] == bitstream.ALPHA_VERSION and r.stats.channels == 4 and r.stats.model == "grid"
    out = decode(r.data)
    assert out.shape == img.shape
    # the alpha reduced to fewer levels (a palette-flagged version-9 file), within 50 dB, smaller than exact
    header, _ = bitstream.parse(r.data)
    exact = lossless.encode(img[:, :, 3:], LosslessConfig())
    assert header.alpha.palette and r.stats.alpha_bytes < len(exact) and not r.stats.lossless
    assert _alpha_kept(out, img) == pytest.approx(r.stats.alpha_psnr) and r.stats.alpha_psnr >= 50
    seen = img[:, :, 3] > 0
    assert r.stats.psnr == pytest.approx(psnr(out[seen][None, :, :3], img[seen][None, :, :3]))
    assert r.stats.psnr > 24 and r.stats.rate_ok and abs(r.stats.bpp - 0.75) <= 0.075
    assert (header.colour.channels, header.alpha.channels) == (3, 1)
    # the colour's file gets the rate the alpha leaves: the whole file is on the target, not the colour alone
    assert r.stats.bytes - r.stats.alpha_bytes < 0.75 * img.shape[0] * img.shape[1] / 8
    # exact on demand (--alpha exact)
    c = quick(0.75)
    r = encode(img, replace(c, alpha=replace(c.alpha, min_db=np.inf)))
    assert np.array_equal(decode(r.data)[:, :, 3], img[:, :, 3]) and r.stats.alpha_bytes == len(exact)
    assert r.stats.alpha_psnr == np.inf and r.stats.to_dict()["alpha_psnr"] is None


def test_hidden_pixels_take_the_nearest_seen_colour_and_cost_nothing():
    img = cutout()
    colour, a = alpha.split(img)
    seen = a[:, :, 0] > 0
    filled = alpha.fill_hidden(colour, a)
    assert np.array_equal(filled[seen], colour[seen])
    ys, xs = np.nonzero(seen)
    for y, x in [(0, 0), (95, 127), (50, 0)]:  # hidden corners and edge: the nearest seen pixel's colour
        d = (ys - y) ** 2 + (xs - x) ** 2
        assert any(np.array_equal(filled[y, x], colour[ys[i], xs[i]]) for i in np.flatnonzero(d == d.min()))
    assert set(map(tuple, filled.reshape(-1, 3))) <= set(map(tuple, colour[seen]))  # no new colours
    # nothing seen: a black picture, whose exact file is a few bytes, whatever the colour held
    nothing = np.zeros_like(img)
    nothing[:, :, :3] = colour
    r = encode(nothing, quick(0.75))
    assert r.stats.lossless and r.stats.bytes < 200 and not decode(r.data).any()
    # whatever the hidden pixels hold, the same file
    other = img.copy()
    other[~seen, :3] = 0
    assert encode(other, quick(0.75)).data == encode(img, quick(0.75)).data


def test_only_the_seen_pixels_are_fitted():
    """Noise under the hidden pixels (not filled) costs the seen ones nothing where the fit, the rounding, the
    MLP's bits and the loop filter weigh the hidden ones at 0, and much where they count."""
    import time

    import torch

    from pranc_codec import codec

    img = cutout(c=3)
    colour, a = alpha.split(img)  # cutout() leaves noise under the hidden pixels
    seen = a[:, :, 0] > 0
    cfg = replace(quick(0.75), lossless=LosslessConfig(mode="never"))
    judged = codec._encode_colour(colour, cfg, torch.device("cpu"), None, time.perf_counter(), seen)
    blind = codec._encode_colour(colour, cfg, torch.device("cpu"), None, time.perf_counter())
    out = decode(judged.data)
    assert judged.stats.psnr == pytest.approx(psnr(out[seen][None], colour[seen][None]))
    assert judged.stats.psnr > psnr(decode(blind.data)[seen][None], colour[seen][None]) + 5
    assert abs(judged.stats.bpp - 0.75) <= 0.075


def test_a_composite_is_tried_only_where_a_screen_is_seen():
    """A photograph cut out on nothing has no screen for a composite file to code exactly; a page whose margins
    alone are transparent has."""
    from pranc_codec import composite
    from pranc_codec.config import CompositeConfig

    from .test_composite import PHOTO, page

    img = page()
    calls = []

    def region(crop, budget):
        calls.append(crop.shape)
        return b""

    for hidden, tried in [((slice(None), slice(0, 20)), True),  # a transparent margin: the page is still seen
                          ((slice(None), slice(None)), False)]:  # only the photograph seen
        seen = np.ones(img.shape[:2], bool)
        seen[hidden] = False
        seen[PHOTO.y: PHOTO.y + PHOTO.h, PHOTO.x: PHOTO.x + PHOTO.w] = True
        calls.clear()
        composite.attempt(img, 1e6, CompositeConfig(), LosslessConfig(), region, seen)
        assert bool(calls) == tried


def test_lossless_always_keeps_every_pixel_and_a_screen_with_alpha_is_exact_where_seen():
    img = cutout(c=3)
    c = replace(quick(), lossless=replace(LosslessConfig(), mode="always"))
    r = encode(img, c)
    assert r.stats.lossless and np.array_equal(decode(r.data), img)  # the hidden pixels' colour too
    logo = np.concatenate([screen(96, 128), disc(96, 128)], axis=2)
    r = encode(logo, quick(0.75))
    out, seen = decode(r.data), logo[:, :, 3] > 0
    assert r.stats.lossless and r.stats.psnr == np.inf and np.array_equal(out[seen], logo[seen])
    assert np.array_equal(out[:, :, 3], logo[:, :, 3]) and r.stats.bpp < 1.0  # the colour exact: the alpha too


def test_grey_with_alpha_opaque_alpha_and_the_ceiling():
    grey = cutout(c=1)
    r = encode(grey, quick(0.75))
    assert r.stats.channels == 2 and decode(r.data).shape == grey.shape
    assert _alpha_kept(decode(r.data), grey) >= 50
    opaque = np.concatenate([smooth_image(48, 64), np.full((48, 64, 1), 255, np.uint8)], axis=2)
    r = encode(opaque, quick(0.75))
    assert r.data[4] == bitstream.GRID_VERSION and r.stats.channels == 3 and decode(r.data).shape == (48, 64, 3)
    img = cutout()
    cap = int(0.8 * img.shape[0] * img.shape[1] / 8)
    c = quick(2.0)
    r = encode(img, replace(c, rate=replace(c.rate, max_bytes=cap)))
    assert r.stats.bytes <= cap and r.stats.alpha_bytes > 0
    with pytest.raises(LimitError, match="transparency alone takes"):
        encode(img, replace(c, rate=replace(c.rate, max_bytes=r.stats.alpha_bytes)))
    # no ceiling: a rate the alpha alone is over gives the colour its floor, and says the target was missed
    r = encode(img, quick(0.05))
    assert not r.stats.rate_ok and r.stats.warnings and _alpha_kept(decode(r.data), img) >= 50


def _colour(c: int = 3, w: int = 32, h: int = 24) -> bytes:
    return lossless.encode(np.ascontiguousarray(screen(c=c)[:h, :w]), LosslessConfig())


def _alpha(w: int = 32, h: int = 24) -> bytes:
    return lossless.encode(np.ascontiguousarray(disc(h, w)), LosslessConfig())


def test_the_container_and_what_it_refuses():
    good = bitstream.pack_alpha(32, 24, 4, _colour(), _alpha())
    assert decode(good).shape == (24, 32, 4)
    assert len(good) <= len(_colour()) + len(_alpha()) + bitstream.alpha_overhead()
    cases = [
        ((32, 24, 3, _colour(), _alpha()), "channel count 3 for a picture with transparency"),
        ((32, 24, 4, _colour(c=1), _alpha()), "colour of 32x24x1 in a 32x24x4 file"),
        ((32, 24, 2, _colour(), _alpha()), "colour of 32x24x3 in a 32x24x2 file"),
        ((32, 24, 4, _colour(w=16), _alpha()), "colour of 16x24x3"),
        ((32, 24, 4, _colour(), _colour()), "alpha of 32x24x3"),
        ((32, 24, 4, _colour(), _alpha(w=16)), "alpha of 16x24x1"),
        ((32, 24, 4, bitstream.pack_alpha(32, 24, 4, _colour(), _alpha()), _alpha()), "not a file of version"),
    ]
    for args, msg in cases:
        with pytest.raises(FormatError, match=msg):
            bitstream.parse(bitstream.pack_alpha(*args))
    grid = encode(smooth_image(24, 32), quick(2.0)).data
    with pytest.raises(FormatError, match="alpha is not a version-9 file"):
        bitstream.parse(bitstream.pack_alpha(32, 24, 4, _colour(), grid))
    body = good[:-4]
    for bad, msg in [(body + b"\0", "1 bytes after the alpha"), (body[:-3], "runs past the end")]:
        with pytest.raises(FormatError, match=msg):
            bitstream.parse(bad + zlib.crc32(bad).to_bytes(4, "little"))


def test_golden_file_decodes_to_its_pixels():
    """A file written by session 39's encoder (cutout(40, 48) at 4 bpp, 200 steps: a grid colour file): every later
    decoder must read it to these pixels (SHA-256 of the decoded uint8 array, row-major)."""
    data = GOLDEN.read_bytes()
    assert data[4] == bitstream.ALPHA_VERSION and bitstream.parse(data)[0].colour.version == bitstream.GRID_VERSION
    img = decode(data)
    assert hashlib.sha256(img.tobytes()).hexdigest() == \
        "93da0fcb478ef1f6c69222cd9d944b43f657e625fa9351455de68b153e9c1930"
    assert np.array_equal(img[:, :, 3], cutout(40, 48)[:, :, 3])


def test_read_image_keeps_the_alpha_where_asked(tmp_path):
    img = cutout()
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(cutout(c=1), "LA").save(tmp_path / "g.png")
    got, notes = read_image(tmp_path / "a.png", keep_alpha=True)
    assert np.array_equal(got, img) and not notes
    got, notes = read_image(tmp_path / "g.png", keep_alpha=True)
    assert got.shape == (96, 128, 2) and not notes
    got, notes = read_image(tmp_path / "a.png")  # the harness and the probes: colour alone, with a warning
    assert got.shape == (96, 128, 3) and "alpha channel dropped" in notes[0]


def test_cli_encode_info_decode(tmp_path):
    png, prc = tmp_path / "cut.png", tmp_path / "cut.prc"
    img = cutout()
    Image.fromarray(img).save(png)
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(png), "-o", str(prc), "--bpp", "0.75", "--steps", "200", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["channels"] == 4 and s["alpha_bytes"] > 0 and s["psnr"] > 24 and s["alpha_psnr"] >= 50
    r = runner.invoke(main, ["encode", str(png), "-o", str(tmp_path / "b.prc"), "--bpp", "0.75", "--steps", "200"])
    assert "the transparency at 5" in r.output and "dB in" in r.output
    r = runner.invoke(main, ["encode", str(png), "-o", str(tmp_path / "c.prc"), "--bpp", "0.75", "--steps", "200",
                             "--alpha", "exact"])
    assert "the transparency exact in" in r.output
    info = json.loads(runner.invoke(main, ["info", str(prc), "--json"]).output)
    assert info["version"] == 11 and info["channels"] == 4 and info["colour"]["network"] == "grid"
    text = runner.invoke(main, ["info", str(prc)]).output  # the nested colour file a field a line
    assert "  colour.network: grid" in text and "alpha_reduced: True" in text
    for name in ("out.png", "out.tif", "out.tga", "out.webp"):
        assert runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / name)]).exit_code == 0
        with Image.open(tmp_path / name) as im:
            assert im.mode == "RGBA" and np.array_equal(np.asarray(im), decode(prc.read_bytes()))
    for name in ("out.ppm", "out.bmp"):
        r = runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / name)])
        assert r.exit_code == 2 and "cannot hold this picture's transparency" in r.output
        assert not (tmp_path / name).exists()
