"""The ``.prc`` container: header, payload and CRC. FORMAT.md is the specification.

All integers are little-endian. ``parse`` checks, in order: minimum length,
magic, version, CRC32, then every field against the limits below, all before
anything proportional to a header field is allocated.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from itertools import accumulate

from .config import BasisKind
from .basis import EXPANSION_ONE, SubspaceSpec
from .entropy import COMPACT_BOUNDS, COMPACT_DECAYS, MAX_BOUND, LaplaceModel, compact_indexes
from .errors import FormatError, LimitError
from .metadata import KINDS as METADATA_KINDS
from .metadata import Metadata
from .shapes import HEADER_BITS as FILTER_HEADER_BITS
from .shapes import MAX_BUCKETS, MAX_SHIFT, PASSES, TAPS, GridShape, SirenShape, num_coefs
from .tiling import TileGrid

MAGIC = b"PRNC"
VERSION = 3  # SIREN files (net_kind 0)
GRID_VERSION = 8  # latent-grid files (net_kind 1): their own layout after byte 11; 5 adds context coding
# 6: version 5 plus a loop filter; 7: the bucket models in two bytes each, the filter flagged; 8: every model
# as Exp-Golomb codes of its table indexes, varint segment lengths (the one written)
GRID_VERSIONS = (4, 5, 6, 7, 8)
LOSSLESS_VERSION = 9  # a WebP lossless code of the picture (or of its palette) instead of a network (lossless.py)
COMPOSITE_VERSION = 10  # a version-9 file of the whole picture with version-8 files pasted over regions of it
ALPHA_VERSION = 11  # a picture with transparency: a file of its colour and a one-channel version-9 file of its alpha
METADATA_VERSION = 12  # a picture's ICC profile, EXIF and XMP, and a file of its pixels (metadata.py)
# 1: no per-group step shifts, no tiles; 3: adds the orthogonal basis kind
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)

# Limits enforced on every header (documented in FORMAT.md and docs/guarantees.md).
MAX_SIDE = 16384
MIN_OMEGA0 = 1e-3  # a SIREN's frequency factor (30 as the encoder writes it)
MAX_PIXELS = 8192 * 8192
MAX_LAYERS = 8
MAX_WIDTH = 1024
MAX_CHUNK = 4096
MAX_COEFS = 1 << 22
MAX_BASIS_ENTRIES = 1 << 28
MAX_RENDER_MACS = 1 << 40  # pixels x network parameters
# A grid file's: its decoder runs a float32 pass and, where a pixel lies near a rounding boundary, a bounded
# float64 one (grid_decode.mlp64_bounded) of three products; a crafted file can put every pixel there, about 0.34
# ns a multiply-add in all, so 2^40 would be six minutes on one core, 2^38 a minute and a half. The encoder's
# networks (1,411 parameters at most) need 9.5e10 (2^36.5) at the pixel limit; a setting past it is refused up front.
MAX_GRID_RENDER_MACS = 1 << 38
MAX_TILES = 4096
MAX_BASIS_MACS = 1 << 34  # basis entries x tiles
# Basis work must also be in proportion to the image: a real encoder never needs
# more than 2^12 basis multiply-adds per pixel (Kodak at 1 bpp: ~2^7), so a tiny
# picture claiming a huge network (a 73-byte file found by bin/fuzz-decoder
# asked for 1.8e8 basis values, 5 s and 600 MB) is refused up front.
BASIS_MACS_PER_PIXEL = 1 << 12
MIN_BASIS_MACS = 1 << 24
# A whole file is read before its header is checked, so its size is bounded first. The largest
# picture allowed holds 89.5 M latents; even at 6 bytes each (every one an escape, entropy.py) that is 537 MB.
MAX_FILE_BYTES = 1 << 30

# magic, version, flags, width, height, channels, seed, net_kind, hidden_layers,
# net_width, omega0, basis_kind, density, chunk_size, expansion, delta, n_groups
_FIXED = struct.Struct("<4sBBHHBIBBHfBHHHfB")
_TILE = struct.Struct("<H")  # tile_side (version 2)
_GROUP = struct.Struct("<HHb")  # decay, bound, step shift (version 2)
_GROUP_V1 = struct.Struct("<HH")  # decay, bound
_LEN = struct.Struct("<I")
_CRC = struct.Struct("<I")

FLAG_OFFSET = 0x01
NET_SIREN = 0
NET_GRID = 1

# Version 4 (latent grid): magic, version, flags, width, height, channels, net_kind,
# levels, hidden, hidden_layers; then per level (decay, bound), per MLP layer
# (step, decay, bound); then the payload as segments, each a u32 length and a rANS stream.
_GRID_FIXED = struct.Struct("<4sBBHHBBBHB")
_LEVEL = struct.Struct("<HH")  # also one bucket's model in versions 5 and 6
_BUCKETS = struct.Struct("<B")  # version 5: buckets of one (level, pass)
_LAYER = struct.Struct("<fHH")
_FILTER = struct.Struct("<BBBHH")  # version 6: loop filter taps, symmetric, shift, its coefficients' model
_COMPACT = struct.Struct("<BB")  # version 7: a bucket model as indexes into entropy.COMPACT_DECAYS, COMPACT_BOUNDS
GRID_FLAG_FILTER = 0x01  # versions 7 and 8: the loop filter record is present
# Version 9 (lossless): magic, version, flags, width, height, channels, payload kind; the payload runs to the CRC
_LOSSLESS_FIXED = struct.Struct("<4sBBHHBB")
LOSSLESS_WEBP = 0  # payload kind: a WebP lossless (VP8L) bitstream
LOSSLESS_OVERHEAD = _LOSSLESS_FIXED.size + _CRC.size  # bytes of a lossless file besides its payload
LOSSLESS_KINDS = (LOSSLESS_WEBP,)
LOSSLESS_FLAG_PALETTE = 0x01  # the payload holds the picture reduced to a palette, not its exact pixels
# Version 10 (composite): magic, version, flags, width, height, channels, region count; then the base (a varint
# length and a whole version-9 file), then per region its x and y and a varint length and a whole version-8 file
_COMPOSITE_FIXED = struct.Struct("<4sBBHHBB")
SEAM_FLAGS = 0x03  # a composite's flags: the seam filter's strength (0: none; seam.py); the other bits are 0
_REGION_AT = struct.Struct("<HH")
MAX_REGIONS = 8
# Version 11 (alpha): magic, version, flags, width, height, channels (2: grey and alpha, 4: RGB and alpha); then the
# colour (a varint length and a whole file of version 3, 8, 9 or 10 of channels - 1), then the alpha (a varint
# length and a whole one-channel version-9 file)
_ALPHA_FIXED = struct.Struct("<4sBBHHB")
ALPHA_COLOUR_VERSIONS = (VERSION, GRID_VERSION, LOSSLESS_VERSION, COMPOSITE_VERSION)  # what the encoder writes

_METADATA_FIXED = struct.Struct("<4sBBHHB")
METADATA_FLAG_DEFLATE = 0x01  # the metadata block is a zlib stream (the encoder's choice where it is smaller)
METADATA_PICTURE_VERSIONS = ALPHA_COLOUR_VERSIONS + (ALPHA_VERSION,)
MAX_METADATA_BYTES = 1 << 24  # the metadata block's records, inflated (an EXIF segment holds at most 64 kB)
# Version 8 (FORMAT.md "Version 8"): MLP steps as f32, the filter record without its model, then every entropy
# model in one bit string of signed Exp-Golomb codes (as H.264 codes its headers), then varint segment lengths.
_STEP = struct.Struct("<f")
_FILTER_V8 = struct.Struct("<BBB")  # taps, symmetric, shift
BUCKET_COUNT_BITS = 4  # B - 1 of each (level, pass), B in 1..MAX_BUCKETS
BOUND_ORDER = 1  # Exp-Golomb orders of a model's bound-index and decay-index changes: the best on Kodak files
DECAY_ORDER = 3
MAX_CODE_ZEROS = 12  # an index change within +-255 never needs more; more is a corrupt header
MAX_VARINT_BYTES = 5
SEGMENT_LENGTH_BITS = 24  # a full segment (2^18 symbols, 30 kB to 1 MB) has a three-byte length
# header bits of one context bucket's model as the encoder prices it: the mean of version 8's codes on Kodak files
# (9.9 to 10.3 bits with the bucket counts; a version-7 record was 16)
MODEL_BITS = 10
assert 8 * _FILTER.size == FILTER_HEADER_BITS
MAX_LEVELS = 12
MAX_HIDDEN = 256
# The symbols (latents, then MLP weights) are rANS-coded in segments of at most
# this many, so decoding holds the coder's Python lists for one segment at a
# time (~20 MB), not for all 1.33 x pixels latents (~3 GB at 8192^2).
SEGMENT_SYMBOLS = 1 << 18


@dataclass(frozen=True)
class Header:
    """Decoded header fields."""

    width: int
    height: int
    channels: int
    spec: SubspaceSpec
    tile_side: int  # tiles are at most this many pixels a side (tiling.py)
    delta: float  # quantization step (float32 value)
    models: tuple[LaplaceModel, ...]
    shifts: tuple[int, ...]  # per-group step shift, quarter octaves (quantization.py)

    @property
    def num_pixels(self) -> int:
        return self.width * self.height

    @property
    def grid(self) -> TileGrid:
        return TileGrid(self.height, self.width, self.tile_side)


@dataclass(frozen=True)
class GridHeader:
    """Decoded header of a latent-grid file (version 4 to 8)."""

    width: int
    height: int
    channels: int
    shape: GridShape
    # version 4: one model per latent level, finest first; version 5: the buckets'
    # models of every (level, pass), levels finest first, passes in order
    level_models: tuple[LaplaceModel, ...]
    mlp_steps: tuple[float, ...]  # quantization step of each MLP layer (float32 values)
    mlp_models: tuple[LaplaceModel, ...]
    buckets: tuple[int, ...] = ()  # version 5: bucket count of every (level, pass), same order; () in version 4
    # versions 6 and 7 (with a loop filter): its taps (0: none), symmetry, shift and model
    filter_taps: int = 0
    filter_symmetric: bool = False
    filter_shift: int = 0
    filter_model: LaplaceModel | None = None
    compact: bool = False  # version 7: the bucket models as table indexes (entropy.fit_compact_model)
    packed: bool = False  # version 8: every model (MLP and filter too) compact, as Exp-Golomb codes

    @property
    def version(self) -> int:
        return 8 if self.packed else 7 if self.compact else 6 if self.filter_taps else 5 if self.buckets else 4

    @property
    def filter_coefs(self) -> int:
        """Coefficients of the loop filter (0 without one)."""
        return num_coefs(self.channels, self.filter_taps, self.filter_symmetric)

    @property
    def num_pixels(self) -> int:
        return self.width * self.height

    def group_sizes(self) -> list[int]:
        """Symbols per entropy-model group: the latents of each level (finest first), each MLP layer, then
        the loop filter's coefficients (versions 6 and 7)."""
        return ([h * w for h, w in self.shape.level_dims(self.height, self.width)] + self.shape.layer_sizes()
                + ([self.filter_coefs] if self.filter_taps else []))

    def segment_bounds(self) -> list[int]:
        """Cut points of the symbol sequence into payload segments (as even as possible)."""
        return segment_bounds(sum(self.group_sizes()))


@dataclass(frozen=True)
class LosslessHeader:
    """Decoded header of a lossless file (version 9): the picture's size and the payload's kind."""

    width: int
    height: int
    channels: int
    kind: int  # LOSSLESS_WEBP
    palette: bool = False  # the pixels are the picture's reduced to a palette (informative: decoding is the same)

    @property
    def num_pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class Region:
    """One region of a composite file: a version-8 file decoded and pasted with its top-left pixel at (x, y)."""

    x: int
    y: int
    header: GridHeader
    payload: bytes


@dataclass(frozen=True)
class CompositeHeader:
    """Decoded header of a composite file (version 10): the base, a version-9 file of the whole picture, and the
    regions pasted over it, each already parsed and checked (their CRCs too)."""

    width: int
    height: int
    channels: int
    base: LosslessHeader
    base_payload: bytes
    regions: tuple[Region, ...]
    seam: int = 0  # the seam filter's strength between regions side by side (seam.py; the flags' low bits)

    @property
    def num_pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class AlphaHeader:
    """Decoded header of a file with transparency (version 11): its colour file and its alpha file, each already
    parsed and checked (their CRCs too). ``channels`` is the picture's, alpha included (2 or 4)."""

    width: int
    height: int
    channels: int
    colour: "Header | GridHeader | LosslessHeader | CompositeHeader"
    colour_payload: bytes
    alpha: LosslessHeader
    alpha_payload: bytes

    @property
    def num_pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class MetadataHeader:
    """Decoded header of a file with metadata (version 12): the metadata, and the picture's file, already parsed
    and checked (its CRC too)."""

    width: int
    height: int
    channels: int
    metadata: Metadata
    picture: "Header | GridHeader | LosslessHeader | CompositeHeader | AlphaHeader"
    picture_payload: bytes

    @property
    def num_pixels(self) -> int:
        return self.width * self.height


def segment_bounds(total: int) -> list[int]:
    """0 = b_0 < ... < b_n = total with n = ceil(total / SEGMENT_SYMBOLS) and even segments.

    Even cuts keep every segment at >= 2 symbols (total >= 5 for any valid
    header): CompressAI's rANS encoder frees memory twice on a 1-symbol stream.
    """
    n = max(1, -(-total // SEGMENT_SYMBOLS))
    return [i * total // n for i in range(n + 1)]


def packed_header_size(shape: GridShape) -> int:
    """Bytes of a version-8 container that do not depend on the coded data: the fixed fields, the MLP steps and
    the CRC (not the filter record, the model codes with their bucket counts, or the segment lengths)."""
    return _GRID_FIXED.size + (shape.hidden_layers + 1) * _STEP.size + _CRC.size


def packed_overhead_bits(shape: GridShape, segments: int) -> int:
    """Bits of a version-8 file the encoder budgets before it has coded anything: :func:`packed_header_size`,
    the bucket counts, and the lengths of all segments but the last (a full segment's is a three-byte varint).
    The models' codes are priced with the latents' rate (MODEL_BITS a model), the filter with the filter."""
    return (8 * packed_header_size(shape) + BUCKET_COUNT_BITS * shape.levels * PASSES
            + SEGMENT_LENGTH_BITS * (segments - 1))


class _BitWriter:
    """Bits, most significant first, for version 8's model codes."""

    def __init__(self) -> None:
        self.value, self.length = 0, 0

    def put(self, value: int, n: int) -> None:
        self.value = (self.value << n) | value
        self.length += n

    def signed(self, v: int, k: int) -> None:
        """Signed Exp-Golomb code of order k: zigzag (0, 1, -1, 2, .. -> 0, 1, 2, 3, ..), then Elias gamma of
        (u >> k) + 1 and the low k bits."""
        u = 2 * v - 1 if v > 0 else -2 * v
        q = (u >> k) + 1
        self.put(0, q.bit_length() - 1)
        self.put(q, q.bit_length())
        self.put(u & ((1 << k) - 1), k)

    def to_bytes(self) -> bytes:
        pad = -self.length % 8  # zero bits to a whole byte
        return (self.value << pad).to_bytes((self.length + pad) // 8, "big")


class _BitReader:
    """Reads :class:`_BitWriter`'s codes from ``data[pos:end]``; running past ``end`` is a FormatError."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.bit, self.end = data, 8 * pos, 8 * end

    def get(self, n: int) -> int:
        _check(self.bit + n <= self.end, "truncated .prc file (header incomplete)")
        v = 0
        for _ in range(n):
            v = (v << 1) | (self.data[self.bit >> 3] >> (7 - (self.bit & 7))) & 1
            self.bit += 1
        return v

    def signed(self, k: int) -> int:
        zeros = 0
        while not self.get(1):
            zeros += 1
            _check(zeros <= MAX_CODE_ZEROS, "invalid entropy model code in the header")
        u = ((((1 << zeros) | self.get(zeros)) - 1) << k) | self.get(k)
        return (u + 1) // 2 if u & 1 else -(u // 2)

    def align(self) -> int:
        """Skip the zero bits to the next byte; returns its position."""
        pad = -self.bit % 8
        _check(self.get(pad) == 0, "nonzero padding after the entropy models")
        return self.bit // 8


def _write_models(header: GridHeader) -> _BitWriter:
    """Version 8's model codes: every (level, pass)'s bucket count and models, the MLP layers' models, the
    filter's model; each model as the change of its bound index, then (bound > 0) of its decay index."""
    w = _BitWriter()
    prev = [0, 0]  # decay index, bound index of the last model coded (its decay: the last with a bound)

    def model(m: LaplaceModel) -> None:
        i, j = compact_indexes(m)
        w.signed(j - prev[1], BOUND_ORDER)
        prev[1] = j
        if j:  # a zero bound leaves one symbol, whatever the decay: none is coded
            w.signed(i - prev[0], DECAY_ORDER)
            prev[0] = i

    models = iter(header.level_models)
    for n in header.buckets:
        w.put(n - 1, BUCKET_COUNT_BITS)
        for _ in range(n):
            model(next(models))
    for m in header.mlp_models + ((header.filter_model,) if header.filter_taps else ()):
        model(m)
    return w


def _varint(n: int) -> bytes:
    """LEB128: seven bits a byte, least significant first, the top bit set on every byte but the last."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    n = 0
    for k in range(MAX_VARINT_BYTES):
        _check(pos + k < len(data), "truncated .prc payload (segment length missing)")
        n |= (data[pos + k] & 0x7F) << (7 * k)
        if not data[pos + k] & 0x80:
            return n, pos + k + 1
    raise FormatError("invalid segment length (varint too long)")


def _pack_v8(header: GridHeader, segments: list[bytes]) -> bytes:
    s = header.shape
    flags = GRID_FLAG_FILTER if header.filter_taps else 0
    body = (_GRID_FIXED.pack(MAGIC, 8, flags, header.width, header.height, header.channels, NET_GRID, s.levels,
                             s.hidden, s.hidden_layers)
            + b"".join(_STEP.pack(st) for st in header.mlp_steps)
            + (_FILTER_V8.pack(header.filter_taps, int(header.filter_symmetric), header.filter_shift)
               if header.filter_taps else b"")
            + _write_models(header).to_bytes()
            + b"".join(_varint(len(seg)) for seg in segments[:-1]) + b"".join(segments))
    return body + _CRC.pack(zlib.crc32(body))


def pack_grid(header: GridHeader, segments: list[bytes]) -> bytes:
    """Serialize a latent-grid file (the version ``header.version``): header, length-prefixed segments, CRC32."""
    if header.packed:
        return _pack_v8(header, segments)
    s = header.shape
    flags = GRID_FLAG_FILTER if header.compact and header.filter_taps else 0
    fixed = _GRID_FIXED.pack(MAGIC, header.version, flags, header.width, header.height, header.channels, NET_GRID,
                             s.levels, s.hidden, s.hidden_layers)
    if header.buckets:
        models = iter(header.level_models)

        def record(m: LaplaceModel) -> bytes:
            return _COMPACT.pack(*compact_indexes(m)) if header.compact else _LEVEL.pack(m.decay, m.bound)

        levels = b"".join(_BUCKETS.pack(n) + b"".join(record(m) for m in (next(models) for _ in range(n)))
                          for n in header.buckets)
    else:
        levels = b"".join(_LEVEL.pack(m.decay, m.bound) for m in header.level_models)
    layers = b"".join(_LAYER.pack(st, m.decay, m.bound) for st, m in zip(header.mlp_steps, header.mlp_models))
    if header.filter_taps:
        m = header.filter_model
        layers += _FILTER.pack(header.filter_taps, int(header.filter_symmetric), header.filter_shift, m.decay, m.bound)
    payload = b"".join(_LEN.pack(len(seg)) + seg for seg in segments)
    body = fixed + levels + layers + _LEN.pack(len(payload)) + payload
    return body + _CRC.pack(zlib.crc32(body))


def split_segments(header: GridHeader, payload: bytes) -> list[bytes]:
    """The payload's segments, as many as ``header.segment_bounds()`` defines; checks every length."""
    count = len(header.segment_bounds()) - 1
    if header.packed:  # version 8: the lengths of all but the last, then the segments, the last to the end
        lengths, pos = [], 0
        for _ in range(count - 1):
            n, pos = _read_varint(payload, pos)
            lengths.append(n)
        _check(sum(lengths) <= len(payload) - pos, "truncated .prc payload (segment runs past the end)")
        cuts = [*accumulate(lengths, initial=pos), len(payload)]
        return [payload[a:b] for a, b in zip(cuts, cuts[1:])]
    out, pos = [], 0
    for _ in range(count):
        _check(pos + _LEN.size <= len(payload), "truncated .prc payload (segment length missing)")
        (n,) = _LEN.unpack_from(payload, pos)
        pos += _LEN.size
        _check(pos + n <= len(payload), "truncated .prc payload (segment runs past the end)")
        out.append(payload[pos: pos + n])
        pos += n
    _check(pos == len(payload), f"{len(payload) - pos} stray bytes after the last payload segment")
    return out


def _check_image(width: int, height: int, channels: int) -> None:
    """The picture's fields, common to every layout."""
    _check(1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE,
           f"image size {width}x{height} outside 1..{MAX_SIDE}", LimitError)
    _check(width * height <= MAX_PIXELS, f"image of {width}x{height} pixels exceeds {MAX_PIXELS} pixels", LimitError)
    _check(channels in (1, 3), f"unsupported channel count {channels}")


def _check_step(step: float) -> None:
    _check(math.isfinite(step) and 0 < step <= 1e6, f"invalid MLP quantization step {step}")


def _filter_fields(taps: int, symmetric: int, shift: int) -> dict:
    """A loop filter record's fields, checked (versions 6 to 8)."""
    _check(taps in TAPS, f"loop filter taps {taps} not one of {TAPS}")
    _check(symmetric in (0, 1), f"loop filter symmetry flag {symmetric} is not 0 or 1")
    _check(1 <= shift <= MAX_SHIFT, f"loop filter shift {shift} outside 1..{MAX_SHIFT}")
    return dict(filter_taps=taps, filter_symmetric=bool(symmetric), filter_shift=shift)


def _parse_grid(data: bytes, version: int) -> tuple[GridHeader, bytes]:
    """Fields of a version-4 to 8 file (the CRC is already checked)."""
    _check(len(data) >= _GRID_FIXED.size + _LEN.size + _CRC.size, "truncated .prc file (header incomplete)")
    (_, _, flags, width, height, channels, net_kind, levels, hidden, hidden_layers) = _GRID_FIXED.unpack_from(data, 0)
    _check(flags & ~(GRID_FLAG_FILTER if version >= 7 else 0) == 0, f"unknown header flags 0x{flags:02x}")
    compact = version == 7
    has_filter = version == 6 or bool(flags & GRID_FLAG_FILTER)
    _check_image(width, height, channels)
    _check(net_kind == NET_GRID,
           f"network kind {net_kind} in a version-{version} file (expected {NET_GRID}, latent grid)")
    _check(1 <= levels <= MAX_LEVELS, f"latent levels {levels} outside 1..{MAX_LEVELS}", LimitError)
    _check(1 <= hidden <= MAX_HIDDEN, f"MLP width {hidden} outside 1..{MAX_HIDDEN}", LimitError)
    _check(1 <= hidden_layers <= MAX_LAYERS, f"MLP layers {hidden_layers} outside 1..{MAX_LAYERS}", LimitError)
    shape = GridShape(levels=levels, hidden=hidden, hidden_layers=hidden_layers, channels=channels)
    _check(shape.num_params * width * height <= MAX_GRID_RENDER_MACS,
           "network too large for the image size (rendering cost over the limit)", LimitError)
    if version == 8:
        return _parse_v8(data, shape, width, height, channels, bool(flags & GRID_FLAG_FILTER))
    pos = _GRID_FIXED.size
    n_layers = hidden_layers + 1
    tail = n_layers * _LAYER.size + (_FILTER.size if has_filter else 0) + _LEN.size + _CRC.size
    level_models, steps, mlp_models, buckets = [], [], [], []

    def model() -> None:
        nonlocal pos
        if compact:
            _check(len(data) >= pos + _COMPACT.size + tail, "truncated .prc file (header incomplete)")
            i, j = _COMPACT.unpack_from(data, pos)
            pos += _COMPACT.size
            _check(i < len(COMPACT_DECAYS) and j < len(COMPACT_BOUNDS),
                   f"entropy model index out of range (decay index {i}, bound index {j})")
            level_models.append(LaplaceModel(COMPACT_DECAYS[i], COMPACT_BOUNDS[j]))
            return
        _check(len(data) >= pos + _LEVEL.size + tail, "truncated .prc file (header incomplete)")
        decay, bound = _LEVEL.unpack_from(data, pos)
        pos += _LEVEL.size
        _check(1 <= decay <= 65535 and bound <= MAX_BOUND, f"entropy model out of range (decay={decay}, bound={bound})")
        level_models.append(LaplaceModel(decay, bound))

    contexts = version >= 5
    for _ in range(levels * PASSES if contexts else levels):
        if contexts:
            _check(len(data) >= pos + _BUCKETS.size + tail, "truncated .prc file (header incomplete)")
            (n,) = _BUCKETS.unpack_from(data, pos)
            pos += _BUCKETS.size
            _check(1 <= n <= MAX_BUCKETS, f"context bucket count {n} outside 1..{MAX_BUCKETS}")
            buckets.append(n)
        for _ in range(buckets[-1] if contexts else 1):
            model()
    _check(len(data) >= pos + tail, "truncated .prc file (header incomplete)")
    for _ in range(n_layers):
        step, decay, bound = _LAYER.unpack_from(data, pos)
        pos += _LAYER.size
        _check_step(step)
        _check(1 <= decay <= 65535 and bound <= MAX_BOUND, f"entropy model out of range (decay={decay}, bound={bound})")
        steps.append(step)
        mlp_models.append(LaplaceModel(decay, bound))
    flt: dict = {}
    if has_filter:
        taps, symmetric, shift, decay, bound = _FILTER.unpack_from(data, pos)
        pos += _FILTER.size
        flt = _filter_fields(taps, symmetric, shift)
        _check(1 <= decay <= 65535 and bound <= MAX_BOUND, f"entropy model out of range (decay={decay}, bound={bound})")
        flt["filter_model"] = LaplaceModel(decay, bound)
    (payload_len,) = _LEN.unpack_from(data, pos)
    pos += _LEN.size
    _check(pos + payload_len + _CRC.size == len(data),
           f"payload length {payload_len} does not match the file ({len(data) - pos - _CRC.size} bytes)")
    header = GridHeader(width=width, height=height, channels=channels, shape=shape, level_models=tuple(level_models),
                        mlp_steps=tuple(steps), mlp_models=tuple(mlp_models), buckets=tuple(buckets), compact=compact,
                        **flt)
    return header, bytes(data[pos: pos + payload_len])


def _parse_v8(data: bytes, shape: GridShape, width: int, height: int, channels: int,
              has_filter: bool) -> tuple[GridHeader, bytes]:
    """The rest of a version-8 file after its fixed fields (checked by the caller, with the CRC)."""
    pos = _GRID_FIXED.size
    n_layers = shape.hidden_layers + 1
    end = len(data) - _CRC.size
    _check(pos + n_layers * _STEP.size + (_FILTER_V8.size if has_filter else 0) <= end,
           "truncated .prc file (header incomplete)")
    steps = []
    for _ in range(n_layers):
        (step,) = _STEP.unpack_from(data, pos)
        pos += _STEP.size
        _check_step(step)
        steps.append(step)
    flt: dict = {}
    if has_filter:
        taps, symmetric, shift = _FILTER_V8.unpack_from(data, pos)
        pos += _FILTER_V8.size
        flt = _filter_fields(taps, symmetric, shift)
    bits = _BitReader(data, pos, end)
    prev = [0, 0]

    def model() -> LaplaceModel:
        j = prev[1] + bits.signed(BOUND_ORDER)
        _check(0 <= j < len(COMPACT_BOUNDS), f"entropy model bound index {j} out of range")
        prev[1] = j
        if j:
            i = prev[0] + bits.signed(DECAY_ORDER)
            _check(0 <= i < len(COMPACT_DECAYS), f"entropy model decay index {i} out of range")
            prev[0] = i
        return LaplaceModel(COMPACT_DECAYS[prev[0] if j else 0], COMPACT_BOUNDS[j])

    buckets, level_models = [], []
    for _ in range(shape.levels * PASSES):
        n = bits.get(BUCKET_COUNT_BITS) + 1
        _check(n <= MAX_BUCKETS, f"context bucket count {n} outside 1..{MAX_BUCKETS}")
        buckets.append(n)
        level_models += [model() for _ in range(n)]
    mlp_models = [model() for _ in range(n_layers)]
    if has_filter:
        flt["filter_model"] = model()
    pos = bits.align()
    header = GridHeader(width=width, height=height, channels=channels, shape=shape, level_models=tuple(level_models),
                        mlp_steps=tuple(steps), mlp_models=tuple(mlp_models), buckets=tuple(buckets), compact=True,
                        packed=True, **flt)
    return header, bytes(data[pos: end])


def pack_lossless(header: LosslessHeader, payload: bytes) -> bytes:
    """Serialize a lossless file (version 9): the fixed fields, the payload, the CRC32 of everything before it."""
    flags = LOSSLESS_FLAG_PALETTE if header.palette else 0
    body = _LOSSLESS_FIXED.pack(MAGIC, LOSSLESS_VERSION, flags, header.width, header.height, header.channels,
                                header.kind) + payload
    return body + _CRC.pack(zlib.crc32(body))


def _parse_lossless(data: bytes) -> tuple[LosslessHeader, bytes]:
    """Fields of a version-9 file (the CRC is already checked)."""
    _, _, flags, width, height, channels, kind = _LOSSLESS_FIXED.unpack_from(data, 0)
    _check(flags & ~LOSSLESS_FLAG_PALETTE == 0, f"unknown header flags 0x{flags:02x}")
    _check_image(width, height, channels)
    _check(kind in LOSSLESS_KINDS, f"unknown lossless payload kind {kind}")
    header = LosslessHeader(width=width, height=height, channels=channels, kind=kind,
                            palette=bool(flags & LOSSLESS_FLAG_PALETTE))
    return header, bytes(data[_LOSSLESS_FIXED.size: len(data) - _CRC.size])


def pack_composite(width: int, height: int, channels: int, base: bytes, regions: list[tuple[int, int, bytes]],
                   seam: int = 0) -> bytes:
    """Serialize a composite file (version 10) from its base (a version-9 file) and its regions ((x, y, a
    version-8 file), not overlapping), with the seam filter's strength ``seam`` (0: none; seam.py), and append
    the CRC32 of everything before it."""
    if not 0 <= seam <= SEAM_FLAGS:
        raise ValueError(f"seam strength {seam} outside 0..{SEAM_FLAGS}")
    body = bytearray(_COMPOSITE_FIXED.pack(MAGIC, COMPOSITE_VERSION, seam, width, height, channels, len(regions)))
    body += _varint(len(base)) + base
    for x, y, data in regions:
        body += _REGION_AT.pack(x, y) + _varint(len(data)) + data
    return bytes(body) + _CRC.pack(zlib.crc32(body))


def composite_overhead(regions: int) -> int:
    """The most bytes a composite file of ``regions`` regions takes besides its nested files."""
    return _COMPOSITE_FIXED.size + _CRC.size + MAX_VARINT_BYTES * (regions + 1) + _REGION_AT.size * regions


def _nested(data: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    """The varint-prefixed file at ``pos`` (not past ``end``) and the position after it."""
    n, pos = _read_varint(data[:end], pos)
    _check(pos + n <= end, f"truncated .prc file ({what} runs past the end)")
    return bytes(data[pos: pos + n]), pos + n


def _parse_composite(data: bytes) -> tuple[CompositeHeader, bytes]:
    """Fields of a version-10 file (the CRC is already checked): the nested files parsed, and each checked
    against the picture: the base is a version-9 file of its size, each region a version-8 file of its channels
    inside it, and no two regions overlap."""
    _, _, flags, width, height, channels, count = _COMPOSITE_FIXED.unpack_from(data, 0)
    _check(flags & ~SEAM_FLAGS == 0, f"unknown header flags 0x{flags:02x}")
    _check_image(width, height, channels)
    _check(1 <= count <= MAX_REGIONS, f"{count} regions outside 1..{MAX_REGIONS}")
    end = len(data) - _CRC.size
    raw, pos = _nested(data, _COMPOSITE_FIXED.size, end, "the base")
    _check(len(raw) >= 5 and raw[4] == LOSSLESS_VERSION, "composite base is not a version-9 file")
    base, base_payload = parse(raw)
    _check((base.width, base.height, base.channels) == (width, height, channels),
           f"composite base of {base.width}x{base.height}x{base.channels} in a {width}x{height}x{channels} file")
    regions: list[Region] = []
    for i in range(count):
        _check(pos + _REGION_AT.size <= end, "truncated .prc file (region incomplete)")
        x, y = _REGION_AT.unpack_from(data, pos)
        raw, pos = _nested(data, pos + _REGION_AT.size, end, f"region {i}")
        _check(len(raw) >= 5 and raw[4] == GRID_VERSION, f"composite region {i} is not a version-{GRID_VERSION} file")
        header, payload = parse(raw)
        _check(header.channels == channels, f"region {i} of {header.channels} channels in a {channels}-channel file")
        _check(x + header.width <= width and y + header.height <= height,
               f"region {i} ({header.width}x{header.height} at {x},{y}) outside the {width}x{height} picture")
        for r in regions:
            _check(x >= r.x + r.header.width or r.x >= x + header.width or y >= r.y + r.header.height
                   or r.y >= y + header.height, f"region {i} overlaps another")
        regions.append(Region(x=x, y=y, header=header, payload=payload))
    _check(pos == end, f"{end - pos} bytes after the last region")
    return CompositeHeader(width=width, height=height, channels=channels, base=base, base_payload=base_payload,
                           regions=tuple(regions), seam=flags & SEAM_FLAGS), b""


def pack_alpha(width: int, height: int, channels: int, colour: bytes, alpha: bytes) -> bytes:
    """Serialize a file with transparency (version 11) of ``channels`` (2 or 4, alpha included) from its colour
    file and its alpha's one-channel version-9 file, and append the CRC32 of everything before it."""
    body = _ALPHA_FIXED.pack(MAGIC, ALPHA_VERSION, 0, width, height, channels)
    body += _varint(len(colour)) + colour + _varint(len(alpha)) + alpha
    return body + _CRC.pack(zlib.crc32(body))


def alpha_overhead() -> int:
    """The most bytes a version-11 file takes besides its two nested files."""
    return _ALPHA_FIXED.size + _CRC.size + 2 * MAX_VARINT_BYTES


def _parse_alpha(data: bytes) -> tuple[AlphaHeader, bytes]:
    """Fields of a version-11 file (the CRC is already checked): the nested files parsed, and each checked against
    the picture: the colour a file of a version the encoder writes, of its size and channels - 1, the alpha a
    one-channel version-9 file of its size."""
    _, _, flags, width, height, channels = _ALPHA_FIXED.unpack_from(data, 0)
    _check(flags == 0, f"unknown header flags 0x{flags:02x}")
    _check(channels in (2, 4), f"unsupported channel count {channels} for a picture with transparency")
    _check_image(width, height, channels - 1)
    end = len(data) - _CRC.size
    raw, pos = _nested(data, _ALPHA_FIXED.size, end, "the colour")
    _check(len(raw) >= 5 and raw[4] in ALPHA_COLOUR_VERSIONS,
           f"colour of a picture with transparency is not a file of version "
           f"{', '.join(map(str, ALPHA_COLOUR_VERSIONS))}")
    colour, colour_payload = parse(raw)
    _check((colour.width, colour.height, colour.channels) == (width, height, channels - 1),
           f"colour of {colour.width}x{colour.height}x{colour.channels} in a {width}x{height}x{channels} file")
    raw, pos = _nested(data, pos, end, "the alpha")
    _check(len(raw) >= 5 and raw[4] == LOSSLESS_VERSION, "alpha is not a version-9 file")
    alpha, alpha_payload = parse(raw)
    _check((alpha.width, alpha.height, alpha.channels) == (width, height, 1),
           f"alpha of {alpha.width}x{alpha.height}x{alpha.channels} in a {width}x{height} file")
    _check(pos == end, f"{end - pos} bytes after the alpha")
    return AlphaHeader(width=width, height=height, channels=channels, colour=colour, colour_payload=colour_payload,
                       alpha=alpha, alpha_payload=alpha_payload), b""


def _text_record(entries: tuple[tuple[str, str], ...]) -> bytes:
    """Text entries as a record's bytes: for each, a varint length and the UTF-8 of its keyword, then of its text."""
    return b"".join(_varint(len(b)) + b for key, value in entries for b in (key.encode(), value.encode()))


def _parse_text_record(record: bytes) -> tuple[tuple[str, str], ...]:
    """:func:`_text_record`'s entries: each keyword not empty, both valid UTF-8, the last ending the record."""
    entries, pos = [], 0
    while pos < len(record):
        pair = []
        for _ in range(2):
            n, pos = _read_varint(record, pos)
            _check(pos + n <= len(record), "truncated text entry")
            try:
                pair.append(record[pos: pos + n].decode("utf-8"))
            except UnicodeDecodeError:
                raise FormatError("text entry that is not UTF-8") from None
            pos += n
        _check(bool(pair[0]), "text entry without a keyword")
        entries.append((pair[0], pair[1]))
    return tuple(entries)


def metadata_block(meta: Metadata) -> tuple[bytes, bool]:
    """The records of ``meta`` (a kind byte, the index of its field in ``metadata.KINDS``; a varint length; the
    bytes, the text's as :func:`_text_record`; for each field present, in that order), deflated where that is
    smaller; and whether it is."""
    fields = {k: _text_record(meta.text) if k == "text" else getattr(meta, k) for k in meta.kinds()}
    records = b"".join(bytes([METADATA_KINDS.index(k)]) + _varint(len(v)) + v for k, v in fields.items())
    packed = zlib.compress(records, 9)
    return (packed, True) if len(packed) < len(records) else (records, False)


def pack_metadata(width: int, height: int, channels: int, block: bytes, deflated: bool, picture: bytes) -> bytes:
    """Serialize a file with metadata (version 12) from :func:`metadata_block`'s block and the picture's file (of
    a version in ``METADATA_PICTURE_VERSIONS``), and append the CRC32 of everything before it."""
    flags = METADATA_FLAG_DEFLATE if deflated else 0
    body = _METADATA_FIXED.pack(MAGIC, METADATA_VERSION, flags, width, height, channels)
    body += _varint(len(block)) + block + _varint(len(picture)) + picture
    return body + _CRC.pack(zlib.crc32(body))


def metadata_overhead() -> int:
    """The most bytes a version-12 file takes besides its metadata block and its picture's file."""
    return _METADATA_FIXED.size + _CRC.size + 2 * MAX_VARINT_BYTES


def _inflate(block: bytes) -> bytes:
    """A deflated metadata block, never more than ``MAX_METADATA_BYTES`` of it inflated (a zlib bomb is refused
    once past that, not after)."""
    z = zlib.decompressobj()
    try:
        out = z.decompress(block, MAX_METADATA_BYTES)
    except zlib.error as e:
        raise FormatError(f"corrupt metadata ({e})") from None
    _check(not z.unconsumed_tail, f"metadata inflates to more than {MAX_METADATA_BYTES} bytes", LimitError)
    _check(z.eof and not z.unused_data, "corrupt metadata (its zlib stream is truncated or followed by bytes)")
    return out


def _parse_records(block: bytes) -> Metadata:
    """The fields of a metadata block's records: each kind known, at most once, in order, and not empty."""
    found: dict[str, bytes] = {}
    pos, last = 0, -1
    while pos < len(block):
        kind = block[pos]
        _check(last < kind < len(METADATA_KINDS), f"metadata record of kind {kind} out of place or unknown")
        n, pos = _read_varint(block, pos + 1)
        _check(1 <= n and pos + n <= len(block), "truncated metadata record")
        record = bytes(block[pos: pos + n])
        found[METADATA_KINDS[kind]] = _parse_text_record(record) if METADATA_KINDS[kind] == "text" else record
        pos, last = pos + n, kind
    _check(bool(found), "a file with metadata holds none")
    return Metadata(**found)


def _parse_metadata(data: bytes) -> tuple[MetadataHeader, bytes]:
    """Fields of a version-12 file (the CRC is already checked): the metadata's records, and the picture's file
    parsed and checked against the header's size and channels."""
    _, _, flags, width, height, channels = _METADATA_FIXED.unpack_from(data, 0)
    _check(flags & ~METADATA_FLAG_DEFLATE == 0, f"unknown header flags 0x{flags:02x}")
    _check(channels in (1, 2, 3, 4), f"unsupported channel count {channels}")
    _check_image(width, height, 1 if channels < 3 else 3)
    end = len(data) - _CRC.size
    block, pos = _nested(data, _METADATA_FIXED.size, end, "the metadata")
    if flags & METADATA_FLAG_DEFLATE:
        block = _inflate(block)
    _check(len(block) <= MAX_METADATA_BYTES, f"metadata of more than {MAX_METADATA_BYTES} bytes", LimitError)
    meta = _parse_records(block)
    raw, pos = _nested(data, pos, end, "the picture")
    _check(len(raw) >= 5 and raw[4] in METADATA_PICTURE_VERSIONS,
           f"picture of a file with metadata is not a file of version "
           f"{', '.join(map(str, METADATA_PICTURE_VERSIONS))}")
    picture, payload = parse(raw)
    _check((picture.width, picture.height, picture.channels) == (width, height, channels),
           f"picture of {picture.width}x{picture.height}x{picture.channels} in a {width}x{height}x{channels} file")
    _check(pos == end, f"{end - pos} bytes after the picture")
    return MetadataHeader(width=width, height=height, channels=channels, metadata=meta, picture=picture,
                          picture_payload=payload), b""


def header_size(n_groups: int) -> int:
    """Bytes of container overhead (everything but the payload)."""
    return _FIXED.size + _TILE.size + n_groups * _GROUP.size + _LEN.size + _CRC.size


def pack(header: Header, payload: bytes) -> bytes:
    """Serialize header + payload and append the CRC32 of everything before it."""
    spec = header.spec
    flags = FLAG_OFFSET if spec.offset else 0
    fixed = _FIXED.pack(
        MAGIC, VERSION, flags, header.width, header.height, header.channels,
        spec.seed & 0xFFFFFFFF, NET_SIREN, spec.shape.hidden_layers, spec.shape.width,
        spec.shape.omega0, int(spec.kind), spec.density_byte, spec.chunk_size,
        spec.expansion_fp, header.delta, len(header.models),
    )
    groups = _TILE.pack(header.tile_side) + b"".join(_GROUP.pack(m.decay, m.bound, s) for m, s in zip(header.models, header.shifts))
    body = fixed + groups + _LEN.pack(len(payload)) + payload
    return body + _CRC.pack(zlib.crc32(body))


def _check(cond: bool, msg: str, exc: type[Exception] = FormatError) -> None:
    if not cond:
        raise exc(msg)


def parse(data: bytes) -> tuple[Header | GridHeader | LosslessHeader | CompositeHeader | AlphaHeader | MetadataHeader,
                                bytes]:
    """Validate a ``.prc`` byte string and return (header, payload): a Header for versions 1-3 (SIREN), a
    GridHeader for 4-8, a LosslessHeader for 9, a CompositeHeader for 10, an AlphaHeader for 11 and a
    MetadataHeader for 12 (these three with their nested files in them, and no payload)."""
    _check(len(data) >= 5, f"not a .prc file (only {len(data)} bytes)")
    _check(data[:4] == MAGIC, "not a .prc file (bad magic bytes)")
    version = data[4]
    _check(version in READABLE_VERSIONS, f"unsupported .prc format version {version} "
                                         f"(this decoder reads versions 1 to {max(READABLE_VERSIONS)})")
    group = _GROUP if version >= 2 else _GROUP_V1
    # a lossless file may be shorter than the other layouts' headers (a black 1x1 picture's: 30 bytes)
    shortest = {LOSSLESS_VERSION: _LOSSLESS_FIXED.size, COMPOSITE_VERSION: _COMPOSITE_FIXED.size,
                ALPHA_VERSION: _ALPHA_FIXED.size, METADATA_VERSION: _METADATA_FIXED.size}.get(
        version, min(_FIXED.size, _GRID_FIXED.size) + _LEN.size)
    _check(len(data) >= shortest + _CRC.size, "truncated .prc file (header incomplete)")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    _check(zlib.crc32(data[: -_CRC.size]) == crc, "corrupted or truncated .prc file (CRC mismatch)")
    if version == LOSSLESS_VERSION:
        return _parse_lossless(data)
    if version == COMPOSITE_VERSION:
        return _parse_composite(data)
    if version == ALPHA_VERSION:
        return _parse_alpha(data)
    if version == METADATA_VERSION:
        return _parse_metadata(data)
    if version in GRID_VERSIONS:
        return _parse_grid(data, version)
    _check(len(data) >= _FIXED.size + _LEN.size + _CRC.size, "truncated .prc file (header incomplete)")

    (_, _, flags, width, height, channels, seed, net_kind, hidden_layers, net_width, omega0,
     kind, density, chunk_size, expansion, delta, n_groups) = _FIXED.unpack_from(data, 0)

    _check(flags & ~FLAG_OFFSET == 0, f"unknown header flags 0x{flags:02x}")
    _check_image(width, height, channels)
    _check(net_kind == NET_SIREN, f"unknown network kind {net_kind}")
    _check(1 <= hidden_layers <= MAX_LAYERS, f"hidden layers {hidden_layers} outside 1..{MAX_LAYERS}", LimitError)
    _check(1 <= net_width <= MAX_WIDTH, f"network width {net_width} outside 1..{MAX_WIDTH}", LimitError)
    # at least MIN_OMEGA0: sqrt(6 / fan_in) / omega0, the hidden layers' init bound, must stay finite in float32 (a
    # denormal omega0 made it inf, and the picture NaN)
    _check(math.isfinite(omega0) and MIN_OMEGA0 <= omega0 <= 1000, f"invalid omega0 {omega0}")
    _check(kind in {k.value for k in BasisKind} and (version >= 3 or kind != BasisKind.ORTHOGONAL),
           f"unknown basis kind {kind}")
    _check(1 <= density <= 256, f"invalid ternary density {density}")
    _check(1 <= chunk_size <= MAX_CHUNK, f"chunk size {chunk_size} outside 1..{MAX_CHUNK}", LimitError)
    _check(expansion >= 1, "invalid basis expansion 0")
    _check(kind != BasisKind.ORTHOGONAL or chunk_size & (chunk_size - 1) == 0,
           f"orthogonal basis with chunk size {chunk_size}, not a power of two")
    _check(kind != BasisKind.IDENTITY or expansion == EXPANSION_ONE, "identity basis with expansion != 1")
    _check(math.isfinite(delta) and delta > 0, f"invalid quantization step {delta}")
    _check(n_groups == hidden_layers + 1, f"{n_groups} coefficient groups for {hidden_layers + 1} layers")

    pos = _FIXED.size
    tile_side = max(width, height)  # version 1: one tile
    if version >= 2:
        _check(len(data) >= pos + _TILE.size + _LEN.size + _CRC.size, "truncated .prc file (header incomplete)")
        (tile_side,) = _TILE.unpack_from(data, pos)
        pos += _TILE.size
        _check(1 <= tile_side <= max(width, height), f"tile side {tile_side} outside 1..{max(width, height)}")
    grid = TileGrid(height, width, tile_side)
    _check(grid.count <= MAX_TILES, f"{grid.count} tiles exceed the limit of {MAX_TILES}", LimitError)
    _check(len(data) >= pos + n_groups * group.size + _LEN.size + _CRC.size, "truncated .prc file (header incomplete)")
    models, shifts = [], []
    for _ in range(n_groups):
        decay, bound, *shift = group.unpack_from(data, pos)
        pos += group.size
        _check(1 <= decay <= 65535 and bound <= MAX_BOUND, f"entropy model out of range (decay={decay}, bound={bound})")
        models.append(LaplaceModel(decay, bound))
        shifts.append(shift[0] if shift else 0)
    (payload_len,) = _LEN.unpack_from(data, pos)
    pos += _LEN.size
    _check(pos + payload_len + _CRC.size == len(data),
           f"payload length {payload_len} does not match the file ({len(data) - pos - _CRC.size} bytes)")

    shape = SirenShape(width=net_width, hidden_layers=hidden_layers, channels=channels, omega0=omega0)
    spec = SubspaceSpec(seed=seed, kind=BasisKind(kind), chunk_size=chunk_size, expansion_fp=expansion,
                        density_byte=density, offset=bool(flags & FLAG_OFFSET), shape=shape, tiles=grid.count)
    check_limits(spec, width * height)
    header = Header(width=width, height=height, channels=channels, spec=spec, tile_side=tile_side, delta=delta, models=tuple(models),
                    shifts=tuple(shifts))
    return header, bytes(data[pos: pos + payload_len])


def check_limits(spec: SubspaceSpec, num_pixels: int) -> None:
    """Refuse work the decoder could not finish in bounded time and memory."""
    if spec.num_coefs > MAX_COEFS:
        raise LimitError(f"{spec.num_coefs} coefficients exceed the limit of {MAX_COEFS}")
    if spec.tiles > MAX_TILES:
        raise LimitError(f"{spec.tiles} tiles exceed the limit of {MAX_TILES}")
    if spec.basis_entries > MAX_BASIS_ENTRIES:
        raise LimitError(f"basis of {spec.basis_entries} entries exceeds the limit of {MAX_BASIS_ENTRIES}")
    if spec.basis_entries * spec.tiles > MAX_BASIS_MACS:
        raise LimitError("basis too large for the number of tiles (decoding cost over the limit)")
    if spec.basis_entries * spec.tiles > max(MIN_BASIS_MACS, BASIS_MACS_PER_PIXEL * num_pixels):
        raise LimitError(f"network too large for a {num_pixels}-pixel image (basis work over the limit)")
    if spec.shape.num_params * num_pixels > MAX_RENDER_MACS:
        raise LimitError("network too large for the image size (rendering cost over the limit)")
