"""The latents' context model (context.py) and its coding in format version 5 (grid_codec.py)."""
import numpy as np
import pytest
import torch

from pranc_codec import bitstream, entropy
from pranc_codec.context import CLIP, EDGES, MAX_BUCKETS, NEIGHBOURS, buckets, contexts, split, sublattice_dims
from pranc_codec.grid_codec import GridCode, pack
from pranc_codec.grid_decode import read_v5
from pranc_codec.grid_fit import latent_bits
from pranc_codec.latent import GridShape

SIDES = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (3, 5), (4, 7), (7, 4), (9, 16)]


@pytest.mark.parametrize("h,w", SIDES)
def test_sublattices_cover_each_position_once(h, w):
    q = torch.arange(h * w).view(h, w)
    subs = split(q)
    assert [tuple(s.shape) for s in subs] == sublattice_dims(h, w)
    assert sorted(torch.cat([s.reshape(-1) for s in subs]).tolist()) == list(range(h * w))


def _brute_neighbours(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (rounded half up), magnitude sum and position of every S_k entry, straight from the definition."""
    h, w = q.shape
    r0, c0 = [(0, 0), (1, 1), (0, 1), (1, 0)][k]
    offs = [(-1, -1), (-1, 1), (1, -1), (1, 1)] if k == 1 else [(-1, 0), (1, 0), (0, -1), (0, 1)]
    mus, mags = [], []
    for i in range(r0, h, 2):
        for j in range(c0, w, 2):
            vals = [int(q[i + a, j + b]) for a, b in offs if 0 <= i + a < h and 0 <= j + b < w]
            n = max(len(vals), 1)
            mus.append(int(np.floor(sum(vals) / n + 0.5)))
            mags.append(sum(abs(v) for v in vals))
    return np.array(mus), np.array(mags)


@pytest.mark.parametrize("h,w", SIDES)
def test_means_and_contexts_match_the_definition(h, w):
    rs = np.random.RandomState(h * 31 + w)
    q = rs.randint(-9, 10, size=(h, w)).astype(np.int64)
    subs = split(torch.from_numpy(q))
    for k in (1, 2, 3):
        mu, c = contexts(subs, None, k)
        want_mu, want_c = _brute_neighbours(q, k)
        assert mu.reshape(-1).tolist() == want_mu.tolist() and c.reshape(-1).tolist() == want_c.tolist()


@pytest.mark.parametrize("h,w", SIDES + [(37, 53)])
def test_the_decoders_numpy_contexts_are_the_fits_torch_ones(h, w):
    """grid_decode.py (numpy, the coder's) and context.py (torch, the fit's): the same integers, with a parent,
    latents past +-CLIP, and every bucket count."""
    from pranc_codec import grid_decode

    rs = np.random.RandomState(h * 7 + w)
    q = rs.randint(-30, 31, size=(h, w)).astype(np.int64)
    q[rs.rand(h, w) < 0.1] = CLIP * 3
    parent = rs.randint(-9, 10, size=split(torch.from_numpy(q))[0].shape).astype(np.int64)
    for k in range(4):
        for par in (None, parent):
            mu_t, c_t = contexts(split(torch.from_numpy(q)), None if par is None else torch.from_numpy(par), k)
            mu_n, c_n = grid_decode.contexts(grid_decode.split(q), par, k)
            assert np.array_equal(mu_n, mu_t.numpy()) and np.array_equal(c_n, c_t.numpy()), (k, par is None)
            for n in (1, 4, MAX_BUCKETS):
                assert np.array_equal(grid_decode.buckets(c_n, n), buckets(c_t, n).numpy())


def test_contexts_read_only_earlier_sublattices():
    """What the decoder has not decoded yet (S_k and later) must not change S_k's contexts."""
    rs = np.random.RandomState(1)
    q = torch.from_numpy(rs.randint(-5, 6, size=(9, 12)).astype(np.int64))
    parent = torch.from_numpy(rs.randint(-5, 6, size=(5, 6)).astype(np.int64))
    for k in range(4):
        other = q.clone()
        for j in range(k, 4):
            split(other)[j].copy_(torch.from_numpy(rs.randint(-50, 50, size=tuple(split(q)[j].shape))))
        a, b = contexts(split(q), parent, k), contexts(split(other), parent, k)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), k
    mu, c = contexts(split(q), parent, 0)
    assert torch.equal(c, parent.abs()) and not mu.any()


def test_neighbours_of_each_sublattice_are_earlier_ones():
    assert all(src < k for k, nb in NEIGHBOURS.items() for src, _, _ in nb)


def test_buckets():
    c = torch.tensor([0, 1, 2, 3, 4, 5, 6, 11, 12, 23, 24, 10**6])
    assert buckets(c, MAX_BUCKETS).tolist() == [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 9]
    assert buckets(c, 3).tolist() == [0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    assert buckets(c, 1).tolist() == [0] * 12
    assert len(EDGES) + 1 == MAX_BUCKETS


def _smooth_code(h: int, w: int, levels: int = 4, seed: int = 0, amp: float = 6.0) -> tuple[GridCode, GridShape]:
    """Latents that are smooth within a level (what a fit produces where the picture is smooth)."""
    rs = np.random.RandomState(seed)
    shape = GridShape(levels=levels, hidden=8, hidden_layers=2, channels=3)
    lat = []
    for a, b in shape.level_dims(h, w):
        coarse = torch.from_numpy(rs.randn(1, 1, a // 4 + 2, b // 4 + 2))
        field = torch.nn.functional.interpolate(coarse, size=(a, b), mode="bilinear", align_corners=False)
        lat.append(np.rint(amp * field[0, 0].numpy() + 0.7 * rs.randn(a, b)).astype(np.int32))
    mlp = [np.rint(rs.laplace(0, 40.0, size=n)).astype(np.int32) for n in shape.layer_sizes()]
    return GridCode(lat, mlp, [1 / 64, 1 / 128, 1 / 256]), shape


@pytest.mark.parametrize("h,w", SIDES + [(37, 53), (64, 96)])
def test_version5_round_trip_restores_every_symbol(h, w):
    code, shape = _smooth_code(h, w, levels=min(4, max(h, w).bit_length()), seed=h + w)
    code.latents[0].flat[0] = 3 * CLIP  # far beyond the entropy models' bound and the contexts' clip
    data = pack(code, shape, h, w)
    header, payload = bitstream.parse(data)
    assert data[4] == header.version == bitstream.GRID_VERSION and header.filter_taps == 0 and data[5] == 0
    lat, mlp, flt = read_v5(header, bitstream.split_segments(header, payload))
    assert flt is None
    for got, want in zip(lat, code.latents):
        assert np.array_equal(got, want)
    for got, want in zip(mlp, code.mlp_q):
        assert np.array_equal(got, want)


def test_context_coding_beats_one_model_per_level_on_smooth_latents():
    code, shape = _smooth_code(96, 128)
    data = pack(code, shape, 96, 128)
    header, payload = bitstream.parse(data)
    per_level = sum(entropy.code_length(q.reshape(-1), entropy.fit_model(q.reshape(-1))) for q in code.latents)
    mlp = sum(entropy.code_length(q, entropy.fit_model(q)) for q in code.mlp_q)
    streams = 8 * sum(len(seg) for seg in bitstream.split_segments(header, payload))
    context_coded = streams - mlp
    assert context_coded < 0.85 * per_level, (context_coded, per_level)
    # and the fit's rate estimate is what the coder writes for the latents, their models included
    with_models = 8 * len(data) - 8 * bitstream.packed_header_size(shape) - 8 * (len(payload) - streams // 8) - mlp
    estimate = latent_bits([torch.from_numpy(q.astype(np.float32)) for q in code.latents])
    assert abs(estimate - with_models) < 0.02 * with_models, (estimate, with_models)


def test_geometric_bits_is_the_coders_best_model():
    """The fit's closed-form code length of a bucket is the coder's to within 1 %: the coder searches
    400 decays (a little worse) and truncates the law at the largest magnitude (a little better)."""
    from pranc_codec.grid_fit import geometric_bits

    rs = np.random.RandomState(3)
    for scale in (0.05, 0.4, 1.0, 3.0, 20.0):
        q = np.rint(rs.laplace(0, scale, size=5000)).astype(np.int64)
        coder = entropy.code_length(q, entropy.fit_model(q))
        closed = float(geometric_bits(torch.tensor([float(q.size)], dtype=torch.float64),
                                      torch.tensor([float(np.abs(q).sum())], dtype=torch.float64)))
        assert abs(closed - coder) < 0.01 * coder + 1, (scale, closed, coder)


def test_pass_bits_tries_every_bucket_count():
    """The fit's size of one (level, pass), all bucket counts at once, against trying each count n in turn:
    buckets n-1 and above merged, each bucket coded with its best geometric law, n models in the header."""
    from pranc_codec.bitstream import MODEL_BITS
    from pranc_codec.grid_fit import _pass_bits, geometric_bits

    g = torch.Generator().manual_seed(2)
    best_counts = set()
    for trial in range(60):
        # sparse histograms with very different magnitudes per bucket, and (every third) tiny ones
        count = (torch.randint(0, 3000 if trial % 3 else 30, (MAX_BUCKETS,), generator=g)
                 * (torch.rand(MAX_BUCKETS, generator=g) > 0.3)).double()
        sum_mag = count * torch.rand(MAX_BUCKETS, generator=g, dtype=torch.float64) ** 2 * 4
        sizes = []
        for n in range(1, MAX_BUCKETS + 1):
            c = torch.cat([count[: n - 1], count[n - 1:].sum().reshape(1)])
            m = torch.cat([sum_mag[: n - 1], sum_mag[n - 1:].sum().reshape(1)])
            sizes.append(float(geometric_bits(c, m).sum()) + MODEL_BITS * n)
        assert _pass_bits(count, sum_mag) == pytest.approx(min(sizes), rel=1e-12, abs=1e-9)
        best_counts.add(int(np.argmin(sizes)) + 1)
    assert len(best_counts) >= 3, best_counts  # the cases exercise more than one choice


def test_zeroth_order_bits_is_the_empirical_entropy():
    from pranc_codec.grid_fit import zeroth_order_bits

    rs = np.random.RandomState(4)
    grids = [rs.laplace(0, 2.0, size=(40, 30)) - 3.2, np.zeros((5, 7)), rs.normal(6, 0.3, size=(9, 11))]
    want = 0.0
    for a in grids:
        _, counts = np.unique(np.rint(a), return_counts=True)
        want -= float((counts * np.log2(counts / a.size)).sum())
    got = zeroth_order_bits([torch.from_numpy(a.astype(np.float32)) for a in grids])
    assert got == pytest.approx(want, rel=1e-9)


def test_the_context_rate_term_measures_what_the_coder_writes():
    """Latents' code length under the training rate term, scales fitted, is within a few per cent of the coder's
    (the discretized Laplace of training and the coder's geometric law differ only in the zero bin)."""
    from pranc_codec.context import PASSES
    from pranc_codec.grid_fit import context_bits, context_state

    code, shape = _smooth_code(96, 128)
    grids = [torch.from_numpy(q.astype(np.float32)) for q in code.latents]
    state = context_state(grids)
    log_b = torch.zeros(shape.levels, PASSES, MAX_BUCKETS, requires_grad=True)
    opt = torch.optim.Adam([log_b], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        bits = context_bits(grids, log_b, state)
        bits.backward()
        opt.step()
    trained = float(context_bits(grids, log_b.detach(), state))
    assert abs(trained - state.bits) < 0.05 * state.bits, (trained, state.bits)
    # and far below one zero-mean Laplace per level, which it replaced
    from pranc_codec.grid_fit import laplace_bits

    per_level = sum(min(float(laplace_bits(g, torch.tensor(x))) for x in np.linspace(-3, 4, 71)) for g in grids)
    assert trained < 0.8 * per_level, (trained, per_level)


def test_the_context_rate_term_pulls_latents_towards_their_predicted_means():
    from pranc_codec.context import PASSES
    from pranc_codec.grid_fit import context_bits, context_state

    code, shape = _smooth_code(32, 48, levels=3)
    grids = [torch.from_numpy(q.astype(np.float32)) for q in code.latents]
    state = context_state(grids)
    ys = [(g + 0.3).requires_grad_(True) for g in grids]  # every latent a little above its integer
    context_bits(ys, torch.zeros(shape.levels, PASSES, MAX_BUCKETS), state).backward()
    grad = torch.cat([y.grad.reshape(-1) for y in ys])
    away = torch.sign(torch.cat([g.reshape(-1) for g in grids]) + 0.3 - state.mu)  # away from the predicted mean
    assert torch.all(grad * away > 0)
    # the means are the coder's: S1 .. S3 predicted from their neighbours, S0 at 0
    for l, g in enumerate(grids):
        start = sum(x.numel() for x in grids[:l])
        mu = state.mu[start: start + g.numel()].view_as(g)
        subs = split(g.long())
        for k in range(4):
            assert torch.equal(split(mu)[k], contexts(subs, grids[l + 1].long() if l + 1 < len(grids) else None,
                                                      k)[0].float()), (l, k)


def test_the_fits_rate_gradient_without_autograd_is_autograds():
    """grid_fit.add_context_grad (the fit's rate term, written into the latents' gradients) gives the bits and
    gradients that autograd gives through context_bits, at a level larger than one chunk and at coarse levels
    that share a chunk."""
    from pranc_codec import grid_fit
    from pranc_codec.context import PASSES

    code, shape = _smooth_code(288, 320, levels=5)  # level 0: 92,160 latents, more than a chunk of 65,536
    assert code.latents[0].size > grid_fit._CHUNK > sum(q.size for q in code.latents[1:])
    grids = [torch.from_numpy(q.astype(np.float32)) for q in code.latents]
    state = grid_fit.context_state(grids)
    gen = torch.Generator().manual_seed(5)
    noisy = [g + torch.rand(g.shape, generator=gen) - 0.5 for g in grids]
    log_b = (torch.rand(shape.levels, PASSES, MAX_BUCKETS, generator=gen) - 0.5).requires_grad_(True)
    coef = torch.tensor(3e-4)
    dist = [torch.randn(g.shape, generator=gen) for g in grids]  # the distortion's gradient, already there

    ys = [y.clone().requires_grad_(True) for y in noisy]
    (coef * grid_fit.context_bits(ys, log_b, state)).backward()
    grads = [d.clone() for d in dist]
    bits, g_log_b = grid_fit.add_context_grad(noisy, grads, log_b.detach(), state, coef)

    assert float(bits) == pytest.approx(float(grid_fit.context_bits(noisy, log_b.detach(), state)), rel=1e-6)
    for got, d, y in zip(grads, dist, ys):
        assert torch.equal(got, d + y.grad)  # the same operations on each value
    assert torch.allclose(g_log_b, log_b.grad, rtol=1e-6, atol=0)
