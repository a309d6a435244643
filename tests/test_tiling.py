"""Tiles: exact cover of the image, tiled fitting and decoding agree."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from pranc_codec import bitstream, decode, encode
from pranc_codec.codec import plan, tile_grid
from pranc_codec.fit import TileData
from pranc_codec.metrics import psnr
from pranc_codec.subspace import Subspace, reconstruct
from pranc_codec.tiling import TileGrid

from .conftest import FAST, smooth_image


@pytest.mark.parametrize("h,w,side", [(512, 768, 384), (48, 64, 20), (7, 1, 3), (100, 100, 100), (1, 1, 1)])
def test_tiles_cover_the_image_exactly_once(h, w, side):
    g = TileGrid(h, w, side)
    cover = np.zeros((h, w), dtype=int)
    for y0, y1, x0, x1 in g.boxes():
        assert 0 < y1 - y0 <= side and 0 < x1 - x0 <= side
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all() and len(g.boxes()) == g.count


def test_kodak_grid_is_four_tiles():
    assert TileGrid(512, 768, 384).boxes() == [(0, 256, 0, 384), (0, 256, 384, 768),
                                                (256, 512, 0, 384), (256, 512, 384, 768)]


def test_tile_data_holds_each_tiles_pixels():
    img = smooth_image(10, 7, 3)
    data = TileData.from_image(img, TileGrid(10, 7, 4))
    assert data.counts.tolist() == [9, 12, 9, 12, 12, 16]  # 3x2 tiles of 3/3/4 rows x 3/4 cols
    np.testing.assert_allclose(data.target[1, :12].numpy(), img[0:3, 3:7].reshape(-1, 3) / 255.0, rtol=1e-6)
    xy, y = data.sample(500, torch.Generator().manual_seed(0))
    assert xy.shape == (6, 500, 2) and y.shape == (6, 500, 3)
    # samples of the smallest tile come from its 9 real pixels only, never from the padding
    real = {tuple(r) for r in data.coords[0, :9].tolist()}
    assert {tuple(r) for r in xy[0].tolist()} == real


def test_tiled_reconstruction_matches_fitting_path():
    cfg = replace(FAST, network=replace(FAST.network, tile_side=24), basis=replace(FAST.basis, expansion=2.0))
    spec = plan(cfg, 48, 64, 3)
    assert spec.tiles == 6
    alpha = np.random.RandomState(0).randn(spec.num_coefs)
    full = Subspace(spec)(torch.from_numpy(alpha).float())
    chunked = reconstruct(spec, alpha, max_entries=500)
    for a, b in zip(full, chunked):
        assert a.shape == b.shape == (6, a.shape[1])
        assert torch.allclose(a.double(), b, atol=1e-5)
    # tiles differ only by their coefficients
    assert not torch.equal(chunked[1][0], chunked[1][1])


def test_tiled_round_trip():
    img = smooth_image(48, 64, 3, seed=3)
    cfg = replace(FAST, network=replace(FAST.network, tile_side=32))
    res = encode(img, cfg)
    h, _ = bitstream.parse(res.data)
    assert h.tile_side == 32 and h.spec.tiles == 4 == tile_grid(cfg, 48, 64).count
    out = decode(res.data)
    assert out.shape == img.shape and psnr(img, out) == res.stats.psnr > 18
