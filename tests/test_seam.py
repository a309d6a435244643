"""The seam filter between a composite file's strips (seam.py; format version 10's flags)."""
import zlib

import numpy as np
import pytest

from pranc_codec import bitstream, decode, seam
from pranc_codec.errors import FormatError

from .test_composite import _base, _region_file


def picture(left: int, right: int, width: int = 16, x: int = 8, height: int = 3) -> np.ndarray:
    """(height, width, 1) uint8: ``left`` up to column x, ``right`` from it."""
    img = np.full((height, width, 1), left, np.uint8)
    img[:, x:] = right
    return img


def test_a_step_across_the_seam_is_tapered_in_integers():
    seams = [(8, 0, 3)]
    # D = 2 x 40 = 80; strength 1: c0 = floor((3 x 80 + 8) / 16) = 15
    assert picture(100, 140)[0, :, 0].tolist()[6:10] == [100, 100, 140, 140]
    assert seam.apply(picture(100, 140), seams, 1)[0, :, 0].tolist()[6:10] == [100, 115, 125, 140]
    # strength 2: c0 = floor((3 x 80 x 2 + 16) / 32) = 15, c1 = floor((3 x 80 + 16) / 32) = 8
    assert seam.apply(picture(100, 140), seams, 2)[0, :, 0].tolist()[5:11] == [100, 108, 115, 125, 132, 140]
    # a step down; rounding is floor: D = -80, c0 = floor(-232 / 16) = -15
    assert seam.apply(picture(140, 100), seams, 1)[0, :, 0].tolist()[6:10] == [140, 125, 115, 100]
    # strength 0 changes nothing; a clamp at the ends of the range
    assert np.array_equal(seam.apply(picture(100, 140), seams, 0), picture(100, 140))
    assert seam.apply(picture(0, 255), seams, 3)[0, :, 0].min() == 0


def test_a_slope_through_the_seam_and_the_rest_of_the_picture_are_left_alone():
    ramp = np.tile(np.arange(0, 160, 10, dtype=np.uint8)[None, :, None], (4, 1, 3))  # D = 0 at every seam
    assert np.array_equal(seam.apply(ramp, [(8, 0, 4)], 3), ramp)
    img = picture(100, 140, height=6)
    out = seam.apply(img, [(8, 2, 4)], 3)  # only the rows the two regions share
    assert np.array_equal(out[:2], img[:2]) and np.array_equal(out[4:], img[4:])
    assert np.array_equal(out[:, :5], img[:, :5]) and np.array_equal(out[:, 11:], img[:, 11:])
    # a seam one column from the edge reads the edge column for the one beyond it (c = 15, 10, 5) and writes
    # nothing outside
    edge = seam.apply(picture(100, 140, width=4, x=1), [(1, 0, 3)], 3)
    assert edge.shape == (3, 4, 1) and edge[0, :, 0].tolist() == [115, 125, 130, 135]


def test_seams_are_where_one_region_ends_and_another_starts():
    boxes = [(0, 0, 10, 20), (10, 5, 10, 10), (20, 0, 5, 20), (30, 0, 5, 5)]
    assert seam.vertical_seams(boxes) == [(10, 5, 15), (20, 5, 15)]
    assert seam.vertical_seams([(0, 0, 10, 10), (10, 10, 10, 10)]) == []  # corners touching: no seam


def test_the_strength_chosen_is_the_one_nearest_the_original():
    rng = np.random.default_rng(0)
    original = np.tile(np.linspace(60, 200, 64).astype(np.uint8)[None, :, None], (32, 1, 3))
    decoded = original.astype(np.int64) + rng.integers(-2, 3, original.shape)
    decoded[:, 28:32] += 6  # the left strip's last columns fitted too bright, the right's too dark
    decoded[:, 32:36] -= 6
    decoded = np.clip(decoded, 0, 255).astype(np.uint8)
    seams = [(32, 0, 32)]
    errors = [int(((seam.apply(decoded, seams, s).astype(int) - original) ** 2).sum()) for s in range(4)]
    assert seam.choose(decoded, original, seams) == int(np.argmin(errors)) > 0
    assert errors[seam.choose(decoded, original, seams)] < errors[0]
    assert seam.choose(decoded, original, []) == 0


def test_a_composite_header_carries_the_strength_and_refuses_other_flags():
    region = _region_file()  # 16 x 8
    regions = [(0, 0, region), (16, 0, region), (0, 16, region)]  # a seam at column 16 over rows 0-7
    plain = bitstream.pack_composite(32, 24, 3, _base(), regions)
    assert bitstream.parse(plain)[0].seam == 0
    pasted = decode(plain)
    for strength in (1, 2, 3):
        data = bitstream.pack_composite(32, 24, 3, _base(), regions, strength)
        assert bitstream.parse(data)[0].seam == strength
        assert np.array_equal(decode(data), seam.apply(pasted, [(16, 0, 8)], strength))
    body = bytearray(plain[:-4])
    body[5] = 0x04  # a flag no decoder knows
    with pytest.raises(FormatError, match="unknown header flags 0x04"):
        bitstream.parse(bytes(body) + zlib.crc32(bytes(body)).to_bytes(4, "little"))
    with pytest.raises(ValueError):
        bitstream.pack_composite(32, 24, 3, _base(), regions, 4)
