"""Rate-distortion optimised rounding of the latents (pranc_codec/rounding.py)."""
import pytest
import torch

from pranc_codec import grid_codec
from pranc_codec import rounding as rounding_module
from pranc_codec.config import RoundingConfig
from pranc_codec.context import split
from pranc_codec.grid_fit import context_state, decoded_residual, refit_mlp
from pranc_codec.latent import GridShape, init_mlp, mlp_forward, sample_levels, split_params
from pranc_codec.rounding import footprint, optimise, pixel_errors


@pytest.mark.parametrize("h,w", [(37, 53), (16, 16), (5, 9), (1, 7)])
def test_each_pixel_reads_one_latent_of_each_sublattice_with_the_samplers_weights(h, w):
    """What makes the per-sublattice choice exact: a pixel's bilinear sample of a level is the sum over the four
    sublattices of (its one latent there) x (a weight), the weights summing to 1."""
    shape = GridShape(levels=4, hidden=4, hidden_layers=1, channels=1)
    gen = torch.Generator().manual_seed(0)
    grids = [torch.randn(d, generator=gen) for d in shape.level_dims(h, w)]
    idx = torch.arange(h * w)
    sampled = sample_levels(grids, (idx // w).float(), (idx % w).float())  # (levels, n)
    for l, g in enumerate(grids):
        total, weight = torch.zeros(h * w), torch.zeros(h * w)
        for k, sub in enumerate(split(g)):
            index, wk = footprint(h, w, tuple(g.shape), l, k)
            assert wk.min() >= 0
            if sub.numel():
                assert index.max() < sub.numel()
                total += wk * sub.reshape(-1)[index]
            else:
                assert wk.max() == 0
            weight += wk
        assert torch.allclose(weight, torch.ones(h * w))
        assert torch.allclose(total, sampled[l], atol=1e-5)


def _problem(seed: int = 1, h: int = 24, w: int = 32):
    """A random MLP, the picture it makes of integer latents, and those latents each moved by -1, 0 or +1."""
    shape = GridShape(levels=4, hidden=8, hidden_layers=2, channels=3)
    gen = torch.Generator().manual_seed(seed)
    truth = [torch.round(2 * torch.randn(d, generator=gen)) for d in shape.level_dims(h, w)]
    weights = init_mlp(shape, gen)
    layers = split_params(weights, shape)
    target = mlp_forward(grid_codec._features(truth, w, h * w), layers)
    latents = [t + torch.randint(-1, 2, t.shape, generator=gen) for t in truth]
    feats = grid_codec._features(latents, w, h * w)
    return shape, latents, layers, target, feats


def _mse(latents, layers, target, w):
    feats = grid_codec._features(latents, w, target.shape[0])
    return float(pixel_errors(feats, layers, target, None, 1 << 15).mean())


def test_without_a_price_on_bits_every_move_lowers_the_error():
    h, w = 24, 32
    shape, latents, layers, target, feats = _problem()
    before = _mse(latents, layers, target, w)
    out, new_feats, changed = optimise(latents, feats, layers, target, None, 0.0, 0, h, w, RoundingConfig(sweeps=2))
    assert changed > 0 and all(torch.equal(g, torch.round(g)) for g in out)
    after = _mse(out, layers, target, w)
    assert after < 0.5 * before
    # the features it hands back are those of the latents it hands back
    assert torch.allclose(new_feats, grid_codec._features(out, w, h * w), atol=1e-5)


def test_a_high_price_on_bits_moves_latents_to_their_predicted_means():
    h, w = 24, 32
    shape, latents, layers, target, feats = _problem(seed=2)
    bits = context_state(latents).bits
    out, _, _ = optimise(latents, feats, layers, target, None, 1e3, 0, h, w, RoundingConfig(sweeps=1, to_mean=True))
    assert context_state(out).bits < 0.5 * bits
    step, _, _ = optimise(latents, feats, layers, target, None, 1e3, 0, h, w, RoundingConfig(sweeps=1))
    assert context_state(out).bits < context_state(step).bits < 0.9 * bits  # one step at a time
    cheap, _, _ = optimise(latents, feats, layers, target, None, 1e-3, 0, h, w, RoundingConfig(sweeps=1))
    assert _mse(cheap, layers, target, w) < _mse(step, layers, target, w) < _mse(out, layers, target, w)


def test_a_step_toward_the_mean_alone_only_moves_latents_toward_their_predicted_values():
    """The ceiling's trim sweeps (RoundingConfig.trim_toward): one candidate a latent, a step toward the value the
    coder predicts for it. At a price on bits the moves cut the code length; at none they are taken only where
    they lower the error, which +-1 steps (also away from the prediction) lower further."""
    h, w = 24, 32
    shape, latents, layers, target, feats = _problem(seed=3)
    cfg = RoundingConfig(sweeps=1, deltas=(), toward_mean=True)
    out, _, changed = optimise(latents, feats, layers, target, None, 1e-2, 0, h, w, cfg)
    assert changed > 0
    moved = [(o - l).abs() for o, l in zip(out, latents)]
    assert all(float(m.max()) <= 1 for m in moved)  # one step at most
    assert context_state(out).bits < context_state(latents).bits
    # at no price on bits, a move toward the mean is taken only where it lowers the error
    free, _, _ = optimise(latents, feats, layers, target, None, 0.0, 0, h, w, cfg)
    assert _mse(free, layers, target, w) < _mse(latents, layers, target, w)
    both = RoundingConfig(sweeps=1)  # deltas +-1: also steps away from the mean
    away, _, _ = optimise(latents, feats, layers, target, None, 0.0, 0, h, w, both)
    assert _mse(away, layers, target, w) < _mse(free, layers, target, w)


def test_lambda_is_steered_between_sweeps_to_hold_the_code_length():
    h, w = 24, 32
    shape, latents, layers, target, feats = _problem(seed=5)
    bits = context_state(latents).bits
    cfg = RoundingConfig(sweeps=4)
    free, _, _ = optimise(latents, feats, layers, target, None, 3e-3, 0, h, w, cfg)
    held, _, _ = optimise(latents, feats, layers, target, None, 3e-3, 0, h, w, cfg, target_bits=bits)
    assert context_state(free).bits < 0.8 * bits  # at this price the sweeps alone drop a fifth of the bits
    assert abs(context_state(held).bits / bits - 1) < 0.5 * abs(context_state(free).bits / bits - 1)


def test_weighted_errors_and_frozen_levels():
    """A level below ``first`` is not touched; per-pixel weights steer the error where they are large."""
    h, w = 24, 32
    shape, latents, layers, target, feats = _problem(seed=3)
    latents[0] = torch.zeros_like(latents[0])
    feats = grid_codec._features(latents, w, h * w)
    weights = torch.ones(h * w, 3)
    weights[: h * w // 2] = 20.0  # the top half counts 20x
    out, _, _ = optimise(latents, feats, layers, target, weights, 0.0, 1, h, w, RoundingConfig(sweeps=1))
    assert torch.equal(out[0], latents[0])
    plain, _, _ = optimise(latents, feats, layers, target, None, 0.0, 1, h, w, RoundingConfig(sweeps=1))
    top = slice(0, h * w // 2)

    def top_mse(lat):
        f = grid_codec._features(lat, w, h * w)
        return float(pixel_errors(f[top], layers, target[top], None, 1 << 15).mean())

    assert top_mse(out) < top_mse(plain)


def test_the_coarsest_levels_keep_the_fits_rounding():
    """Levels from ``coarsest`` up are left as they came; the finer ones still move."""
    h, w = 24, 32
    shape, latents, layers, target, feats = _problem(seed=5)
    out, _, _ = optimise(latents, feats, layers, target, None, 0.0, 0, h, w, RoundingConfig(sweeps=1, coarsest=2))
    assert all(torch.equal(out[l], latents[l]) for l in (2, 3))
    assert not torch.equal(out[0], latents[0]) and not torch.equal(out[1], latents[1])
    every, _, _ = optimise(latents, feats, layers, target, None, 0.0, 0, h, w, RoundingConfig(sweeps=1, coarsest=4))
    assert not torch.equal(every[3], latents[3])  # where it is allowed, the coarsest level moves too


def test_no_sweeps_is_plain_rounding():
    h, w = 24, 32
    shape, latents, layers, target, feats = _problem(seed=4)
    out, out_feats, _ = grid_codec.optimise_rounding(target.view(h, w, 3), latents, feats, [torch.cat(
        [W.reshape(-1), b]) for W, b in layers], shape, grid_codec.GridConfig(), RoundingConfig(sweeps=0), 1e-4,
        1e-2)
    assert out is latents and out_feats is feats


def test_errors_are_priced_as_the_decoders_clip_leaves_them():
    """grid_fit.decoded_residual: past a target of exactly 0 or 1 a prediction decodes to it (the decoder clips
    to [0, 1]), so its error and gradient are zero there; elsewhere it is pred - ref. So the squared error is
    never under the clipped colours' and equals it wherever the prediction is in range or past its saturated
    target (not under 0 for a target of 1, say: that keeps its gradient).
    The rounding's pixel errors and the encoder's MSE use it."""
    ref = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    pred = torch.tensor([-0.2, 0.1, 1.3, 0.9, 0.7, 1.2, -0.1], requires_grad=True)
    r = decoded_residual(pred, ref)
    assert torch.allclose(r, torch.tensor([0.0, 0.1, 0.0, -0.1, 0.2, 0.7, -0.6]))
    r.square().sum().backward()
    assert pred.grad.tolist()[0] == 0.0 and pred.grad.tolist()[2] == 0.0  # no pull back past a saturated target
    assert all(g != 0.0 for i, g in enumerate(pred.grad.tolist()) if i not in (0, 2))

    gen = torch.Generator().manual_seed(4)
    target = torch.rand(5000, 3, generator=gen)
    target[torch.rand(5000, 3, generator=gen) < 0.3] = 1.0
    target[torch.rand(5000, 3, generator=gen) < 0.2] = 0.0
    p = 1.6 * torch.rand(5000, 3, generator=gen) - 0.3
    ours, clipped = decoded_residual(p, target).square(), (p.clamp(0, 1) - target).square()
    assert bool((ours >= clipped - 1e-7).all())
    exact = ((p >= 0) & (p <= 1)) | ((target == 0) & (p <= 1)) | ((target == 1) & (p >= 0))
    assert torch.allclose(ours[exact], clipped[exact]) and bool((ours[~exact] > clipped[~exact]).all())

    # an MLP that overshoots white everywhere: no error on a white picture, the plain error on a grey one
    # two levels, four hidden units, one hidden layer: colour 1.3 whatever the features
    layers = [(torch.zeros(4, 2), torch.ones(4)), (torch.zeros(3, 4), torch.full((3,), 0.8))]
    feats = torch.zeros(64, 2)
    white, grey = torch.ones(64, 3), torch.full((64, 3), 0.9)
    assert float(pixel_errors(feats, layers, white, None, 16).abs().max()) == 0.0
    assert torch.allclose(pixel_errors(feats, layers, grey, None, 16), torch.full((64,), 0.16))
    assert grid_codec._mlp_mse(feats, white, layers) == 0.0
    assert grid_codec._mlp_mse(feats, grey, layers) == pytest.approx(0.16)


def test_refit_mlp_lowers_the_weighted_error_deterministically_and_leaves_its_inputs_alone():
    h, w = 24, 32
    shape, latents, layers, target, feats = _problem(seed=5)
    gen = torch.Generator().manual_seed(9)
    flat = [torch.cat([W.reshape(-1), b]) for W, b in layers]
    noisy = [v + 0.2 * torch.randn(v.shape, generator=gen) for v in flat]
    kept = [v.clone() for v in noisy]
    weights = torch.rand(h * w, 3, generator=gen) * 4

    def err(flat_w):
        return float(pixel_errors(feats, split_params(flat_w, shape), target, weights, 1 << 15).mean())

    new = refit_mlp(feats, target, weights, noisy, shape, steps=150, lr=1e-2, batch=256, beta2=0.99, seed=3)
    assert err(new) < 0.5 * err(noisy)
    assert all(torch.equal(a, b) for a, b in zip(noisy, kept))
    again = refit_mlp(feats, target, weights, noisy, shape, steps=150, lr=1e-2, batch=256, beta2=0.99, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(new, again))


def test_the_rounding_refits_the_mlp_to_the_moved_latents_unless_told_not_to():
    h, w = 24, 32
    shape, latents, layers, target, feats = _problem(seed=6)
    gen = torch.Generator().manual_seed(2)
    flat = [torch.cat([W.reshape(-1), b]) + 0.1 * torch.randn(W.numel() + b.numel(), generator=gen)
            for W, b in layers]
    args = (target.view(h, w, 3), latents, feats, flat, shape, grid_codec.GridConfig())
    out, out_feats, mlp = grid_codec.optimise_rounding(*args, RoundingConfig(mlp_steps=100, mlp_batch=256), 1e-4,
                                                       1e-2)
    assert torch.allclose(out_feats, grid_codec._features(out, w, h * w), atol=1e-5)
    err = lambda f: float(pixel_errors(out_feats, split_params(f, shape), target, None, 1 << 15).mean())  # noqa: E731
    assert err(mlp) < err(flat)
    _, _, same = grid_codec.optimise_rounding(*args, RoundingConfig(mlp_steps=0), 1e-4, 1e-2)
    assert all(torch.equal(a, b) for a, b in zip(same, flat))


def test_the_rounding_holds_the_latents_budget_when_told_and_else_the_fits_code_length():
    """grid_codec.optimise_rounding steers towards budget_bits (rounding.aim_budget), which the fit's rate can
    miss by a few per cent: the larger the budget, the more bits the latents keep. With aim_budget off the
    budget is ignored and the latents' own code length is held, as with a budget equal to it."""
    h, w = 24, 32
    shape, latents, layers, target, feats = _problem(seed=5)
    flat = [torch.cat([W.reshape(-1), b]) for W, b in layers]
    bits = context_state(latents).bits
    args = (target.view(h, w, 3), latents, feats, flat, shape, grid_codec.GridConfig(structure_mix=0.0))

    def rounded_bits(budget: float, aim: bool = True) -> float:
        cfg = RoundingConfig(sweeps=4, mlp_steps=0, aim_budget=aim)
        out, _, _ = grid_codec.optimise_rounding(*args, cfg, 1e-3, 1e-2, budget_bits=budget)
        return context_state(out).bits

    held = rounded_bits(0.6 * bits, aim=False)
    assert rounded_bits(0.6 * bits) < rounded_bits(0.8 * bits) < held < rounded_bits(1.2 * bits)
    assert rounded_bits(bits) == held


def test_rails_keep_the_last_sweep_near_the_bits_held_when_lambda_is_far_off_the_pictures_own():
    """Sweeps at a price far off the picture's own swing the code length (a noisy picture went -52 %, then
    +26 %); the last sweep's rails (RoundingConfig.rate_rail) stop it at target x (1 +- rail), up to what one
    sublattice's moves do to its neighbours' means, or where it already was past them, no further. Rails that
    never bind change nothing."""
    h, w = 24, 32

    def ratio(latents, feats, layers, target, lam, rail, sweeps=3):
        held = context_state(latents).bits
        out, _, _ = optimise(latents, feats, layers, target, None, lam, 0, h, w,
                             RoundingConfig(sweeps=sweeps, rate_rail=rail), target_bits=held)
        return context_state(out).bits / held, out

    for seed in (5, 6):
        _, latents, layers, target, feats = _problem(seed=seed)
        small = [torch.round(0.5 * g) for g in latents]  # latents the picture wants larger: bits added
        small_feats = grid_codec._features(small, w, h * w)
        for lam in (0.0, 1e-5):  # one sweep, so the last is the one that overshoots
            free, _ = ratio(small, small_feats, layers, target, lam, 0.0, sweeps=1)
            railed, _ = ratio(small, small_feats, layers, target, lam, 0.04, sweeps=1)
            assert free > 1.15 and 1.0 < railed < 1.1
        for lam in (1e-2, 1e3):  # too high a price: bits cut
            two, _ = ratio(latents, feats, layers, target, lam, 0.0, sweeps=2)
            free, plain = ratio(latents, feats, layers, target, lam, 0.0)
            railed, _ = ratio(latents, feats, layers, target, lam, 0.04)
            assert free < two < 0.8 and two <= railed < 1.0  # the last sweep cuts no further
            _, loose = ratio(latents, feats, layers, target, lam, 10.0)
            assert all(torch.equal(a, b) for a, b in zip(loose, plain))


def test_the_railed_lambda_is_the_nearest_that_meets_the_bounds():
    gen = torch.Generator().manual_seed(0)
    costs = torch.randn(2, 5000, generator=gen, dtype=torch.float64)
    dbits = torch.randn(2, 5000, generator=gen, dtype=torch.float64) + 0.5  # cheap moves add bits, dear ones cut

    options = rounding_module._options(costs, dbits)

    def added(lam: float) -> float:
        return rounding_module._select(options, lam)[1]

    assert added(0.0) > 1000 and added(1e3) < -1000  # the bits fall as the price rises
    start = {"up": 0.05, "down": 5.0}
    for direction, lo, hi in [("up", -1e9, 100.0), ("up", -1e9, 0.0), ("down", -100.0, 1e9), ("down", 0.0, 1e9)]:
        lam0 = start[direction]
        assert not lo <= added(lam0) <= hi
        lam = rounding_module._railed_lambda(options, lam0, lo, hi)
        assert (lam > lam0) == (direction == "up") and lo <= added(lam) <= hi
        nearer = lam * (lam0 / lam) ** 0.02  # a little nearer the price asked breaks the bound
        assert not lo <= added(nearer) <= hi
    d = added(0.5)
    assert rounding_module._railed_lambda(options, 0.5, d - 1, d + 1) == 0.5  # already within: unchanged
    lam = rounding_module._railed_lambda(options, 0.0, -1e9, 0.0)  # a price from nothing
    assert lam > 0 and added(lam) <= 0


@pytest.mark.parametrize("to_mean", [False, True])
def test_the_rounding_in_spans_of_pixels_equals_the_rounding_in_one_span(monkeypatch, to_mean):
    # odd sizes: level 0's sublattices touch a subset of the pixels, and the borders of the others hold pixels of
    # weight 0, so both the gathered and the sliced spans are exercised
    h, w = 25, 33
    shape, latents, layers, target, feats = _problem(seed=4, h=h, w=w)
    weights = torch.rand(h * w, 3, generator=torch.Generator().manual_seed(2)) * 3
    cfg = RoundingConfig(sweeps=2, chunk=16, to_mean=to_mean)
    results = []
    for span_chunks in (1, 3, 10 ** 6):  # spans of 16 and 48 pixels, and one span
        monkeypatch.setattr(rounding_module, "_SPAN_CHUNKS", span_chunks)
        results.append(optimise(latents, feats, layers, target, weights, 2e-2, 0, h, w, cfg))
    (out, f, changed), *others = results
    assert changed > 0
    for o_out, o_f, o_changed in others:
        assert o_changed == changed
        assert all(torch.equal(a, b) for a, b in zip(out, o_out))
        assert torch.equal(f, o_f)
