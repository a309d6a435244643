"""Entropy coding of quantized coefficients with CompressAI's rANS coder.

Each coefficient group (one per network layer) is modelled by a discretized,
zero-centred Laplace distribution (a two-sided geometric law) on [-K, K]:

    P(q) proportional to r^|q|,   r = decay / 65536

``decay`` (uint16) and ``K`` (uint16) travel in the header. Values beyond K
are escaped by the rANS coder's bypass mode, so any integer round-trips. The
probability table is computed with IEEE-754 double multiplies and divisions
only (correctly rounded everywhere), then quantized to 16 bits by CompressAI's
``pmf_to_quantized_cdf``: encoder and decoder build identical tables.
"""
from __future__ import annotations

import bisect
import glob
import importlib.machinery
import importlib.util
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

import numpy as np

from .errors import FormatError

MAX_BOUND = 2047  # largest K: keeps every table well inside 16-bit precision
TAIL_MASS = 1e-9  # probability reserved for the escape symbol
# CompressAI's bypass coder loops for ever on large values (measured: it hangs at magnitude 2^28 - 1 and above, and
# codes 2^27; it counts the value's 4-bit fields with a shift that reaches 32), so symbols beyond 2^27 - 1 are
# refused before they reach it; ours stay far below.
MAX_MAGNITUDE = (1 << 27) - 1
# Below that, a symbol costs at most 6 bytes (a 16-bit escape, a 4-bit count and seven 4-bit fields, measured
# 6.008 bytes a symbol at the limit) and a stream ends with its 4-byte state. A longer stream was not written
# by this coder; refusing it keeps the decoder's padding (17x the stream) in proportion to the symbols.
MAX_STREAM_BYTES_PER_SYMBOL = 8
STREAM_SLACK_BYTES = 64


def _load_compressai_extension(name: str) -> ModuleType:
    """Load ``compressai.<name>`` (a compiled extension) without importing compressai.

    ``import compressai`` pulls in its datasets, torchvision and torch-geometric
    (about 5 s per CLI call); the rANS coder and CDF helper need none of that.
    """
    spec = importlib.util.find_spec("compressai")
    if spec is None or spec.origin is None:
        raise ImportError("compressai is not installed")
    pkg_dir = os.path.dirname(spec.origin)
    candidates = glob.glob(os.path.join(pkg_dir, f"{name}.*.so")) + glob.glob(os.path.join(pkg_dir, f"{name}.*.pyd"))
    if not candidates:
        return importlib.import_module(f"compressai.{name}")
    loader = importlib.machinery.ExtensionFileLoader(f"compressai.{name}", candidates[0])
    mod_spec = importlib.util.spec_from_file_location(f"compressai.{name}", candidates[0], loader=loader)
    module = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
    loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def _ans() -> ModuleType:
    return _load_compressai_extension("ans")


@lru_cache(maxsize=None)
def _cxx() -> ModuleType:
    return _load_compressai_extension("_CXX")


@dataclass(frozen=True)
class LaplaceModel:
    """Two-sided geometric model of one coefficient group."""

    decay: int  # r * 65536, 1..65535
    bound: int  # K, 0..MAX_BOUND

    def validate(self) -> None:
        if not 1 <= self.decay <= 65535 or not 0 <= self.bound <= MAX_BOUND:
            raise FormatError(f"entropy model out of range (decay={self.decay}, bound={self.bound})")


@lru_cache(maxsize=256)
def quantized_cdf(model: LaplaceModel) -> tuple[int, ...]:
    """16-bit CDF over the 2K+1 symbols plus the escape symbol (length 2K+3)."""
    r = model.decay / 65536.0
    half = [1.0]
    for _ in range(model.bound):
        half.append(half[-1] * r)
    weights = half[:0:-1] + half  # r^K .. r^1, 1, r^1 .. r^K
    total = 0.0
    for w in weights:
        total += w
    pmf = [w / total for w in weights] + [TAIL_MASS]
    return tuple(_cxx().pmf_to_quantized_cdf(pmf, 16))


def _bits(sum_mag: float, count: int, decay: int, bound: int) -> float:
    """Ideal code length of ``count`` integers with sum of magnitudes ``sum_mag`` under (decay, bound)."""
    r = decay / 65536.0
    z = 1.0 + 2.0 * r * (1.0 - r**bound) / (1.0 - r)
    return -sum_mag * math.log2(r) + count * math.log2(z)


# the decays fit_model tries: 400 points of r = exp(-exp(t)), t in [-9, 3] (ascending, duplicates removed)
_FREE_DECAYS = tuple(int(d) for d in np.unique(np.clip(np.round(65536 * np.exp(-np.exp(np.linspace(-9, 3, 400)))),
                                                       1, 65535)))


def _fit(q: np.ndarray, decays: tuple[int, ...], bounds: tuple[int, ...] | None) -> LaplaceModel:
    """The model of least code length for integers ``q``: the bound is max |q| (at most MAX_BOUND), or the least
    of ``bounds`` that covers it; the decay the best of ``decays`` (the first, in their order, on a tie)."""
    mags = np.abs(q.astype(np.int64))
    top = int(min(mags.max(initial=0), MAX_BOUND))
    bound = top if bounds is None else bounds[bisect.bisect_left(bounds, top)]
    sum_mag = float(np.minimum(mags, bound).sum())
    decay = min(decays, key=lambda d: _bits(sum_mag, mags.size, d, bound))
    return LaplaceModel(decay=decay, bound=bound)


def fit_model(q: np.ndarray) -> LaplaceModel:
    """Choose K and the decay that minimise the ideal code length of integers ``q``."""
    return _fit(q, _FREE_DECAYS, None)


def _compact_decays() -> tuple[int, ...]:
    """The decays a version-7 or 8 model can hold: round(65536 exp(-exp(t_i))), t_i = -7 + 9.3 i / 255 for
    i = 0..255, strictly decreasing 65476 .. 3 (mean magnitudes ~1100 down to ~1e-4; steps of 3.7 % in the
    scale cost under 0.01 % of a model's bits). Pinned by tests/test_entropy.py: a change is a format break."""
    return tuple(min(65535, max(1, round(65536.0 * math.exp(-math.exp(-7.0 + 9.3 * i / 255))))) for i in range(256))


def _compact_bounds() -> tuple[int, ...]:
    """The bounds K a version-7 or 8 model can hold: 0..127, then b += b // 42 (2.4 % apart) from 128, then
    MAX_BOUND: 254 values, integer arithmetic only."""
    out, b = list(range(128)), 128
    while b < MAX_BOUND:
        out.append(b)
        b += b // 42
    return tuple(out + [MAX_BOUND])


COMPACT_DECAYS = _compact_decays()
COMPACT_BOUNDS = _compact_bounds()
_DECAY_INDEX = {d: i for i, d in enumerate(COMPACT_DECAYS)}
_BOUND_INDEX = {b: i for i, b in enumerate(COMPACT_BOUNDS)}


def fit_compact_model(q: np.ndarray) -> LaplaceModel:
    """:func:`fit_model` restricted to the models a version-7 bucket record (every version-8 model) holds: the least bound of
    COMPACT_BOUNDS that covers max |q| (MAX_BOUND at most), the best decay of COMPACT_DECAYS."""
    return _fit(q, COMPACT_DECAYS, COMPACT_BOUNDS)


def compact_indexes(model: LaplaceModel) -> tuple[int, int]:
    """(decay index, bound index) of a model :func:`fit_compact_model` can return; ValueError otherwise."""
    if model.decay not in _DECAY_INDEX or model.bound not in _BOUND_INDEX:
        raise ValueError(f"model (decay={model.decay}, bound={model.bound}) has no compact form")
    return _DECAY_INDEX[model.decay], _BOUND_INDEX[model.bound]


def code_length(q: np.ndarray, model: LaplaceModel) -> float:
    """Ideal code length (bits) of integers ``q`` under ``model`` (escapes counted as the bound)."""
    mags = np.minimum(np.abs(q.astype(np.int64)), model.bound)
    return _bits(float(mags.sum()), mags.size, model.decay, model.bound)


def _tables(models: list[LaplaceModel]) -> tuple[list[list[int]], list[int], list[int]]:
    cdfs = [list(quantized_cdf(m)) for m in models]
    return cdfs, [len(c) for c in cdfs], [-m.bound for m in models]


def encode(q: np.ndarray, group_sizes: list[int], models: list[LaplaceModel]) -> bytes:
    """rANS-code integer symbols ``q`` (k,), group g using ``models[g]``; k >= 2."""
    return encode_indexed(q, np.repeat(np.arange(len(group_sizes), dtype=np.int32), group_sizes), models)


def encode_indexed(q: np.ndarray, indexes: np.ndarray, models: list[LaplaceModel]) -> bytes:
    """rANS-code integer symbols ``q`` (k,), symbol i using ``models[indexes[i]]``; k >= 2."""
    if q.size < 2:
        # CompressAI's RansEncoder frees memory twice on a 1-symbol stream (abort, seen in 1.2.x)
        raise ValueError("entropy.encode needs at least 2 symbols")
    if q.min() < -MAX_MAGNITUDE or q.max() > MAX_MAGNITUDE:  # no copy; abs would overflow at int32's minimum
        raise ValueError(f"entropy.encode: a symbol beyond +-{MAX_MAGNITUDE} (the rANS bypass coder would hang)")
    cdfs, sizes, offsets = _tables(models)
    return _ans().RansEncoder().encode_with_indexes(q.astype(np.int32).tolist(), np.asarray(indexes, np.int32).tolist(),
                                                    cdfs, sizes, offsets)


def _padded(payload: bytes, k: int) -> bytes:
    # The C++ decoder does not bounds-check its input. A symbol reads at most one
    # 32-bit word, and an escape's bypass length is a sum of 4-bit fields, each of
    # which can make it read at most 15 further nibbles; so reads stay below
    # 16 * len(payload) + 16 * k bytes for k symbols, and once in the zero padding
    # every escape ends at once. The padding keeps a tampered stream inside this buffer.
    if len(payload) > MAX_STREAM_BYTES_PER_SYMBOL * k + STREAM_SLACK_BYTES:
        raise FormatError(f"rANS stream of {len(payload)} bytes is longer than {k} symbols can be")
    return bytes(payload) + bytes(16 * len(payload) + 16 * k + 64)


def decode(payload: bytes, group_sizes: list[int], models: list[LaplaceModel]) -> np.ndarray:
    """Inverse of :func:`encode`: int32 (k,). Never reads outside its buffer."""
    for m in models:
        m.validate()
    k = int(sum(group_sizes))
    indexes = np.repeat(np.arange(len(group_sizes), dtype=np.int32), group_sizes).tolist()
    cdfs, sizes, offsets = _tables(models)
    out = _ans().RansDecoder().decode_with_indexes(_padded(payload, k), indexes, cdfs, sizes, offsets)
    return np.asarray(out, dtype=np.int32)


class SegmentReader:
    """Reads symbols in order from consecutive rANS segments (each one :func:`encode_indexed` stream).

    Lets a decoder ask for the next symbols only once it knows their models
    (context coding): ``read(indexes)`` returns the next ``len(indexes)``
    symbols, crossing segment ends as ``bounds`` says (segment i holds symbols
    bounds[i] .. bounds[i+1]-1). Never reads outside its buffers.
    """

    def __init__(self, segments: list[bytes], bounds: list[int], models: list[LaplaceModel]):
        for m in models:
            m.validate()
        self._segments, self._bounds = segments, bounds
        self._cdfs, self._sizes, self._offsets = _tables(models)
        self._n_models = len(models)
        self._pos, self._seg, self._dec = 0, -1, None

    def read(self, indexes: np.ndarray) -> np.ndarray:
        """The next len(indexes) symbols, int32; symbol i under model indexes[i]."""
        indexes = np.asarray(indexes, dtype=np.int64)
        if indexes.size and (indexes.min() < 0 or indexes.max() >= self._n_models):
            raise FormatError("entropy model index out of range")
        if self._pos + indexes.size > self._bounds[-1]:
            raise FormatError("more symbols requested than the payload holds")
        out = np.empty(indexes.size, dtype=np.int32)
        done = 0
        while done < indexes.size:
            while self._seg < 0 or self._pos >= self._bounds[self._seg + 1]:
                self._seg += 1
                seg_len = self._bounds[self._seg + 1] - self._bounds[self._seg]
                self._dec = _ans().RansDecoder()
                self._dec.set_stream(_padded(self._segments[self._seg], seg_len))
            n = min(indexes.size - done, self._bounds[self._seg + 1] - self._pos)
            out[done: done + n] = self._dec.decode_stream(indexes[done: done + n].astype(np.int32).tolist(),
                                                          self._cdfs, self._sizes, self._offsets)
            done += n
            self._pos += n
        return out
