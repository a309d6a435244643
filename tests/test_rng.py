"""The counter-based generator: pinned golden values and distribution checks.

If a golden value changes, every .prc file ever written decodes differently:
that is a format break and needs a new format version, not a new golden value.
"""
import hashlib

import numpy as np
import pytest

from pranc_codec import rng

SEED = 2023


GOLDEN_ORTHOGONAL_4 = [[0, 0, -4, 0], [0, 0, 0, 4], [-4, 0, 0, 0], [0, 4, 0, 0]]
GOLDEN_ORTHOGONAL_256_SHA = "ac66647c3f19bd96"


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _lowbias32_ref(x: int) -> int:
    """Independent pure-Python reference of the mixer in FORMAT.md."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def _hash32_ref(key: int, counter: int) -> int:
    x = (counter * 0x9E3779B9 + key) & 0xFFFFFFFF
    return _lowbias32_ref(_lowbias32_ref(x) ^ key)


def test_lowbias32_matches_reference():
    xs = [0, 1, 2, 0xDEADBEEF, 0x7FFFFFFF, 0xFFFFFFFF]
    assert rng.lowbias32(np.array(xs, dtype=np.uint32)).tolist() == [_lowbias32_ref(x) for x in xs]
    assert _lowbias32_ref(1) == 1753845952
    # it is a bijection on a sample: no collisions
    x = np.arange(1 << 16, dtype=np.uint32) * np.uint32(65537)
    assert np.unique(rng.lowbias32(x)).size == x.size


def test_hash32_matches_reference():
    k = 0x20DF5F79
    got = rng.hash32(k, 1000, 50).tolist()
    assert got == [_hash32_ref(k, c) for c in range(1000, 1050)]


def test_golden_stream_key_and_words():
    k = rng.stream_key(SEED, rng.STREAM_BASIS, 0)
    assert k == 0x20DF5F79
    assert rng.hash32(k, 0, 4).tolist() == [0x702B3E10, 0x620A4504, 0xD3392494, 0x3FBCC728]
    assert rng.hash32(k, 2**32 - 2, 2).tolist() == [2389703731, 2606622902]


def test_golden_gaussian_and_ternary_bits():
    k = rng.stream_key(SEED, rng.STREAM_BASIS, 0)
    g = rng.gaussian_like(k, 0, 4)
    assert g.view(np.uint32).tolist() == np.array(
        [-1.1549736261367798, -0.008800855837762356, -0.8920843601226807, -1.9654452800750732],
        dtype=np.float32).view(np.uint32).tolist()
    t = rng.ternary(k, 0, 8, 85)
    a = np.float32(1.7354437112808228)
    assert t.tolist() == [0, 0, 0, a, 0, 0, a, 0]
    u = rng.uniform_pm1(k, 0, 3)
    assert u.tolist() == np.array([-0.12368035316467285, -0.234061598777771, 0.6501812934875488],
                                  dtype=np.float32).tolist()
    # a larger block, pinned by hash
    assert _sha(rng.gaussian_like(k, 12345, 100_000)) == "d78c81914398b7fa"
    assert _sha(rng.ternary(k, 777, 100_000, 32)) == "c878e480c08572b8"


def test_hadamard_transform_is_the_sylvester_matrix():
    m = 16
    H = np.array([[(-1) ** bin(i & j).count("1") for j in range(m)] for i in range(m)])
    x = np.random.RandomState(0).randint(-9, 9, (m, 5))
    assert np.array_equal(rng.hadamard_transform(x), H @ x)
    with pytest.raises(ValueError):
        rng.hadamard_transform(np.zeros((12, 1), dtype=np.int64))


@pytest.mark.parametrize("m", [1, 2, 8, 256])
def test_orthogonal_blocks_are_exactly_orthogonal(m):
    q = rng.orthogonal(rng.stream_key(SEED, rng.STREAM_BASIS, 1), 3 * 256 * 5, m).astype(np.float64)
    assert np.array_equal(q.T @ q, np.eye(m))  # exact: entries are integers / m
    assert np.array_equal(np.round(q * m), q * m)
    if m == 256:  # spread out, not a permutation: no entry near the column norm, few zeros
        assert np.abs(q).max() <= 0.5 and np.mean(q != 0) > 0.8


def test_golden_orthogonal_bits():
    k = rng.stream_key(SEED, rng.STREAM_BASIS, 0)
    q = rng.orthogonal(k, 0, 4)
    assert (q * 4).astype(int).tolist() == GOLDEN_ORTHOGONAL_4
    assert _sha(rng.orthogonal(k, 768, 256)) == GOLDEN_ORTHOGONAL_256_SHA


def test_counter_ranges_are_consistent():
    """Chunked generation equals generation in one go (the decoder relies on it)."""
    k = rng.stream_key(7, rng.STREAM_BASIS, 3)
    whole = rng.gaussian_like(k, 0, 10_000)
    parts = np.concatenate([rng.gaussian_like(k, s, 1000) for s in range(0, 10_000, 1000)])
    assert np.array_equal(whole.view(np.uint32), parts.view(np.uint32))


def test_streams_differ():
    a = rng.hash32(rng.stream_key(1, rng.STREAM_BASIS, 0), 0, 1000)
    b = rng.hash32(rng.stream_key(1, rng.STREAM_BASIS, 1), 0, 1000)
    c = rng.hash32(rng.stream_key(2, rng.STREAM_BASIS, 0), 0, 1000)
    d = rng.hash32(rng.stream_key(1, rng.STREAM_INIT, 0), 0, 1000)
    assert len({a.tobytes(), b.tobytes(), c.tobytes(), d.tobytes()}) == 4
    assert np.mean(a == b) < 0.01


def test_gaussian_like_moments():
    g = rng.gaussian_like(rng.stream_key(5, 1, 0), 0, 1 << 20).astype(np.float64)
    assert abs(g.mean()) < 0.005
    assert abs(g.var() - 1.0) < 0.01
    # Irwin-Hall(4) kurtosis is 3 - 1.2/4 = 2.7
    assert abs(np.mean(g**4) / g.var() ** 2 - 2.7) < 0.03


@pytest.mark.parametrize("density_byte", [8, 64, 85, 256])
def test_ternary_density_and_variance(density_byte):
    t = rng.ternary(rng.stream_key(5, 1, 0), 0, 1 << 18, density_byte).astype(np.float64)
    assert abs(np.mean(t != 0) - density_byte / 256) < 0.01
    assert abs(t.var() - 1.0) < 0.05
    assert abs(np.mean(t > 0) - np.mean(t < 0)) < 0.01


def test_counter_overflow_refused():
    with pytest.raises(ValueError):
        rng.hash32(1, 2**32 - 1, 2)
