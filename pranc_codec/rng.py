"""Counter-based pseudo-random numbers from integer operations only.

Every random number the decoder needs is ``hash32(key, counter)``: a pure
function of a 32-bit key and a 32-bit counter, computed with wrapping uint32
arithmetic in NumPy. Unsigned 32-bit multiply, xor and shift are exact on every
platform, so the stream is bit-identical on any OS, CPU, NumPy or torch version.
torch's and numpy's own generators are never used for decoder-side randomness.
The algorithm is written down in FORMAT.md ("Random numbers").

Mixing function: Chris Wellons' ``lowbias32`` (x ^= x>>16; x *= 0x7feb352d;
x ^= x>>15; x *= 0x846ca68b; x ^= x>>16), a bijection on 32-bit words.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)
_GOLDEN = np.uint32(0x9E3779B9)

# Streams: one per (purpose, layer). Purposes are small integers fixed by the format.
STREAM_BASIS = 1
STREAM_INIT = 2


def lowbias32(x: np.ndarray) -> np.ndarray:
    """Bijective 32-bit mixer on a uint32 array (returns a new array)."""
    x = np.asarray(x, dtype=np.uint32).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x *= _M1
        x ^= x >> np.uint32(15)
        x *= _M2
        x ^= x >> np.uint32(16)
    return x


def stream_key(seed: int, purpose: int, index: int) -> int:
    """32-bit key of the stream ``(purpose, index)`` under ``seed``."""
    s = lowbias32(np.array([seed & 0xFFFFFFFF], dtype=np.uint32))
    p = lowbias32(np.array([((purpose & 0xFFFF) << 16) | (index & 0xFFFF)], dtype=np.uint32))
    with np.errstate(over="ignore"):
        return int(lowbias32(s ^ (p + _GOLDEN))[0])


def hash32(key: int, start: int, count: int) -> np.ndarray:
    """Words ``counter = start .. start+count-1`` of stream ``key``: uint32 array (count,).

    word = lowbias32(lowbias32(counter * 0x9E3779B9 + key) ^ key)
    """
    if start < 0 or start + count > 2**32:
        raise ValueError("counter range exceeds 32 bits")
    k = np.uint32(key)
    c = np.arange(start, start + count, dtype=np.uint64).astype(np.uint32)
    with np.errstate(over="ignore"):
        x = c * _GOLDEN + k
    return lowbias32(lowbias32(x) ^ k)


# 1 / std of the sum of four independent uniforms on {0..65535}: sqrt(3 / (65536^2 - 1)).
_IRWIN_HALL_SCALE = np.float32(1.0 / np.sqrt((65536.0**2 - 1.0) / 3.0))


def gaussian_like(key: int, start: int, count: int) -> np.ndarray:
    """Unit-variance, zero-mean Gaussian-like float32 values (count,).

    Sum of four 16-bit uniforms (the two halves of words 2i and 2i+1), centred
    exactly in integers, then one float32 multiply: no transcendental functions,
    so every IEEE-754 machine produces the same bits.
    """
    w = hash32(key, 2 * start, 2 * count).reshape(count, 2)
    lo = (w & np.uint32(0xFFFF)).astype(np.int32)
    hi = (w >> np.uint32(16)).astype(np.int32)
    s = lo.sum(axis=1) + hi.sum(axis=1) - 2 * 65535  # in [-131070, 131070]
    return s.astype(np.float32) * _IRWIN_HALL_SCALE


def ternary(key: int, start: int, count: int, density_byte: int) -> np.ndarray:
    """Sparse ternary float32 values in {-a, 0, +a}, a = 1/sqrt(density), (count,).

    P(+a) = P(-a) = density / 2 with density = density_byte / 256 (1..256).
    """
    if not 1 <= density_byte <= 256:
        raise ValueError("ternary density byte must be in 1..256")
    w = hash32(key, start, count).astype(np.uint64)
    t = np.uint64(density_byte) << np.uint64(24)  # density * 2^32
    half = t >> np.uint64(1)
    a = np.float32(1.0 / np.sqrt(density_byte / 256.0))
    out = np.zeros(count, dtype=np.float32)
    out[w < half] = -a
    out[(w >= half) & (w < t)] = a
    return out


def uniform_pm1(key: int, start: int, count: int) -> np.ndarray:
    """Float32 values uniform on [-1, 1) with 24-bit resolution (count,); exact arithmetic."""
    w = hash32(key, start, count) >> np.uint32(8)
    return (w.astype(np.float32) * np.float32(2.0**-23)) - np.float32(1.0)


def hadamard_transform(x: np.ndarray) -> np.ndarray:
    """Sylvester-Hadamard transform H @ x along axis 0 of an int64 array (rows a power of two).

    Butterflies of integer additions only, so the result is exact on every machine.
    """
    m = x.shape[0]
    if m & (m - 1):
        raise ValueError("the Hadamard transform needs a power-of-two length")
    out = np.array(x, dtype=np.int64, copy=True).reshape(m, -1)
    h = 1
    while h < m:
        y = out.reshape(m // (2 * h), 2, h, -1)
        a = y[:, 0].copy()
        y[:, 0] += y[:, 1]
        y[:, 1] = a - y[:, 1]
        h *= 2
    return out.reshape(np.shape(x))


@lru_cache(maxsize=16)
def hadamard_matrix(m: int) -> np.ndarray:
    """The +-1 Sylvester-Hadamard matrix H_m, int64 (m, m), read-only (cached: one per block size)."""
    h = hadamard_transform(np.eye(m, dtype=np.int64))
    h.setflags(write=False)
    return h


def orthogonal(key: int, start: int, m: int) -> np.ndarray:
    """Random orthogonal float32 matrix (m, m), m a power of two, from words start .. start + 3m - 1.

    Q = H D2 P H D1 / m with H the +-1 Sylvester-Hadamard matrix, D1 and D2 random
    sign diagonals and P a random permutation (a two-round randomized Hadamard
    transform). Every entry is an integer in [-m, m] divided by m, computed with
    integer butterflies, so Q is exactly orthogonal in binary floating point and
    bit-identical everywhere. Unlike a square Gaussian block (condition number
    ~ m), it spreads every coefficient evenly over the weights without
    amplifying any direction.
    """
    d1, d2, perm = orthogonal_factors(key, start, m)
    hd1 = hadamard_matrix(m) * d1[None, :]
    c = hadamard_transform(d2[:, None] * hd1[perm])
    return c.astype(np.float32) / np.float32(m)


def orthogonal_factors(key: int, start: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The random factors of :func:`orthogonal`: signs d1, d2 (int64 (m,), +-1) and permutation (m,)."""
    if m < 1 or m & (m - 1):
        raise ValueError("orthogonal blocks need a power-of-two size")
    w = hash32(key, start, 3 * m)
    d1 = 1 - 2 * (w[:m] & np.uint32(1)).astype(np.int64)
    d2 = 1 - 2 * (w[m: 2 * m] & np.uint32(1)).astype(np.int64)
    perm = np.argsort(w[2 * m:], kind="stable")  # ties (vanishingly rare) broken by index
    return d1, d2, perm
