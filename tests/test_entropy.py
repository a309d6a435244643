import numpy as np
import pytest

from pranc_codec import entropy
from pranc_codec.entropy import LaplaceModel


def _laplace_ints(n, scale, seed=0):
    return np.rint(np.random.RandomState(seed).laplace(0, scale, n)).astype(np.int32)


@pytest.mark.parametrize("scale", [0.3, 2.0, 15.0])
def test_round_trip_and_rate_near_entropy(scale):
    q = _laplace_ints(5000, scale)
    m = entropy.fit_model(q)
    data = entropy.encode(q, [q.size], [m])
    assert np.array_equal(entropy.decode(data, [q.size], [m]), q)
    # within 3 % (+ a few bytes) of the empirical entropy
    _, counts = np.unique(q, return_counts=True)
    p = counts / q.size
    h_bits = -(counts * np.log2(p)).sum()
    assert 8 * len(data) <= 1.03 * h_bits + 64


def test_groups_and_escapes_round_trip():
    a = _laplace_ints(300, 1.0, 1)
    b = _laplace_ints(200, 30.0, 2)
    b[5] = 100_000  # beyond MAX_BOUND: escaped by the coder
    b[6] = -70_000
    q = np.concatenate([a, b])
    models = [entropy.fit_model(a), entropy.fit_model(b)]
    assert models[1].bound == entropy.MAX_BOUND
    data = entropy.encode(q, [300, 200], models)
    assert np.array_equal(entropy.decode(data, [300, 200], models), q)


def test_all_zero_group():
    q = np.zeros(1000, dtype=np.int32)
    m = entropy.fit_model(q)
    assert m.bound == 0
    data = entropy.encode(q, [1000], [m])
    assert len(data) <= 8
    assert np.array_equal(entropy.decode(data, [1000], [m]), q)


def test_cdf_is_deterministic_and_valid():
    m = LaplaceModel(decay=40000, bound=50)
    cdf = entropy.quantized_cdf(m)
    assert len(cdf) == 2 * 50 + 3
    assert cdf[0] == 0 and cdf[-1] == 1 << 16
    assert all(b > a for a, b in zip(cdf, cdf[1:]))
    # symmetric around the centre symbol
    f = np.diff(cdf)[:-1]
    assert abs(int(f[0]) - int(f[-1])) <= 1


@pytest.mark.parametrize("seed", range(20))
def test_garbage_payload_never_crashes(seed):
    rs = np.random.RandomState(seed)
    garbage = rs.randint(0, 256, rs.randint(0, 200)).astype(np.uint8).tobytes()
    if seed % 2:
        garbage = b"\xff" * len(garbage)
    models = [LaplaceModel(decay=60000, bound=5), LaplaceModel(decay=100, bound=0)]
    out = entropy.decode(garbage, [500, 300], models)
    assert out.shape == (800,)


def test_compact_tables_are_pinned():
    """Version 7 stores a context bucket's model as two indexes into these tables: a changed table decodes
    every such file differently (a format break, not a new golden value)."""
    import hashlib

    d, b = entropy.COMPACT_DECAYS, entropy.COMPACT_BOUNDS
    assert len(d) == 256 and all(x > y for x, y in zip(d, d[1:])) and d[0] < 65536 and d[-1] >= 1
    assert len(b) <= 256 and b[:128] == tuple(range(128)) and all(x < y for x, y in zip(b, b[1:]))
    assert b[-1] == entropy.MAX_BOUND
    assert hashlib.sha256(np.array(d + b, dtype="<u2").tobytes()).hexdigest()[:16] == "83f8cca5eab9d4b9"


@pytest.mark.parametrize("scale", [0.05, 0.6, 4.0, 40.0, 600.0])
def test_compact_models_cost_almost_nothing(scale):
    q = _laplace_ints(4000, scale, seed=3)
    free, compact = entropy.fit_model(q), entropy.fit_compact_model(q)
    assert compact.bound >= min(int(np.abs(q).max()), entropy.MAX_BOUND)  # no escapes the free model lacks
    assert entropy.code_length(q, compact) <= 1.002 * entropy.code_length(q, free) + 1.0
    i, j = entropy.compact_indexes(compact)
    assert (entropy.COMPACT_DECAYS[i], entropy.COMPACT_BOUNDS[j]) == (compact.decay, compact.bound)
    data = entropy.encode(q, [q.size], [compact])
    assert np.array_equal(entropy.decode(data, [q.size], [compact]), q)


def test_a_model_outside_the_tables_has_no_compact_form():
    with pytest.raises(ValueError, match="no compact form"):
        entropy.compact_indexes(LaplaceModel(decay=65475, bound=3))
    with pytest.raises(ValueError, match="no compact form"):
        entropy.compact_indexes(LaplaceModel(decay=entropy.COMPACT_DECAYS[9], bound=129))


def test_the_largest_symbols_round_trip_within_the_stream_bound_and_larger_ones_are_refused():
    m = LaplaceModel(decay=65535, bound=0)  # every nonzero symbol an escape
    for k in (2, 3, 1000):
        q = np.full(k, -entropy.MAX_MAGNITUDE, np.int32)
        q[::2] = entropy.MAX_MAGNITUDE
        data = entropy.encode(q, [k], [m])
        assert len(data) <= entropy.MAX_STREAM_BYTES_PER_SYMBOL * k + entropy.STREAM_SLACK_BYTES
        np.testing.assert_array_equal(entropy.decode(data, [k], [m]), q)
    # CompressAI's coder would loop for ever on these
    with pytest.raises(ValueError, match="beyond"):
        entropy.encode(np.array([0, entropy.MAX_MAGNITUDE + 1], np.int32), [2], [m])


def test_a_stream_longer_than_its_symbols_can_be_is_refused_before_padding():
    from pranc_codec.errors import FormatError

    m = LaplaceModel(decay=30000, bound=5)
    q = np.arange(-50, 50, dtype=np.int32)
    data = entropy.encode(q, [100], [m])
    limit = entropy.MAX_STREAM_BYTES_PER_SYMBOL * 100 + entropy.STREAM_SLACK_BYTES
    long = data + bytes(limit - len(data))  # as long as allowed: still decodes
    np.testing.assert_array_equal(entropy.decode(long, [100], [m]), q)
    for read in (lambda b: entropy.decode(b, [100], [m]),
                 lambda b: entropy.SegmentReader([b], [0, 100], [m]).read(np.zeros(100, np.int64))):
        with pytest.raises(FormatError, match="longer than 100 symbols"):
            read(long + b"\0")
