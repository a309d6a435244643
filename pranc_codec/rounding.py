"""Rate-distortion optimised rounding of the latents (encoder only, after the fit).

The fit ends with the latents rounded to the nearest integer. Nearest is not
what the file wants: moving a latent by one step can lower its code length
more than it raises the error, or lower the error for a few more bits, and the
straight-through phase that ends the fit sees each choice only through a
gradient. This module makes those choices by measuring them, as video coders'
rate-distortion optimised quantization (RDOQ) does.

Why it is exact and cheap. A pixel is a bilinear blend of the 2 x 2 latents of
each level around it, and those four fall one in each of the level's four
sublattices (context.py: i and j even, both odd, and the two mixed). So the
pixels a sublattice's latents touch do not overlap: with everything else held,
the best value of each latent of one sublattice is a separate choice, and one
MLP pass over the picture per candidate value prices every latent of the
sublattice at once (its pixels' errors summed, plus lambda times its bits).
The sweep runs in the coder's order (coarsest level first, S0..S3), so each
choice sees the means and contexts the decoder will predict it from. The two
coarsest levels are left out (``RoundingConfig.coarsest``): a sublattice of a
few dozen latents costs a pass over every pixel as one of thousands does, and
their moves were worth nothing (ABLATIONS.md AW). It is
greedy: a choice's effect on the contexts of latents coded later is not
counted.

Between sweeps lambda is rescaled so that the latents' code length comes to
the caller's target (``RoundingConfig.hold_rate``: the latents' budget, or
where the fit's rate control put them, ``aim_budget``), and the
caller may refit the MLP to the moved latents (``refit``; grid_codec does,
``RoundingConfig.mlp_steps``: +0.05 dB more, ABLATIONS.md AA2).

On the fits of eight Kodak images at four rates, three sweeps gained at equal
rate +0.24 / +0.37 / +0.57 / +0.77 dB and +0.0045 / +0.0051 / +0.0029 / +0.0024
MS-SSIM at 0.125 / 0.25 / 0.5 / 1 bpp, every file ahead in both metrics, for
about 5 s of encoding (eval/ABLATIONS.md Z). The default makes four since
session 57: at the margin a sweep buys more than its time in fitting steps
(eval/ABLATIONS.md BL4, BM).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from . import entropy
from .config import RoundingConfig
from .context import MAX_BUCKETS, PASS_OF, PASSES, SUBLATTICES, buckets, contexts, split
from .grid_fit import context_state, decoded_bounds, decoded_residual, level_bits

Layers = list[tuple[torch.Tensor, torch.Tensor]]
# MLP chunks per span of the rounding's per-pixel work: 1,048,576 pixels (a Kodak picture is one span), about
# 60 MB of temporaries.
_SPAN_CHUNKS = 32


def _axis(n: int, size: int, level: int, parity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Along one axis of n pixels: the index (in a level of ``size`` latents) of the bilinear corner of the given
    parity, and its weight (0 where neither corner has it). Same positions as latent.sample_levels."""
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / 2.0 ** level - 0.5
    lo = torch.floor(u)
    frac = u - lo
    x0 = lo.long()
    x1 = (x0 + 1).clamp(0, size - 1)
    x0 = x0.clamp(0, size - 1)
    m0, m1 = (x0 % 2) == parity, (x1 % 2) == parity  # at a clamped border both corners are one latent
    weight = torch.where(m0, 1 - frac, 0.0) + torch.where(m1, frac, 0.0)
    return torch.where(m0, x0, x1), weight


def footprint(height: int, width: int, dims: tuple[int, int], level: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every pixel (row-major, height x width): the index of its one latent in sublattice k of a level of
    ``dims`` (row-major in the sublattice) and that latent's bilinear weight (float32, 0 where none)."""
    (rows_l, cols_l), (pr, pc) = dims, SUBLATTICES[k]
    yi, wy = _axis(height, rows_l, level, pr)
    xi, wx = _axis(width, cols_l, level, pc)
    sub_rows, sub_cols = (rows_l - pr + 1) // 2, (cols_l - pc + 1) // 2
    # a pixel with no corner of this parity (weight 0, at an odd-sized border) points at a latent in range
    rows = (yi // 2).clamp(0, max(sub_rows - 1, 0))
    index = (rows[:, None] * sub_cols + (xi // 2).clamp(0, max(sub_cols - 1, 0))[None, :]).reshape(-1)
    # the weights are dyadic (k / 2^(level+1) a side), so their float32 product is exact: the float64 product
    # cast down, without a picture-sized float64 pass
    return index, (wy.float()[:, None] * wx.float()[None, :]).reshape(-1)


def pixel_errors(feats: torch.Tensor, layers: Layers, target: torch.Tensor, weights: torch.Tensor | None,
                 chunk: int, level: int = 0, shift: torch.Tensor | None = None,
                 bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Per-pixel error (n,): the channels' mean of (weighted) squared error of the MLP on feats (n, levels), as
    the decoder's clip leaves it (grid_fit.decoded_residual), with ``shift`` (n,) added to feature ``level`` if
    given. target, weights: (n, C); bounds: grid_fit.decoded_bounds(target) where the caller holds them (the
    rounding: once for its thousands of calls rather than anew in each)."""
    out = torch.empty(feats.shape[0])
    for s in range(0, feats.shape[0], chunk):
        h = feats[s: s + chunk]
        if shift is not None:
            h = h.clone()
            h[:, level] += shift[s: s + chunk]
        for w, b in layers[:-1]:
            h = torch.addmm(b, h, w.t()).relu_()
        w, b = layers[-1]
        span = None if bounds is None else (bounds[0][s: s + chunk], bounds[1][s: s + chunk])
        e = decoded_residual(torch.addmm(b, h, w.t()).add_(0.5), target[s: s + chunk], span).square_()
        if weights is not None:
            e.mul_(weights[s: s + chunk])
        # the channels' mean as a sum of columns, ((e0 + e1) + e2) / 3, the values mean(1) gives: mean(1) over
        # three columns took as long as the last layer's matrix product
        acc = e[:, 0].clone()
        for c in range(1, e.shape[1]):
            acc.add_(e[:, c])
        out[s: s + chunk] = acc.div_(e.shape[1])
    return out


def _slopes(subs: list[torch.Tensor], parent: torch.Tensor | None) -> torch.Tensor:
    """(PASSES, MAX_BUCKETS) bits per unit of |symbol| of each bucket's Laplace model, fitted as the coder would
    to the level's current symbols (the models' fixed costs do not change with one symbol)."""
    out = torch.zeros(PASSES, MAX_BUCKETS, dtype=torch.float64)
    syms: list[list[torch.Tensor]] = [[] for _ in range(PASSES)]
    bks: list[list[torch.Tensor]] = [[] for _ in range(PASSES)]
    for k in range(len(SUBLATTICES)):
        mu, ctx = contexts(subs, parent, k)
        syms[PASS_OF[k]].append((subs[k] - mu).reshape(-1))
        bks[PASS_OF[k]].append(buckets(ctx, MAX_BUCKETS).reshape(-1))
    for p in range(PASSES):
        s, b = torch.cat(syms[p]).numpy(), torch.cat(bks[p]).numpy()
        for j in range(MAX_BUCKETS):
            q = s[b == j]
            if q.size:
                out[p, j] = -math.log2(entropy.fit_model(q).decay / 65536.0)
    return out


def _options(costs: torch.Tensor, dbits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 + candidates, latents) error and bits changes of [stay, candidates...]: stay changes nothing."""
    zero = torch.zeros(1, costs.shape[1], dtype=torch.float64)
    return torch.cat([zero, costs]), torch.cat([zero, dbits])


def _select(options: tuple[torch.Tensor, torch.Tensor], lam: float) -> tuple[torch.Tensor, float]:
    """Each latent's best option at ``lam``: the index into [stay, candidates...] (:func:`_options`) of the least
    error change + lam x bits change (the first on a tie), and the sum of the chosen bits changes."""
    costs, dbits = options
    pick = torch.argmin(costs + lam * dbits, dim=0)
    return pick, float(dbits.gather(0, pick[None]).sum())


def _railed_lambda(options: tuple[torch.Tensor, torch.Tensor], lam: float, lo: float, hi: float,
                   bracket: int = 24, halvings: int = 8) -> float:
    """``lam``, or about the nearest lambda whose choices change the bits by an amount within [lo, hi] (lo <= 0,
    lo <= hi).

    The bits a sublattice's choices add fall as lambda rises (a Lagrangian choice per latent), so stepping
    lambda 4-fold brackets the bound and a bisection in log lambda narrows it to 4^(1/2^halvings) (0.5 %).
    A bound that no lambda meets (a ``hi`` below what the cheapest choices save, a ``lo`` above what the
    dearest add) gets the last lambda tried: the nearest the choices come to it."""
    d = _select(options, lam)[1]
    if lo <= d <= hi:
        return lam
    up = d > hi  # too many bits: raise lambda
    near = far = lam
    if up and lam <= 0:  # stepping needs a start: no move that adds bits is taken from the largest such ratio on
        costs, dbits = options
        adds = (dbits > 0) & (costs < 0)
        far = float((-costs[adds] / dbits[adds]).max()) * 4.0 ** -bracket if bool(adds.any()) else 1.0

    def meets(x: float) -> bool:
        d = _select(options, x)[1]
        return d <= hi if up else d >= lo

    for _ in range(bracket):
        far = far * 4.0 if up else far / 4.0
        if meets(far):
            break
        near = far
    else:
        return far
    if near <= 0:
        return far
    for _ in range(halvings):  # near fails the bound, far meets it
        mid = math.sqrt(near * far)
        if meets(mid):
            far = mid
        else:
            near = mid
    return far


def _round_sublattice(subs: list[torch.Tensor], parent: torch.Tensor | None, k: int, slopes: torch.Tensor, l: int,
                      dims: tuple[int, int], feats: torch.Tensor, layers: Layers, target: torch.Tensor,
                      weights: torch.Tensor | None, base: torch.Tensor, lam: float, height: int, width: int,
                      cfg: RoundingConfig, rails: tuple[float, float] | None = None,
                      bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> int:
    """One sublattice k of level l: each latent moved to its best candidate, in place in ``subs`` (int64 views of
    the level), ``feats`` (column l) and ``base`` (the pixels' current errors). slopes: (MAX_BUCKETS,) bits per
    unit of |symbol| of this pass. rails: (lo, hi), bounds on the bits the moves may add (lo <= 0, lo <= hi), met
    as nearly as they can be by moving lambda for this sublattice (:func:`_railed_lambda`). bounds: as
    :func:`pixel_errors`'. Returns how many
    latents moved. (A function of its own so that its picture-sized vectors are freed before the next
    sublattice's are made.)"""
    mu, ctx = contexts(subs, parent, k)  # from what is already decided, as the decoder sees it
    cur, mu = subs[k].reshape(-1), mu.reshape(-1)
    slope = slopes[buckets(ctx, MAX_BUCKETS).reshape(-1)]
    index, wgt = footprint(height, width, dims, l, k)
    # only the pixels this sublattice touches can change: a quarter at level 0, whose samples fall on the
    # latents (no blend), so only those are priced there; from level 1 up all but a border row or column of
    # some sublattices, so all are (a pixel of weight 0 adds 0: its error is priced unchanged), where gathering
    # the touched ones took as long as an MLP pass
    live: torch.Tensor | None = None
    if l == 0:
        live = torch.nonzero(wgt).squeeze(1)
        index, wgt = index[live], wgt[live]
    # per-pixel work runs a span of pixels at a time, so that nothing but these (m,) vectors is picture-sized
    # (whole-picture gathers and temporaries: +0.9 GB at 3072 x 2048, ABLATIONS.md AC2); a span is a whole
    # number of MLP chunks, so pixel_errors chunks the pixels as it would all m at once
    m = index.numel()
    span_px = cfg.chunk * _SPAN_CHUNKS
    spans = [slice(s, min(s + span_px, m)) for s in range(0, m, span_px)]
    picks = [span if live is None else live[span] for span in spans]
    base_l = base if live is None else base[live]  # base is not written until every candidate is priced
    # a candidate is one move for every latent (a number: its pixels' shift is that many times their weight,
    # no gather) or a move per latent (a tensor)
    candidates: list[int | torch.Tensor] = list(cfg.deltas)
    if cfg.to_mean:
        candidates.append(mu - cur)
    if cfg.toward_mean:
        candidates.append(torch.sign(mu - cur))
    # every candidate's pixel errors, and the change it makes to each latent's error sum; a span's pixels are
    # gathered once for all the candidates
    errs = torch.empty(len(candidates), m)
    costs = torch.zeros(len(candidates), cur.numel(), dtype=torch.float64)
    for span, pick in zip(spans, picks):
        f_s, t_s = feats[pick], target[pick]
        w_s = None if weights is None else weights[pick]
        b_s = None if bounds is None else (bounds[0][pick], bounds[1][pick])
        index_s, wgt_s, base_s = index[span], wgt[span], base_l[span]
        for j, delta in enumerate(candidates):
            shift = delta[index_s] * wgt_s if isinstance(delta, torch.Tensor) else wgt_s * delta
            errs[j, span] = pixel_errors(f_s, layers, t_s, w_s, cfg.chunk, l, shift, b_s)
            costs[j].index_add_(0, index_s, (errs[j, span] - base_s).double())
    moves = torch.stack([d if isinstance(d, torch.Tensor) else torch.full_like(cur, d) for d in candidates])
    cur_bits = (cur - mu).abs().double() * slope
    dbits = (cur + moves - mu).abs().double() * slope - cur_bits
    options = _options(costs, dbits)
    if rails is not None:
        lam = _railed_lambda(options, lam, *rails)
    choice = _select(options, lam)[0]  # 0: stay, j + 1: candidate j
    moved = choice > 0
    if not bool(moved.any()):
        return 0
    best = torch.where(moved, moves.gather(0, (choice - 1).clamp_min(0)[None])[0], 0)
    subs[k].add_(best.view(subs[k].shape))  # subs[k] is a view of the level
    best_f = best.float()
    for span, pick in zip(spans, picks):
        pc = choice[index[span]]  # each pixel's latent's choice
        best_err = base_l[span].clone()
        for j in range(len(candidates)):
            best_err = torch.where(pc == j + 1, errs[j, span], best_err)
        feats[pick, l] += best_f[index[span]] * wgt[span]
        if live is None:
            base[span] = best_err
        else:
            base[pick] = best_err
    return int(torch.count_nonzero(best))


def optimise(latents: list[torch.Tensor], feats: torch.Tensor, layers: Layers, target: torch.Tensor,
             weights: torch.Tensor | None, lam: float, first: int, height: int, width: int,
             cfg: RoundingConfig, target_bits: float | None = None, errors: torch.Tensor | None = None,
             progress=None, refit: Callable[[torch.Tensor], Layers] | None = None,
             plan: Callable[[int], tuple[bool, bool, bool]] | None = None
             ) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """Sweeps of rate-distortion optimised rounding over the latents, in the coder's order.

    latents: rounded grids (h_l, w_l), any float or int dtype (CPU); levels below ``first`` (frozen at zero by
    the fit) are left alone, and so are those from ``cfg.coarsest`` up. feats: their (n, levels) float32
    features; layers: the MLP (float32); target: (n, C) colour in [0, 1]; weights: (n, C) per-pixel error
    weights or None. lam: the price of a bit in the
    per-pixel error's units summed over pixels (mean-over-pixels MSE x n per bit), for the first sweep; with
    ``target_bits`` (the coder's code length to hold, bits) it is rescaled before each later one. errors: the
    (n,) :func:`pixel_errors` of ``feats`` if the caller has them (not modified). ``progress`` is called once a
    sweep. ``refit``, if given, is called before each later sweep with the current features and returns the MLP
    that sweep prices against. ``plan``, if given, is asked as each sweep starts whether it is to be the last
    (else the ``cfg.sweeps``-th is), whether ``refit`` runs before it and whether it is skipped (the rounding
    ending before it), as a triple (final, refit, skip) (a time budget's
    :meth:`~pranc_codec.time_budget.Budget.plan_sweep`): the sweeps up to the last are those of a ``cfg.sweeps``
    that ends there, but for the refits it skips. Returns the new grids (integer values, the
    input's dtype), their features and how many latents changed.
    """
    lat = [g.to(torch.int64) for g in latents]
    feats = feats.clone()
    dims = [tuple(g.shape) for g in lat]
    changed = 0
    levels = len(lat)

    def parent_of(l: int) -> torch.Tensor | None:
        return lat[l + 1] if l + 1 < levels else None

    with torch.no_grad():
        bounds = decoded_bounds(target)
        base = errors.clone() if errors is not None else pixel_errors(feats, layers, target, weights, cfg.chunk,
                                                                      bounds=bounds)
        for sweep in range(cfg.sweeps):
            # rails on the last sweep only: the earlier ones may swing (the rescaling between sweeps steers them
            # back), and a Kodak file that lands within the rails is left as it was
            asked, refit_now, skip = plan(sweep) if plan is not None else (False, True, False)
            if skip:  # no time left for it (the sweeps so far stand; the rails of a last sweep never ran)
                break
            final = sweep == cfg.sweeps - 1 or asked
            rail = cfg.rate_rail if target_bits and final else 0.0
            # with rails, each level's exact code length, refreshed after each of its sublattices (whose moves also
            # change its other sublattices' means) and after its parent's (whose values are its contexts)
            per_level = [level_bits(lat[l], parent_of(l)) if l >= first else 0.0 for l in range(levels)] if rail else []
            if sweep and target_bits:  # steer the latents' code length to target_bits
                bits = sum(per_level) if rail else context_state(lat, first).bits  # the same sum, level by level
                ratio = (bits / target_bits) ** (1.0 / cfg.rate_elasticity)
                lam *= min(max(ratio, 1.0 / cfg.max_lam_step), cfg.max_lam_step)
            if sweep and refit is not None and refit_now:
                layers = refit(feats)
                base = pixel_errors(feats, layers, target, weights, cfg.chunk, bounds=bounds)
            for l in reversed(range(first, min(len(lat), cfg.coarsest))):
                subs = split(lat[l])  # views: updating a sublattice updates the level
                parent = parent_of(l)
                slopes = _slopes(subs, parent)
                for k in range(len(SUBLATTICES)):
                    if subs[k].numel() == 0:
                        continue
                    rails = None
                    if rail:  # neither past a rail nor further past it than the latents already are
                        now = sum(per_level)
                        rails = (min(target_bits * (1 - rail) - now, 0.0), max(target_bits * (1 + rail) - now, 0.0))
                    changed += _round_sublattice(subs, parent, k, slopes[PASS_OF[k]], l, dims[l], feats, layers,
                                                 target, weights, base, lam, height, width, cfg, rails, bounds)
                    if rail:
                        per_level[l] = level_bits(lat[l], parent)
                if rail and l - 1 >= first:
                    per_level[l - 1] = level_bits(lat[l - 1], lat[l])
            if progress is not None:
                progress(1, float("nan"))
            if final:
                break
    return [g.to(src.dtype) for g, src in zip(lat, latents)], feats, changed
