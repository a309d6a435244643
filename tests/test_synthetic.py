"""Synthetic pictures (screenshots, charts, diagrams) keep the finest latent level at lower rates than photographs:
how they are told apart (grid_codec.flat_share) and what the fit does with them (grid_codec.fit_settings)."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from pranc_codec import CodecConfig, bitstream, decode, encode, grid_decode
from pranc_codec.config import GridConfig, LosslessConfig, RateConfig
from pranc_codec.grid_codec import fit_settings, flat_share, plan
from pranc_codec.image_io import read_image

from .conftest import smooth_image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def diagram(height: int, width: int) -> np.ndarray:
    """uint8 (height, width, 3): outlined pastel boxes with labels and a connecting line on white, the
    128 x 192 layout repeated across the width."""
    im = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=12)
    for ox in range(0, width, 192):
        for i, (x, y) in enumerate([(6, 8), (100, 8), (6, 70), (100, 70)]):
            d.rectangle((ox + x, y, ox + x + 80, y + 46), fill=[(220, 235, 250), (250, 235, 215)][i % 2],
                        outline=(40, 40, 40))
            d.text((ox + x + 8, y + 16), f"box {i}", fill=(20, 20, 20), font=font)
        d.line((ox + 86, 31, ox + 100, 31), fill=(200, 30, 30), width=1)
    return np.asarray(im)


def _flat_direct(a: np.ndarray) -> float:
    here = a[1:, 1:]
    return float(((here == a[:-1, 1:]) & (here == a[1:, :-1])).all(axis=-1).sum() / (a.shape[0] * a.shape[1]))


def test_flat_share_counts_pixels_equal_to_their_upper_and_left_neighbours():
    assert flat_share(np.zeros((3, 4, 3), np.uint8)) == pytest.approx(6 / 12)  # the first row and column are not
    assert flat_share(np.zeros((1, 50, 3), np.uint8)) == 0.0
    assert flat_share(np.zeros((50, 1, 1), np.uint8)) == 0.0
    one_channel = np.zeros((4, 4, 3), np.uint8)
    one_channel[2, 2, 1] = 9  # differs from its neighbours in one channel only: it and the two it precedes
    assert flat_share(one_channel) == pytest.approx((9 - 3) / 16)
    rng = np.random.default_rng(0)
    assert flat_share(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) < 0.001
    # blocks across the strips' seams (256 rows each): the same count as one pass over the whole picture
    blocks = np.repeat(np.repeat(rng.integers(0, 3, (60, 4, 1), dtype=np.uint8), 10, 0), 10, 1)
    blocks = np.concatenate([blocks, blocks + 1, blocks], axis=-1)
    assert blocks.shape == (600, 40, 3)
    assert flat_share(blocks) == pytest.approx(_flat_direct(blocks)) and 0.5 < flat_share(blocks) < 1


def test_synthetic_pictures_are_told_from_photographs():
    """Drawn pictures are flat far past the threshold; no Kodak photograph comes near it, so the rule leaves
    every Kodak file as it was."""
    g = GridConfig()
    assert flat_share(diagram(128, 384)) >= g.finest_flat_share + 0.1
    if not KODAK.is_dir():
        pytest.skip("../shared/data/kodak not present")
    shares = [flat_share(read_image(p)[0]) for p in sorted(KODAK.glob("*.png"))]
    assert len(shares) == 24 and max(shares) < g.finest_flat_share / 5


def test_fit_settings_keep_the_finest_level_of_a_large_synthetic_picture():
    g = GridConfig()
    cfg = replace(CodecConfig(), rate=RateConfig(bpp=0.25))
    cpu, kodak, n = torch.device("cpu"), plan(cfg, 512, 768, 3), 512 * 768
    coarse = round(g.steps * g.coarse_step_factor)
    between = (g.finest_min_bpp_flat + g.finest_min_bpp) / 2
    synthetic = fit_settings(cfg, kodak, between, cpu, flat=0.9, pixels=n)
    assert synthetic.steps == g.steps and synthetic.finest_min_bpp == g.finest_min_bpp_flat  # the finest level in
    assert fit_settings(cfg, kodak, between, cpu, flat=0.5, pixels=n).steps == coarse  # a photograph: out
    assert fit_settings(cfg, kodak, between, cpu).steps == coarse
    assert fit_settings(cfg, kodak, between, cpu, flat=0.9, pixels=g.finest_flat_min_pixels - 1).steps == coarse
    assert fit_settings(cfg, kodak, g.finest_min_bpp_flat * 0.9, cpu, flat=0.9, pixels=n).steps == coarse
    fast = CodecConfig(rate=RateConfig(bpp=0.25)).with_preset("fast")  # keeps it too (ABLATIONS.md BM3)
    assert fit_settings(fast, kodak, between, cpu, flat=0.9, pixels=n).finest_min_bpp == g.finest_min_bpp_flat
    short = replace(cfg, grid=replace(g, steps=g.finest_flat_min_steps - 1))  # too few steps for its fit: out
    assert fit_settings(short, kodak, between, cpu, flat=0.9, pixels=n).finest_min_bpp == g.finest_min_bpp


def test_a_synthetic_picture_codes_its_finest_level():
    """The encoder decides from the picture: a drawing's file holds finest-level latents at a rate where a
    photograph-like picture's holds none, and without the rule the drawing's holds none either. (The floors on
    size and steps are lowered to keep the test short; what the rule gains is measured in eval/, RESULTS.md.)"""
    small = GridConfig(steps=600, finest_flat_min_pixels=0, finest_flat_min_steps=0)
    # a network's file, not the lossless one that the drawing's would be (test_lossless.py)
    base = CodecConfig(rate=RateConfig(bpp=0.25), grid=small, lossless=LosslessConfig(mode="never"))
    drawing, photo = diagram(128, 384), smooth_image(128, 384, 3, seed=1)
    assert flat_share(photo) < small.finest_flat_share <= flat_share(drawing)

    def finest(img: np.ndarray, g: GridConfig) -> np.ndarray:
        data = encode(img, replace(base, grid=g)).data
        header, payload = bitstream.parse(data)
        assert decode(data).shape == img.shape
        return grid_decode.read_v5(header, bitstream.split_segments(header, payload))[0][0]

    assert finest(drawing, small).shape == (128, 384)
    assert np.count_nonzero(finest(drawing, small)) > 0
    assert np.count_nonzero(finest(drawing, replace(small, finest_flat_share=1.01))) == 0
    assert np.count_nonzero(finest(photo, small)) == 0
