"""Lossless files (format version 9, lossless.py): chosen where they fit the rate, exact, and checked on decode."""
import json
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pranc_codec import CodecConfig, bitstream, decode, encode, lossless
from pranc_codec.bitstream import LosslessHeader
from pranc_codec.cli import main
from pranc_codec.codec import EncodeResult, EncodeStats
from pranc_codec.config import LosslessConfig
from pranc_codec.errors import FormatError, LimitError
from pranc_codec.metrics import psnr
from pranc_codec.quality_target import encode_to_psnr

from .test_cli import _one_line_error


def screen(h: int = 96, w: int = 128, c: int = 3) -> np.ndarray:
    """A synthetic screenshot: a flat background, a title bar, boxes and rows of 'glyphs'."""
    img = np.full((h, w, 3), 246, np.uint8)
    img[:12] = (40, 60, 110)
    img[20:60, 8:50] = (220, 80, 60)
    img[70:90, 60:120] = (90, 170, 90)
    glyph = (np.arange(6)[:, None] * 7 + np.arange(4)[None, :] * 3) % 5 < 2
    for y in range(20, 64, 9):
        for x in range(58, 120, 6):
            img[y: y + 6, x: x + 4][glyph] = (20, 20, 20)
    return img[:, :, :1].copy() if c == 1 else img


def noise(h: int = 64, w: int = 64) -> np.ndarray:
    return np.random.RandomState(3).randint(0, 256, (h, w, 3), dtype=np.uint8)


def config(bpp: float = 0.5, mode: str = "auto", **rate) -> CodecConfig:
    c = CodecConfig()
    return replace(c, rate=replace(c.rate, bpp=bpp, **rate), lossless=replace(c.lossless, mode=mode))


def _reseal(b: bytearray) -> bytes:
    b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
    return bytes(b)


@pytest.mark.parametrize("c", [3, 1])
def test_a_screen_under_its_rate_is_stored_exactly(c):
    img = screen(c=c)
    r = encode(img, config(0.5))
    s = r.stats
    assert r.data[4] == bitstream.LOSSLESS_VERSION and s.lossless and s.model == "lossless"
    assert s.bytes == len(r.data) <= 0.5 * img.shape[0] * img.shape[1] / 8
    assert np.array_equal(decode(r.data), img) and decode(r.data).shape == img.shape
    assert s.psnr == float("inf") and s.rate_ok and s.warnings == []
    d = s.to_dict()
    assert d["psnr"] is None and d["lossless"] is True
    json.dumps(d, allow_nan=False)  # valid JSON: no Infinity


def test_the_lossless_file_is_used_only_where_it_fits_the_rate_and_the_ceiling():
    img = screen()
    exact = len(lossless.encode(img, LosslessConfig()))
    budget_bpp = 8 * exact / (img.shape[0] * img.shape[1])
    assert lossless.attempt(img, exact, LosslessConfig()) is not None
    assert lossless.attempt(img, exact - 1, LosslessConfig()) is None
    assert lossless.attempt(noise(), 1e9, LosslessConfig()) is not None
    assert lossless.attempt(noise(), 64 * 64 * 3 * 0.5, LosslessConfig()) is None  # half of the raw size: no
    # through encode: the budget is the rate asked for, and --max-size under it
    from pranc_codec.codec import _lossless

    assert _lossless(img, config(budget_bpp)) is not None
    assert _lossless(img, config(budget_bpp * 0.99)) is None
    assert _lossless(img, config(4.0, max_bytes=exact - 1)) is None
    assert _lossless(img, config(4.0, mode="never")) is None


def test_always_codes_any_picture_exactly_and_keeps_to_the_ceiling():
    img = noise()
    r = encode(img, config(0.25, mode="always"))
    assert r.stats.lossless and np.array_equal(decode(r.data), img)
    assert r.stats.rate_ok and r.stats.warnings == []  # "always" asks no rate
    with pytest.raises(LimitError, match="over the ceiling of 100"):
        encode(img, config(0.25, mode="always", max_bytes=100))
    with pytest.raises(Exception, match="unknown lossless mode"):
        encode(img, config(0.25, mode="sometimes"))


def test_the_container_layout():
    img = screen()[:5, :7]
    data = lossless.encode(img, LosslessConfig())
    assert data[:12] == b"PRNC" + bytes([9, 0]) + struct.pack("<HHBB", 7, 5, 3, 0)
    assert data[12] == lossless.VP8L_SIGNATURE
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    header, payload = bitstream.parse(data)
    assert header == LosslessHeader(width=7, height=5, channels=3, kind=0) and payload == data[12:-4]
    black = np.zeros((1, 1, 3), np.uint8)
    one = lossless.encode(black, LosslessConfig())  # 30 bytes with libwebp 1.6
    assert len(one) == 16 + len(lossless.webp_lossless(black, 4, 100)) and np.array_equal(decode(one), black)


def test_header_and_payload_fields_that_disagree_are_refused():
    data = bytearray(lossless.encode(screen(), LosslessConfig()))
    for pos, fmt, value, msg in [
        (5, "<B", 2, "flags 0x02"),
        (6, "<H", 127, "of 128x96 pixels in a 127x96 file"),  # the width edited in the header only
        (10, "<B", 2, "channel count 2"),
        (11, "<B", 1, "payload kind 1"),
        (12, "<B", 0x2E, "not a VP8L bitstream"),
    ]:
        b = bytearray(data)
        struct.pack_into(fmt, b, pos, value)
        with pytest.raises(FormatError, match=msg):
            decode(_reseal(b))
    bits = struct.unpack_from("<I", data, 13)[0]
    for flip, msg in [(1 << 28, "alpha"), (1 << 29, "VP8L version 1"), (1, "of 127x96 pixels in a 128x96 file")]:
        b = bytearray(data)
        struct.pack_into("<I", b, 13, bits ^ flip)
        with pytest.raises(FormatError, match=msg):
            decode(_reseal(b))
    with pytest.raises(FormatError, match="corrupt lossless payload"):
        decode(_reseal(bytearray(data[:30] + data[-4:])))  # the payload cut short


def test_a_psnr_search_ending_above_the_lossless_size_takes_the_lossless_file():
    img = screen()
    exact = len(lossless.encode(img, LosslessConfig()))
    calls = []

    def lossy_then_real(image, cfg, progress=None):  # every pass a lossy file twice the lossless one's size
        calls.append(cfg.lossless.mode)
        if cfg.lossless.mode == "always":
            return encode(image, cfg)
        h, w = image.shape[:2]
        stats = EncodeStats(width=w, height=h, channels=3, bytes=2 * exact, bpp=16 * exact / (h * w),
                            target_bpp=cfg.rate.bpp, rate_ok=True, psnr=40.0, ms_ssim=None, num_coefs=0,
                            num_params=0, net_width=0, delta=1.0, encode_seconds=1.0, device="cpu", model="grid")
        return EncodeResult(data=b"x" * stats.bytes, stats=stats)

    r = encode_to_psnr(img, 40.0, CodecConfig(), encoder=lossy_then_real)
    assert calls == ["auto", "always"] and r.stats.lossless and np.array_equal(decode(r.data), img)
    assert r.stats.passes == 1 and r.stats.target_psnr == 40.0 and r.stats.warnings == []
    calls.clear()
    never = replace(CodecConfig(), lossless=LosslessConfig(mode="never"))
    assert not encode_to_psnr(img, 40.0, never, encoder=lossy_then_real).stats.lossless and calls == ["never"]


def test_cli_encode_info_decode(tmp_path):
    png, prc, out = tmp_path / "s.png", tmp_path / "s.prc", tmp_path / "d.png"
    Image.fromarray(screen()).save(png)
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(png), "-o", str(prc), "--bpp", "1", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["lossless"] is True and s["psnr"] is None and s["bytes"] == prc.stat().st_size
    r = runner.invoke(main, ["encode", str(png), "-o", str(prc), "-f", "--bpp", "1"])
    assert "lossless (the exact pixels" in r.stdout and "PSNR" not in r.stdout
    r = runner.invoke(main, ["info", str(prc), "--json"])
    info = json.loads(r.stdout)
    assert info["version"] == 9 and info["network"] == "none" and info["palette"] is False
    assert info["payload_bytes"] == s["bytes"] - bitstream.LOSSLESS_OVERHEAD == s["bytes"] - 16
    r = runner.invoke(main, ["decode", str(prc), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(out)), screen())
    r = runner.invoke(main, ["encode", str(png), "-o", str(tmp_path / "x.prc"), "--lossless", "always", "--bpp", "1"])
    assert "--lossless always takes no --bpp" in _one_line_error(r, 2)
    assert not (tmp_path / "x.prc").exists()


@pytest.mark.parametrize("name,shape,digest", [
    ("golden_v9.prc", (32, 48, 3), "e1bf627fe950d23bc47336e3eee2976139399cfff34531d5e16900c005ae7464"),
    ("golden_v9_grey.prc", (32, 48, 1), "bcf64b213fa57393b839444cf0da84a82ffa9f7d4180ee0c89bc7afd46a5b9a7"),
    ("golden_v9_palette.prc", (96, 128, 3), "3e09acff309c34bbfeaff149c0d5834c1352f41472cae952da93cb02c415247c"),
])
def test_golden_files_decode_to_their_pixels(name, shape, digest):
    """Files written by session 37's encoder (libwebp 1.6; one a palette file): every later decoder must read them
    to these pixels (a SHA-256 of the decoded uint8 array, row-major), whatever libwebp it has."""
    import hashlib
    from pathlib import Path

    data = (Path(__file__).parent / "data" / name).read_bytes()
    img = decode(data)
    assert img.shape == shape and hashlib.sha256(img.tobytes()).hexdigest() == digest
    if bitstream.parse(data)[0].palette:  # antialiased() at 0.5 bpp, reduced to a palette
        assert len(np.unique(img.reshape(-1, 3), axis=0)) <= 256 and 25 < psnr(img, antialiased()) < 40
    else:
        assert np.array_equal(img, screen(c=shape[2])[8:40, 40:88])


def antialiased(h: int = 96, w: int = 128) -> np.ndarray:
    """A screen with blended edges and a small photograph (7 % of it, thousands of colours): its exact code is
    over 1 bpp, a palette's is not."""
    img = screen(h, w).astype(np.float64)
    y, x = np.mgrid[0:h, 0:w]
    for cx, cy, r, col in [(30, 70, 14, (30, 90, 200)), (95, 40, 18, (240, 180, 20)), (70, 75, 9, (120, 20, 120))]:
        cover = np.clip(r + 0.5 - np.hypot(x - cx, y - cy), 0, 1)[..., None]  # one pixel of blend at the rim
        img = img * (1 - cover) + np.array(col) * cover
    img[60:80, 4:44] = np.random.RandomState(5).normal((150, 120, 90), 30, (20, 40, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_a_palette_file_is_kept_only_where_it_beats_the_network():
    img = antialiased()
    n = img.shape[0] * img.shape[1]
    assert lossless.attempt(img, 1.0 * n / 8, LosslessConfig()) is None  # no exact file at 1 bpp
    assert lossless.colour_share(img, 256) >= LosslessConfig().palette_min_share
    pal = lossless.palette_attempt(img, 1.0 * n / 8, LosslessConfig())
    header, _ = bitstream.parse(pal)
    assert header.palette and len(pal) <= n / 8
    reduced = decode(pal)
    assert 2 <= len(np.unique(reduced.reshape(-1, 3), axis=0)) <= 256 and not np.array_equal(reduced, img)
    # a network of 40 steps is far behind: the palette file is the one written, and it is what decodes
    quick = replace(config(1.0), grid=replace(CodecConfig().grid, steps=40))
    r = encode(img, quick)
    assert r.stats.model == "palette" and not r.stats.lossless and r.data == pal
    assert r.stats.psnr == pytest.approx(float(10 * np.log10(255**2 / np.mean((reduced - img.astype(float)) ** 2))))
    assert r.stats.rate_ok and r.stats.warnings == []
    # never / palette off: the network's file
    for off in (config(1.0, mode="never"), replace(quick, lossless=LosslessConfig(palette=False))):
        assert encode(img, replace(off, grid=quick.grid)).stats.model == "grid"


def test_the_better_of_palette_and_network_by_psnr_and_ms_ssim():
    from pranc_codec.codec import _NO_NETWORK, _better, _finish

    img = antialiased(176, 192)  # large enough for MS-SSIM's five scales
    pal = lossless.palette_attempt(img, img.shape[0] * img.shape[1] / 8, LosslessConfig())
    net = encode(img, replace(config(1.0, mode="never"), grid=replace(CodecConfig().grid, steps=40)))
    cfg = config(1.0)
    candidate = _finish(img, pal, cfg, torch.device("cpu"), 0.0, model="palette", **_NO_NETWORK)
    chosen = _better(net, candidate, cfg, 0.0)
    assert chosen.data == pal and chosen.stats.psnr > net.stats.psnr  # 40 steps of fitting are far behind
    assert chosen.stats.ms_ssim > net.stats.ms_ssim
    # a network's file better in PSNR, or in MS-SSIM alone, is kept
    for psnr_up, ms_ssim in [(100.0, chosen.stats.ms_ssim), (0.0, 1.5)]:
        better = replace(net, stats=replace(net.stats, psnr=net.stats.psnr + psnr_up, ms_ssim=ms_ssim))
        assert _better(better, candidate, cfg, 0.0) is better
    # with --tune psnr, PSNR alone decides: a network better only in MS-SSIM loses
    ms_only = replace(net, stats=replace(net.stats, ms_ssim=1.5))
    assert _better(ms_only, candidate, cfg.with_tune("psnr"), 0.0).data == pal


def test_a_palette_file_near_the_picture_is_written_without_a_fit():
    img = antialiased()
    phases = []

    def progress(name, total, unit="step"):
        phases.append(name)
        return lambda n, loss: None

    quick = replace(config(1.0), grid=replace(CodecConfig().grid, steps=40))
    pal = lossless.palette_attempt(img, img.shape[0] * img.shape[1] / 8, LosslessConfig())
    db = psnr(decode(pal), img)
    for final_db, fitted in [(db, False), (db + 0.01, True)]:
        phases.clear()
        cfg = replace(quick, lossless=replace(quick.lossless, palette_final_db=final_db))
        r = encode(img, cfg, progress=progress)
        assert r.data == pal and ("fit" in phases) == fitted, (final_db, phases)


def test_a_palette_file_within_the_ceiling_stands_where_the_network_cannot_fit(monkeypatch):
    from pranc_codec import codec

    img = antialiased()
    cap = img.shape[0] * img.shape[1] // 8  # 1 bpp
    pal = lossless.palette_attempt(img, cap, LosslessConfig())

    tried = []

    def over(*args, **kwargs):
        tried.append(True)
        raise LimitError("cannot fit this picture in N bytes: the smallest file made was M bytes")

    monkeypatch.setattr(codec, "_encode_grid", over)
    cfg = config(1.0, max_bytes=cap)
    r = encode(img, cfg)
    assert tried and r.stats.model == "palette" and r.data == pal and len(r.data) <= cap
    with pytest.raises(LimitError, match="smallest file"):  # nothing else within the ceiling: the error stands
        encode(img, replace(cfg, lossless=replace(cfg.lossless, palette=False)))


def test_pictures_of_many_colours_get_no_palette_file():
    from .conftest import smooth_image

    img = smooth_image(64, 96)
    assert lossless.colour_share(img, 256) < LosslessConfig().palette_min_share
    assert lossless.palette_attempt(img, 1e9, LosslessConfig()) is None
    grey = np.ascontiguousarray(img[:, :, :1])  # every grey picture has at most 256 levels: its top 16 count
    assert lossless.colour_share(grey, 256) == 1.0
    assert lossless.colour_share(grey, LosslessConfig().palette_grey_levels) < LosslessConfig().palette_min_share
    assert lossless.palette_attempt(grey, 1e9, LosslessConfig()) is None


def test_a_grey_picture_of_few_levels_gets_a_grey_palette_file():
    img = np.ascontiguousarray(antialiased()[:, :, 1:2])
    n = img.shape[0] * img.shape[1]
    assert lossless.attempt(img, 0.5 * n / 8, LosslessConfig()) is None  # no exact file at 0.5 bpp
    pal = lossless.palette_attempt(img, 0.5 * n / 8, LosslessConfig())
    header, _ = bitstream.parse(pal)
    assert header.palette and header.channels == 1 and len(pal) <= n / 16
    reduced = decode(pal)
    assert reduced.shape == img.shape and 2 <= len(np.unique(reduced)) < len(np.unique(img))
    quick = replace(config(0.5), grid=replace(CodecConfig().grid, steps=40))
    r = encode(img, quick)
    assert r.stats.model == "palette" and r.data == pal and r.stats.channels == 1 and r.stats.ms_ssim is None
    assert r.stats.psnr == pytest.approx(psnr(reduced, img))


def test_the_palette_flag():
    data = bytearray(lossless.palette_attempt(antialiased(), 1e9, LosslessConfig()))
    assert data[5] == bitstream.LOSSLESS_FLAG_PALETTE
    data[5] = 0
    assert not bitstream.parse(_reseal(data))[0].palette  # informative only: the same pixels either way
    data[5] = 2
    with pytest.raises(FormatError, match="flags 0x02"):
        bitstream.parse(_reseal(data))
