"""The PSNR target (quality_target.py, `pranc encode --psnr`): the first rate from JPEG, the search, the CLI."""
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pranc_codec import decode
from pranc_codec.cli import main
from pranc_codec.codec import EncodeResult, EncodeStats
from pranc_codec.config import CodecConfig, QualityConfig
from pranc_codec.errors import InputError
from pranc_codec.metrics import psnr
from pranc_codec.quality_target import encode_to_psnr, first_rate, jpeg_point, jpeg_rate_for, rate_from_jpeg

from .conftest import smooth_image


def textured(h: int = 96, w: int = 128) -> np.ndarray:
    """Smooth colour plus noise: JPEG's PSNR then spans a wide range over its qualities."""
    rs = np.random.RandomState(1)
    noisy = smooth_image(h, w, 3).astype(np.float64) + rs.normal(0, 5, (h, w, 3))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def test_the_codec_rate_keeps_the_measured_ratio_to_jpeg():
    cfg = QualityConfig()
    for b, r in zip(cfg.jpeg_ratio_bpp, cfg.jpeg_ratio):  # at the table's points, the table's ratio
        assert rate_from_jpeg(b / r, cfg) == pytest.approx(b, rel=1e-9)
    for jpeg_bpp in (0.05, 0.3, 0.7, 2.0, 9.0):  # between and past them, b = jpeg_bpp x ratio(b)
        b = rate_from_jpeg(jpeg_bpp, cfg)
        ratio = 2 ** np.interp(math.log2(b), np.log2(cfg.jpeg_ratio_bpp), np.log2(cfg.jpeg_ratio))
        assert b == pytest.approx(jpeg_bpp * ratio, rel=1e-9)
    assert rate_from_jpeg(0.3, cfg) < rate_from_jpeg(0.31, cfg)


def test_jpeg_rate_for_a_target_lies_between_the_qualities_that_bracket_it():
    image = textured()
    cfg = QualityConfig()
    (b1, p1), (b95, p95) = jpeg_point(image, 1), jpeg_point(image, 95)
    assert p1 + 5 < p95 and b1 < b95
    for target in (p1 + 1, (p1 + p95) / 2, p95 - 0.5):
        bpp, db = jpeg_rate_for(image, target, cfg)
        assert db == target
        below = [q for q in range(1, 96) if jpeg_point(image, q)[1] < target]
        q_lo = max(below)  # JPEG's PSNR is not monotone in its quality everywhere: check the bisection's bracket
        lo, hi = jpeg_point(image, q_lo), jpeg_point(image, q_lo + 1)
        if lo[1] < target <= hi[1]:
            assert min(lo[0], hi[0]) <= bpp <= max(lo[0], hi[0])
        assert b1 < bpp < b95
    assert jpeg_rate_for(image, p95 + 3, cfg) == (b95, p95)  # past the range: JPEG's end point
    assert jpeg_rate_for(image, p1 - 3, cfg) == (b1, p1)
    # and the first pass's rate grows with the target, also past JPEG's range
    config = CodecConfig()
    rates = [first_rate(image, t, config) for t in (p1 - 3, p1 + 1, (p1 + p95) / 2, p95 + 3)]
    assert rates == sorted(rates) and len(set(rates)) == 4


def test_grayscale_pictures_go_through_jpeg_too():
    image = smooth_image(40, 48, 1)
    bpp, db = jpeg_point(image, 50)
    assert bpp > 0 and 25 < db < 60


class FakeCodec:
    """A codec whose PSNR is offset + slope x log2(bpp) (dB), whose files land at min(asked, cap) bpp."""

    def __init__(self, offset: float, slope: float = 2.5, cap: float = math.inf, floor: float = 0.0):
        self.offset, self.slope, self.cap, self.floor = offset, slope, cap, floor
        self.asked: list[float] = []

    def __call__(self, image, config, progress=None):
        self.asked.append(config.rate.bpp)
        bpp = min(max(config.rate.bpp, self.floor), self.cap)
        h, w = image.shape[:2]
        stats = EncodeStats(width=w, height=h, channels=3, bytes=round(bpp * h * w / 8), bpp=bpp,
                            target_bpp=config.rate.bpp, rate_ok=True, psnr=self.offset + self.slope * math.log2(bpp),
                            ms_ssim=None, num_coefs=0, num_params=0, net_width=0, delta=1.0, encode_seconds=1.0,
                            device="cpu", model="grid", warnings=["a rate note of this pass"])
        return EncodeResult(data=b"x" * stats.bytes, stats=stats)


@pytest.mark.parametrize("miss", [-3.0, 0.1, 3.0])  # the first pass 3 dB short, on target, 3 dB over
def test_the_search_reaches_the_target_within_tolerance_in_few_passes(miss):
    image = textured()
    offset = 30.0 + miss - 2.5 * math.log2(first_rate(image, 30.0, CodecConfig()))
    codec = FakeCodec(offset)
    r = encode_to_psnr(image, 30.0, CodecConfig(), encoder=codec)
    assert abs(r.stats.psnr - 30.0) <= 0.2
    assert r.stats.passes == len(codec.asked) <= 3
    assert r.stats.target_psnr == 30.0 and r.stats.warnings == []
    assert r.stats.encode_seconds < 60  # the passes' own time (the stand-in's 1.0 s each is not real)
    # a curve much steeper or flatter than the codec's mean: the secant through two passes gets there
    patient = replace(CodecConfig(), quality=replace(QualityConfig(), max_passes=8))
    for slope in (1.5, 5.0):
        codec = FakeCodec(offset, slope)
        r = encode_to_psnr(image, 30.0, patient, encoder=codec)
        assert abs(r.stats.psnr - 30.0) <= 0.2 and len(codec.asked) <= 4 - (miss == 0.1), (slope, codec.asked)


def test_the_first_pass_within_tolerance_ends_the_search_else_the_nearest_is_kept():
    image = textured()
    loose = replace(CodecConfig(), quality=replace(QualityConfig(), tolerance_db=5.0))
    codec = FakeCodec(29.0 - 2.5 * math.log2(first_rate(image, 30.0, CodecConfig())))  # 1 dB short
    r = encode_to_psnr(image, 30.0, loose, encoder=codec)
    assert len(codec.asked) == 1 and r.stats.psnr == pytest.approx(29.0) and r.stats.warnings == []
    assert r.stats.passes == 1  # and the pass's own rate note is not the search's

    class Wobbly(FakeCodec):  # +-0.4 dB from one pass to the next: no pass within 0.1 dB
        def __call__(self, image, config, progress=None):
            r = super().__call__(image, config, progress)
            r.stats.psnr += 0.4 * (-1) ** len(self.asked)
            return r

    codec, results = Wobbly(30.0 - 2.5 * math.log2(first_rate(image, 30.0, CodecConfig()))), []

    def spy(img, cfg, progress=None):
        results.append(codec(img, cfg, progress))
        return results[-1]

    tight = replace(CodecConfig(), quality=replace(QualityConfig(), tolerance_db=0.1, max_passes=3))
    r = encode_to_psnr(image, 30.0, tight, encoder=spy)
    assert len(results) == 3 == r.stats.passes
    nearest = min(results, key=lambda x: abs(x.stats.psnr - 30.0))
    assert r.data == nearest.data and r.stats.psnr == nearest.stats.psnr
    assert r.stats.search == [(a, x.stats.bpp, x.stats.psnr) for a, x in zip(codec.asked, results)]
    assert r.stats.warnings == [f"reached {nearest.stats.psnr:.2f} dB of the 30 dB asked in 3 encodes"]


def test_a_picture_whose_files_stop_growing_ends_the_search_with_a_warning():
    image = textured()
    codec = FakeCodec(25.0, cap=0.5)  # 30 dB would need 4 bpp; the first pass asks for about 1
    r = encode_to_psnr(image, 30.0, CodecConfig(), encoder=codec)
    assert len(codec.asked) == 1 and codec.asked[0] > 0.9 and r.stats.bpp == 0.5
    assert "stop growing at about 0.5 bpp" in r.stats.warnings[0]
    codec = FakeCodec(40.0, floor=0.3)  # 30 dB would need 0.06 bpp
    r = encode_to_psnr(image, 30.0, CodecConfig(), encoder=codec)
    assert len(codec.asked) == 2 and codec.asked[1] < 0.3 / 1.1  # two doublings down from about 1 bpp
    assert "go no smaller than about 0.3 bpp" in r.stats.warnings[0]


def test_bad_targets_are_refused():
    for bad in (0.0, -3.0, math.nan, math.inf):
        with pytest.raises(InputError, match="--psnr"):
            encode_to_psnr(textured(), bad, CodecConfig(), encoder=FakeCodec(30.0))


def test_cli_psnr_target_end_to_end(tmp_path):
    png = tmp_path / "t.png"
    Image.fromarray(smooth_image(48, 64, 3)).save(png)
    out = tmp_path / "t.prc"
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(png), "-o", str(out), "--psnr", "30", "--steps", "150", "--threads", "1",
                             "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)  # a warning, if any, goes to stderr
    assert s["target_psnr"] == 30 and 1 <= s["passes"] <= 3
    decoded = decode(out.read_bytes())
    assert psnr(np.asarray(Image.open(png)), decoded) == pytest.approx(s["psnr"], abs=1e-9)
    assert abs(s["psnr"] - 30) <= 0.2 or "reached" in " ".join(s["warnings"])
    for args, word in ((["--psnr", "30", "--bpp", "1"], "--psnr"), (["--psnr", "-2"], "--psnr"),
                       (["--size", "2k", "--psnr", "30"], "--size and --psnr")):
        r = runner.invoke(main, ["encode", str(png), "-o", str(tmp_path / "u.prc"), *args])
        assert r.exit_code == 2 and word in r.output and not (tmp_path / "u.prc").exists()
