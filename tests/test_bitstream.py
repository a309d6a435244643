import struct
import zlib

import numpy as np
import pytest

from pranc_codec import bitstream, decode
from pranc_codec.errors import FormatError, LimitError


def _recrc(body: bytes) -> bytes:
    """Replace the trailing CRC so that a tampered body passes the CRC check."""
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


def _patch(data: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return _recrc(bytes(b))


# byte offsets of the fixed header fields (FORMAT.md)
OFF_VERSION, OFF_FLAGS, OFF_W, OFF_H, OFF_C, OFF_SEED = 4, 5, 6, 8, 10, 11
OFF_LAYERS, OFF_WIDTH, OFF_OMEGA, OFF_KIND, OFF_DENS, OFF_CHUNK, OFF_EXP, OFF_DELTA, OFF_NG = \
    16, 17, 19, 23, 24, 26, 28, 30, 34


def test_header_round_trip(rgb_encoded):
    header, payload = bitstream.parse(rgb_encoded.data)
    assert (header.width, header.height, header.channels) == (64, 48, 3)
    assert header.spec.seed == 2023
    assert len(header.models) == header.spec.shape.hidden_layers + 1
    assert bitstream.pack(header, payload) == rgb_encoded.data
    assert len(rgb_encoded.data) == bitstream.header_size(len(header.models)) + len(payload)


def test_field_offsets_match_format_doc(rgb_encoded):
    d = rgb_encoded.data
    assert d[:4] == b"PRNC" and d[OFF_VERSION] == bitstream.VERSION
    assert struct.unpack_from("<HHB", d, OFF_W) == (64, 48, 3)
    assert struct.unpack_from("<I", d, OFF_SEED)[0] == 2023
    assert struct.unpack_from("<f", d, OFF_OMEGA)[0] == 30.0
    assert d[OFF_NG] == d[OFF_LAYERS] + 1


def test_every_truncation_is_refused(rgb_encoded):
    d = rgb_encoded.data
    for n in range(len(d)):
        with pytest.raises(FormatError):
            bitstream.parse(d[:n])


def test_every_single_bit_flip_is_refused(rgb_encoded):
    d = bytearray(rgb_encoded.data)
    for i in range(0, len(d), max(1, len(d) // 300)):
        for bit in (0, 5):
            e = bytearray(d)
            e[i] ^= 1 << bit
            with pytest.raises((FormatError, LimitError)):
                bitstream.parse(bytes(e))


def test_magic_and_version(rgb_encoded):
    with pytest.raises(FormatError, match="magic"):
        bitstream.parse(b"PNG!" + rgb_encoded.data[4:])
    with pytest.raises(FormatError, match="version 13"):
        bitstream.parse(_patch(rgb_encoded.data, OFF_VERSION, "<B", 13))


@pytest.mark.parametrize("field,fmt,value,exc", [
    (OFF_W, "<H", 0, LimitError),
    (OFF_W, "<H", 65535, LimitError),
    (OFF_C, "<B", 4, FormatError),
    (OFF_LAYERS, "<B", 200, LimitError),
    (OFF_WIDTH, "<H", 60000, LimitError),
    (OFF_OMEGA, "<f", float("nan"), FormatError),
    (OFF_OMEGA, "<f", 1e-45, FormatError),  # denormal: the init bound was inf and the picture NaN
    (OFF_OMEGA, "<f", 0.0, FormatError),
    (OFF_KIND, "<B", 9, FormatError),
    (OFF_CHUNK, "<H", 0, LimitError),
    (OFF_DELTA, "<f", -1.0, FormatError),
    (OFF_DELTA, "<f", float("inf"), FormatError),
    (OFF_FLAGS, "<B", 0x80, FormatError),
])
def test_tampered_fields_with_valid_crc(rgb_encoded, field, fmt, value, exc):
    with pytest.raises(exc):
        bitstream.parse(_patch(rgb_encoded.data, field, fmt, value))


def test_absurd_size_refused_before_allocating(rgb_encoded):
    d = _patch(rgb_encoded.data, OFF_W, "<H", 16000)
    d = _patch(d, OFF_H, "<H", 16000)
    with pytest.raises(LimitError, match="exceeds"):
        decode(d)


def test_network_too_big_for_limits(rgb_encoded):
    d = _patch(rgb_encoded.data, OFF_WIDTH, "<H", 1024)
    d = _patch(d, OFF_LAYERS, "<B", 8)
    d = bytearray(d)
    # keep the group count consistent so the limit check itself is reached
    with pytest.raises((LimitError, FormatError)):
        bitstream.parse(bytes(d))


def test_payload_length_mismatch(rgb_encoded):
    header, payload = bitstream.parse(rgb_encoded.data)
    n = bitstream._FIXED.size + bitstream._TILE.size + len(header.models) * bitstream._GROUP.size
    with pytest.raises(FormatError, match="payload length"):
        bitstream.parse(_patch(rgb_encoded.data, n, "<I", len(payload) + 1))


def test_valid_crc_over_garbage_payload_decodes_or_fails_cleanly(rgb_encoded):
    header, payload = bitstream.parse(rgb_encoded.data)
    rs = np.random.RandomState(0)
    for _ in range(5):
        junk = rs.randint(0, 256, len(payload)).astype(np.uint8).tobytes()
        out = decode(bitstream.pack(header, junk))
        assert out.shape == (48, 64, 3) and out.dtype == np.uint8


def test_tiny_image_with_huge_network_is_refused_up_front():
    """Found by bin/fuzz-decoder: 73 bytes claiming a 16x12 image rendered by a width-264
    network over a ternary basis of 1.8e8 values (5 s and 600 MB before the limit)."""
    import time

    found = bytes.fromhex(
        "50524e43020110000c0001e7070000000308010000f041015500000500010a5d5541041000b543020110000c"
        "00000001000001e7070000000308000000f0e070d3fbed630125a42ac9")
    body = found[:-4]
    data = body + struct.pack("<I", zlib.crc32(body))  # the fuzzer's "valid CRC over garbage"
    t = time.perf_counter()
    with pytest.raises(LimitError, match="network too large"):
        bitstream.parse(data)
    assert time.perf_counter() - t < 1.0
