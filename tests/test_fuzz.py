"""Property-based fuzzing of the decoder: any mutation of a valid file either
decodes to an image or raises a PrancError (never another exception)."""
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pranc_codec import PrancError, bitstream, decode

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _decode_or_clean_error(data: bytes) -> None:
    try:
        out = decode(data)
    except PrancError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert out.dtype == np.uint8 and out.ndim == 3


@SETTINGS
@given(cut=st.integers(min_value=0, max_value=10_000))
def test_truncation(rgb_encoded, cut):
    _decode_or_clean_error(rgb_encoded.data[: cut % len(rgb_encoded.data)])


def _edit_and_cut(data: bytes, edits: list[tuple[int, int]], fix_crc: bool, cut: int) -> None:
    """Overwrite bytes (CRC excluded; optionally re-sealed), then decode the edited file and a prefix of it."""
    b = bytearray(data)
    for pos, val in edits:
        b[pos % (len(b) - 4)] = val
    if fix_crc:
        b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
    _decode_or_clean_error(bytes(b))
    _decode_or_clean_error(bytes(b[: cut % len(b)]))


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
       fix_crc=st.booleans())
def test_byte_edits_with_and_without_valid_crc(rgb_encoded, edits, fix_crc):
    b = bytearray(rgb_encoded.data)
    for pos, val in edits:
        b[pos % (len(b) - 4)] = val
    if fix_crc:
        b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
    _decode_or_clean_error(bytes(b))


@SETTINGS
@given(junk=st.binary(min_size=0, max_size=400))
def test_valid_header_with_arbitrary_payload(rgb_encoded, junk):
    from pranc_codec import bitstream

    header, _ = bitstream.parse(rgb_encoded.data)
    _decode_or_clean_error(bitstream.pack(header, junk))


@pytest.fixture(scope="module")
def grid_file() -> bytes:
    """A small latent-grid file (the current format version)."""
    from pranc_codec import CodecConfig, encode
    from pranc_codec.config import apply_overrides

    img = (np.random.RandomState(1).rand(20, 28, 3) * 255).astype(np.uint8)
    return encode(img, apply_overrides(CodecConfig(), ["rate.bpp=4", "grid.steps=60", "grid.batch_pixels=256"])).data


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
       fix_crc=st.booleans(), cut=st.integers(0, 10_000))
def test_grid_file_edits_and_truncations(grid_file, edits, fix_crc, cut):
    assert grid_file[4] in (5, bitstream.GRID_VERSION)
    _edit_and_cut(grid_file, edits, fix_crc, cut)


@pytest.mark.parametrize("name,version", [("golden_v4.prc", 4), ("golden_v10.prc", bitstream.COMPOSITE_VERSION),
                                          ("golden_v11.prc", bitstream.ALPHA_VERSION),
                                          ("golden_v12.prc", bitstream.METADATA_VERSION)])
@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
       fix_crc=st.booleans(), cut=st.integers(0, 10_000))
def test_golden_file_edits_and_truncations(name, version, edits, fix_crc, cut):
    """The older grid layout, still read, gets the same guarantees; so do a composite file (version 10), its
    regions' places and lengths, a file with transparency (version 11) and one with metadata (version 12), and
    the files nested in them."""
    from pathlib import Path

    data = (Path(__file__).parent / "data" / name).read_bytes()
    assert data[4] == version
    _edit_and_cut(data, edits, fix_crc, cut)


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
       fix_crc=st.booleans(), cut=st.integers(0, 10_000))
def test_lossless_file_edits_and_truncations(edits, fix_crc, cut):
    """A lossless file (version 9): libwebp's refusals of an edited payload are clean errors too."""
    from pranc_codec import lossless
    from pranc_codec.config import LosslessConfig

    from .test_lossless import screen

    data = lossless.encode(screen(), LosslessConfig())
    assert data[4] == bitstream.LOSSLESS_VERSION
    _edit_and_cut(data, edits, fix_crc, cut)

