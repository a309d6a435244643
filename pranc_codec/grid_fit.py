"""The fitting loop of the latent-grid network: rate-distortion training of latents and MLP.

Loss = weighted MSE (colour in [0, 1]) + lambda x rate (bits per pixel). Each
pixel's squared error is weighted by how much MS-SSIM would notice it, mixed
with plain MSE (:func:`structure_weights`, ``structure_mix``). The rate is
the code length of the latents under the coder's context model (context.py):
each latent's discretized Laplace is centred on the mean its neighbours
predict, with a learned scale per (level, pass, context bucket). The means and
buckets are the coder's, computed from the rounded latents every
``context_every`` steps (:func:`context_state`). Uniform noise stands in for
rounding (narrowing over the second half of its phase, :func:`noise_width`),
then the last ``ste_frac`` of the steps (at most ``ste_max``) see the rounded
latents (straight-through gradient). Below
``finest_min_bpp`` of latents the finest level stays zero and out of all of
this (:func:`fits_finest`; the encoder gives such fits more steps). ``lambda``
follows the target bpp: after each rate evaluation of the noisy phase it is
multiplied by (rate of the rounded latents / their budget)^gain, a dual
ascent on the rate constraint (ABLATIONS.md K9); the rate it follows is the coder's code length
of the rounded latents, bucket models included, and each update is at most a
factor exp(gain). ``context_rate = False`` gives the older rate term, one
zero-mean Laplace per level (format version 4's model). The learning rates hold for the first
``lr_hold`` of the steps, then decay (:func:`fit_lr`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .bitstream import MODEL_BITS
from .config import GridConfig
from .context import MAX_BUCKETS, PASS_OF, PASSES, buckets, contexts, split
from .fit import lr_at
from .latent import GridShape, init_mlp, init_uniform, mlp_forward_t, sample_levels, split_params
from .optim import FusedAdam
from .time_budget import Budget
from .metrics import MS_SSIM_WEIGHTS, SSIM_SIGMA, SSIM_WINDOW

Progress = Callable[[int, float], None]  # (steps done since last call, current loss)


_LN2 = math.log(2)


# Elements per pass of the code length: a 64k-value chunk's intermediates (256 KB each in float32) stay in
# the core's cache, where an elementwise op runs 3-5x faster than over Kodak's 524k latents at once.
_CHUNK = 1 << 16


def _laplace_pass(v: torch.Tensor, log_b: torch.Tensor, index: torch.Tensor | None, mu: torch.Tensor | None,
                  grad_out: torch.Tensor, coef: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Code length of ``v - mu`` and its derivatives in one pass, chunk by chunk (no autograd).

    v, mu, index: flat (N,) (mu None: zero); log_b: (K,) with ``index`` choosing each value's model,
    or one value (index None). d bits / d v goes into ``grad_out`` (N,): written (``coef`` None), or
    scaled by the 0-dim ``coef`` and added to it. Returns the bits and d bits / d scale per model
    (float64, 0-dim and (K,)); :func:`_log_b_grad` turns the second into d bits / d log_b.

    A 64k-value chunk's intermediates (256 KB each in float32) stay in the core's cache, where an
    elementwise op runs 3-5x faster than over Kodak's 524k latents at once (eval/ABLATIONS.md N, U).
    """
    # With ai = min(a, 1/2), the zero bin's formula at ai = 1/2 is the outer one's
    # constant, and both its derivatives there are the outer ones': so
    # bits = zero_bin(ai) + (a - ai) / (b ln 2) everywhere, with no branch (torch.where
    # cost 1.1 ms a call on 393k values, three times an exp).
    with torch.no_grad():
        scale = torch.exp(log_b.reshape(-1)) + 1e-3  # (K,)
        inv = 1 / scale
        total = torch.zeros((), dtype=torch.float64, device=v.device)
        g_scale = torch.zeros(scale.numel(), dtype=torch.float64, device=v.device)  # d bits / d scale
        for s in range(0, v.numel(), _CHUNK):
            x = v[s: s + _CHUNK] if mu is None else v[s: s + _CHUNK] - mu[s: s + _CHUNK]
            models = index[s: s + _CHUNK] if index is not None else None
            # index_select: 2.5x faster than torch.take for a gather from a small table
            ib = inv.index_select(0, models) if models is not None else inv.expand_as(x)
            ai = x.abs()
            excess = ai.clone()
            ai.clamp_(max=0.5)
            excess -= ai
            # a <= 1/2: both exponents are <= 0, no overflow and no 0/0; e1 >= e2
            e1 = (ai - 0.5).mul_(ib).exp_()
            e2 = (ai + 0.5).mul_(ib).neg_().exp_()
            p0 = (e1 + e2).mul_(-0.5).add_(1).clamp_min_(1e-9)  # the zero bin's probability
            lin = excess.mul_(ib).mul_(1 / _LN2)  # the outer part: (a - ai) / (b ln 2)
            total -= p0.log().sum(dtype=torch.float64) / _LN2
            total += lin.sum(dtype=torch.float64)
            ib_p = p0.mul_(2 * _LN2).reciprocal_().mul_(ib)  # 1 / (2 b ln2 p0)
            if coef is None:
                torch.copysign(torch.sub(e1, e2).mul_(ib_p), x, out=grad_out[s: s + _CHUNK])
            else:
                grad_out[s: s + _CHUNK].add_(torch.copysign(torch.sub(e1, e2).mul_(ib_p), x).mul_(coef))
            # d bits / d scale = ib (ib_p (e1 (1/2 - ai) + e2 (ai + 1/2)) - lin)
            e1.mul_(torch.rsub(ai, 0.5))
            e1.addcmul_(e2, ai.add_(0.5)).mul_(ib_p).sub_(lin).mul_(ib)
            if models is not None:
                g_scale += torch.bincount(models, weights=e1, minlength=scale.numel())
            else:
                g_scale += e1.sum(dtype=torch.float64)
        return total, g_scale


def _log_b_grad(g_scale: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """d bits / d log_b (log_b's shape and dtype) from :func:`_laplace_pass`'s float64 d bits / d scale."""
    scale = torch.exp(log_b.detach().reshape(-1)) + 1e-3
    return (g_scale.to(log_b.dtype) * (scale - 1e-3)).reshape(log_b.shape)  # d scale / d log_b = scale - 1e-3


class _LaplaceBits(torch.autograd.Function):
    """Forward and backward of :func:`laplace_bits` in one pass over the values (:func:`_laplace_pass`).

    Autograd's version of the same formula took 23 ms (forward and backward) for
    Kodak's latents, a third of a fitting step's cost at a rate evaluation; the
    derivatives written out, in place and chunk by chunk, take a fraction of that
    (eval/ABLATIONS.md N, U).
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, log_b: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        flat = v.reshape(-1)
        g_v = torch.empty_like(flat)  # d bits / d v
        total, g_scale = _laplace_pass(flat, log_b, index.reshape(-1) if index is not None else None, None,
                                       g_v, None)
        ctx.save_for_backward(g_v.view_as(v), _log_b_grad(g_scale, log_b))
        return total.to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g_v, g_log_b = ctx.saved_tensors
        return grad * g_v, grad * g_log_b, None


def laplace_bits(v: torch.Tensor, log_b: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """Code length (bits, summed) of values v under unit-bin discretized Laplaces of scale exp(log_b) + 1e-3.

    log_b: a scalar (one model for all of v) or a (K,) table with ``index``
    (int64, v's shape) choosing each value's model. With a = |v| and b the scale:
    -log2 P = (a - 1/2) / (b ln 2) - log2((1 - exp(-1/b)) / 2) for a >= 1/2 (linear
    in a), and -log2(1 - (exp(-(1/2 - a) / b) + exp(-(1/2 + a) / b)) / 2) in the zero bin.
    """
    return _LaplaceBits.apply(v, log_b, index)


def geometric_bits(count: torch.Tensor, sum_mag: torch.Tensor) -> torch.Tensor:
    """Code length (bits) of ``count`` integers whose magnitudes sum to ``sum_mag`` under entropy.py's
    two-sided geometric law P(q) ~ r^|q| with its best decay (without the bound): float64, elementwise.

    Minimising -S log r + n log((1 + r) / (1 - r)) over r gives r = (sqrt(1 + m^2) - 1) / m
    for the mean magnitude m = S / n, clamped to the decays the header can hold.
    """
    m = sum_mag / count.clamp_min(1)
    r = ((1 + m * m).sqrt() - 1) / m.clamp_min(1e-12)
    r = r.clamp(1 / 65536, 65535 / 65536)
    return -sum_mag * torch.log2(r) + count * torch.log2((1 + r) / (1 - r))


def _pass_bits(count: torch.Tensor, sum_mag: torch.Tensor) -> float:
    """Bits of one (level, pass) as the coder codes it: the bucket count n (1..MAX_BUCKETS) minimising
    the symbols' code length plus n models in the header, buckets n-1 and above merged.

    count, sum_mag: (MAX_BUCKETS,) float64 per finest bucket. All n at once: buckets 0..n-2 as they are
    (a prefix sum), plus the merged tail (suffix sums).
    """
    per = geometric_bits(count, sum_mag)
    kept = per.cumsum(0) - per  # buckets before n-1
    tail = geometric_bits(count.flip(0).cumsum(0).flip(0), sum_mag.flip(0).cumsum(0).flip(0))
    n = torch.arange(1, count.numel() + 1, dtype=count.dtype)
    return float((kept + tail + MODEL_BITS * n).min())


def zeroth_order_bits(grids: list[torch.Tensor]) -> float:
    """Zeroth-order entropy (bits, summed over levels) of the rounded latents: 5x cheaper than latent_bits."""
    bits = 0.0
    with torch.no_grad():
        for g in grids:
            q = torch.round(g)
            # int32 and the offset taken in float: 2.5x faster than int64 on Kodak's finest level
            counts = torch.bincount(q.sub_(q.min()).to(torch.int32).reshape(-1)).double()
            counts = counts[counts > 0]
            bits += float(-(counts * torch.log2(counts / q.numel())).sum())
    return bits


@dataclass
class ContextState:
    """The coder's view of the rounded latents, for the rate term: every latent's predicted mean and model.

    Latents are flattened level by level (finest first, each row-major), as
    :func:`context_bits` concatenates them.
    """

    mu: torch.Tensor  # (num_latents,) float32: the mean the coder predicts from the neighbours (context.py)
    model: torch.Tensor  # (num_latents,) int64: index of the latent's (level, pass, bucket) scale in log_b.reshape(-1)
    bits: float  # the coder's code length of the rounded latents, bucket models included (bits)


def context_state(grids: list[torch.Tensor], first: int = 0) -> ContextState:
    """Means, models and code length of the rounded latents under the coder's context model.

    Levels below ``first`` (frozen at zero by the fit) are left out of the means, models and bits.

    The code length is what grid_codec.pack will spend on them: per level and pass,
    the geometric law of best decay in each bucket, the bucket count that
    minimises bits plus header, and the models' header fields. The lambda
    controller measures the rate with this (through the ratio to
    :func:`zeroth_order_bits`, refreshed every ``context_every`` steps), not
    with the learned scales, which lag behind at the start (with b = 1 an
    all-zero grid costs 1.35 bits a latent, and lambda shot up 30-fold at
    0.125 bpp before the scales caught up). The empirical conditional entropy it
    replaced was 4-6 % below the coder's size, and the files overshot
    (eval/ABLATIONS.md N).
    """
    with torch.no_grad():
        device = grids[0].device
        lat = [None] * first + [torch.round(g).to(torch.int64).cpu() for g in grids[first:]]
        bits, mus, models = 0.0, [], []
        for l in range(first, len(lat)):
            q = lat[l]
            mu_map = torch.zeros(q.shape, dtype=torch.float32)
            model_map = torch.zeros(q.shape, dtype=torch.int64)
            bits += _level_bits(q, lat[l + 1] if l + 1 < len(lat) else None, (mu_map, model_map, l))
            mus.append(mu_map.reshape(-1))
            models.append(model_map.reshape(-1))
        return ContextState(torch.cat(mus).to(device), torch.cat(models).to(device), bits)


def level_bits(q: torch.Tensor, parent: torch.Tensor | None) -> float:
    """The coder's code length (bits, bucket models included) of one level's integer latents q (h, w) int64
    under the context model, given the next coarser level ``parent`` (None for the coarsest): one level's share
    of :func:`context_state`'s ``bits``."""
    with torch.no_grad():
        return _level_bits(q, parent)


def _level_bits(q: torch.Tensor, parent: torch.Tensor | None,
                maps: tuple[torch.Tensor, torch.Tensor, int] | None = None) -> float:
    """:func:`level_bits`; with ``maps`` (mu_map, model_map, level) also writes each latent's predicted mean
    and model index into the two (h, w) maps."""
    subs = split(q)
    count = torch.zeros(PASSES, MAX_BUCKETS, dtype=torch.float64)
    sum_mag = torch.zeros(PASSES, MAX_BUCKETS, dtype=torch.float64)
    for k in range(len(subs)):
        mu, ctx = contexts(subs, parent, k)
        b = buckets(ctx, MAX_BUCKETS)
        flat = b.reshape(-1)
        count[PASS_OF[k]] += torch.bincount(flat, minlength=MAX_BUCKETS)
        sum_mag[PASS_OF[k]] += torch.bincount(flat, weights=(subs[k] - mu).abs().reshape(-1).double(),
                                              minlength=MAX_BUCKETS)
        if maps is not None:
            mu_map, model_map, l = maps
            split(mu_map)[k].copy_(mu)
            split(model_map)[k].copy_(b + (l * PASSES + PASS_OF[k]) * MAX_BUCKETS)
    return sum(_pass_bits(count[p], sum_mag[p]) for p in range(PASSES))


def latent_bits(grids: list[torch.Tensor]) -> float:
    """The coder's code length (bits) of the rounded latents, models included: :func:`context_state`'s ``bits``."""
    return context_state(grids).bits


def context_bits(ys: list[torch.Tensor], log_b: torch.Tensor, state: ContextState) -> torch.Tensor:
    """Differentiable code length (bits) of latents ys under the coder's context model.

    ys: (h_l, w_l) per level (noisy or straight-through rounded); log_b: (levels,
    PASSES, MAX_BUCKETS) learned log-scales, one Laplace per bucket as the coder
    fits them. The means and buckets are the coder's, from ``state`` (the rounded
    latents), held fixed between refreshes: the gradient pulls each latent
    towards its predicted mean, harder where its context says the picture is flat.
    All levels go through one :func:`laplace_bits` call on the flattened latents
    (as fast as one call per sublattice, 13.5 against 13.6 ms on Kodak; ABLATIONS.md R).
    """
    v = torch.cat([y.reshape(-1) for y in ys])
    return laplace_bits(v - state.mu, log_b.reshape(-1), state.model)


def add_context_grad(ys: list[torch.Tensor], grads: list[torch.Tensor], log_b: torch.Tensor, state: ContextState,
                     coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fit's rate term without autograd: :func:`context_bits` of ys, its gradient times ``coef`` added to
    ``grads`` (the levels' .grad, ys' shapes) in the same pass.

    Returns the bits (float64, 0-dim) and coef x d bits / d log_b. Autograd's path copied all levels into
    one vector, kept a gradient the size of the latents and added it to theirs in a backward pass
    (6.2 against 5.5 ms on Kodak at 1 bpp). The latents' gradients are autograd's to the last bit (the
    same operations on each value); the scales' per-model sums are float64 sums grouped chunk by chunk.
    """
    sizes = [y.numel() for y in ys]
    # the coarse levels that together fit in one chunk go through one pass: a pass costs its ~30
    # operations' overhead even for a level of 96 latents
    k = len(ys)
    while k > 0 and sum(sizes[k - 1:]) <= _CHUNK:
        k -= 1
    parts = [(y.detach().reshape(-1), g.view(-1)) for y, g in zip(ys[:k], grads[:k])]
    if k < len(ys):
        tail = torch.cat([y.detach().reshape(-1) for y in ys[k:]])
        parts.append((tail, torch.zeros_like(tail)))
    total = torch.zeros((), dtype=torch.float64, device=log_b.device)
    g_scale = torch.zeros(log_b.numel(), dtype=torch.float64, device=log_b.device)
    off = 0
    for v, g in parts:
        n = v.numel()
        bits, g_s = _laplace_pass(v, log_b.reshape(-1), state.model[off: off + n], state.mu[off: off + n], g, coef)
        total += bits
        g_scale += g_s
        off += n
    if k < len(ys):
        for g, part in zip(grads[k:], parts[-1][1].split(sizes[k:])):
            g.view(-1).add_(part)
    return total, coef * _log_b_grad(g_scale, log_b)


SSIM_C2 = 0.03 ** 2  # SSIM's contrast constant for colour in [0, 1]


_BLUR_ROWS = 64  # output rows per convolution: CPU conv2d took a workspace of ~11x its input


def _gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """SSIM's window (11 taps, sigma 1.5) over (1, C, H, W), borders replicated so the size is kept.

    In strips of ``_BLUR_ROWS`` rows: a depthwise ``conv2d`` over the whole picture took a workspace of about
    11x its input on the CPU (0.9 GB for a 3072 x 2048 picture, eval/ABLATIONS.md AB5); an output value is
    the same sum over its window either way."""
    k, r = SSIM_WINDOW, SSIM_WINDOW // 2
    g = torch.exp(-(torch.arange(k, dtype=x.dtype, device=x.device) - r) ** 2 / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()
    C, H = x.shape[1], x.shape[2]
    wh, wv = g.view(1, 1, 1, k).expand(C, 1, 1, k), g.view(1, 1, k, 1).expand(C, 1, k, 1)
    out = torch.empty_like(x)
    for r0 in range(0, H, _BLUR_ROWS):
        r1 = min(H, r0 + _BLUR_ROWS)
        lo, hi = max(0, r0 - r), min(H, r1 + r)  # the rows the vertical pass reads, then replicated borders
        h = F.conv2d(F.pad(x[:, :, lo:hi], (r, r, 0, 0), mode="replicate"), wh, groups=C)
        h = F.pad(h, (0, 0, r - (r0 - lo), r - (hi - r1)), mode="replicate")
        out[:, :, r0:r1] = F.conv2d(h, wv, groups=C)
    return out


def structure_weights(image: torch.Tensor, mix: float, cap: float) -> torch.Tensor:
    """Per-pixel weights of the squared error, (C, H W) with mean 1: MS-SSIM's view of an error.

    SSIM scores an error against the local contrast (its structure term is about
    1 - e^2 / (2 sigma^2 + C2)), so the same error costs more in a flat area than
    on an edge, where MSE counts both alike. Raw weight: sum over MS-SSIM's five
    scales s of beta_s / (2 sigma_s^2 + C2), sigma_s^2 the local variance (SSIM's
    window) of the picture average-pooled 2^s-fold, per channel; normalised to
    mean 1, capped at ``cap``, then mixed with plain MSE:
    mix x raw + (1 - mix). image: (H, W, C) colour in [0, 1].
    """
    H, W, C = image.shape
    # (1, C, H, W) made contiguous here, so every map below and the result are channel-major
    # like the target: the permuted view's strides used to carry through to the weights, and
    # the fit's index_select on them took 2.2 ms a step instead of 0.15
    cur = image.permute(2, 0, 1)[None].float().contiguous()
    # In place wherever the values allow (the same operations, the same values): with the blur, a picture-sized
    # temporary per operation took the weights to +1.1 GB over their input at 3072 x 2048 (eval/ABLATIONS.md AB5).
    raw = torch.zeros_like(cur)
    for beta in MS_SSIM_WEIGHTS:
        var = _gaussian_blur(cur * cur).sub_(_gaussian_blur(cur).square_()).clamp_min_(0)
        inv = torch.div(1.0, var.mul_(2).add_(SSIM_C2), out=var)
        raw += F.interpolate(inv, size=(H, W), mode="bilinear", align_corners=False).mul_(beta)
        del var, inv
        if min(cur.shape[-2:]) < 2:
            break
        cur = F.avg_pool2d(cur, 2, ceil_mode=True)
    raw = raw.div_(raw.mean()).clamp_max_(cap)
    mean = raw.mean()
    raw = raw.mul_(mix).div_(mean).add_(1 - mix)
    return raw[0].reshape(C, H * W)


def pixel_weights(image: torch.Tensor, cfg: GridConfig, given: torch.Tensor | None = None) -> torch.Tensor | None:
    """The fit's per-pixel error weights, (C, H W): ``given`` when the caller has them, else None for plain MSE
    (``cfg.structure_mix`` 0), else :func:`structure_weights` of ``image`` (H, W, C) at ``cfg``'s mix and cap."""
    if given is not None:
        return given
    if cfg.structure_mix <= 0:
        return None
    return structure_weights(image, cfg.structure_mix, cfg.structure_cap)


def seen_weights(weights: torch.Tensor | None, seen: np.ndarray | None, channels: int) -> torch.Tensor | None:
    """``weights`` ((C, H W), or None for plain MSE) zeroed at the pixels that are not ``seen`` (bool (H, W), of a
    picture with transparency) and scaled back to mean 1, so that the error is the seen pixels' alone and each
    weighs as before against the rate; ``weights`` itself where ``seen`` is None."""
    if seen is None:
        return weights
    mask = torch.from_numpy(seen.reshape(1, -1).astype(np.float32))
    w = mask.expand(channels, -1).clone() if weights is None else weights * mask.to(weights.device)
    return w.mul_(w.numel() / max(float(w.sum()), 1e-12))


@dataclass
class GridFit:
    """Fitted parameters: latents (float, before rounding) and MLP weights, float32."""

    latents: list[torch.Tensor]  # (h_l, w_l) per level
    weights: list[torch.Tensor]  # flat (n_l,) per MLP layer
    lam: float  # final rate weight (MSE per bpp)
    steps: int = 0  # the steps the fit took (the configured count, or what a time budget cut it to)


def decoded_residual(pred: torch.Tensor, ref: torch.Tensor,
                     bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """pred - ref as the decoder will see it (colour in [0, 1], any shapes that broadcast alike). bounds:
    :func:`decoded_bounds` of ``ref`` where the caller holds them (computed here otherwise).

    The decoder clips colours to [0, 1], so a prediction past a target of exactly 0 or 1 decodes to it: its
    error there is zero, and so is its gradient. Squared error would pull it back and spend the network on pixels
    that already decode right (3 % of Kodak's channel values are 0 or 255, a third of kodim20's; eval/ABLATIONS.md
    BG6). Elsewhere this is pred - ref.
    """
    return torch.clamp(pred, *(decoded_bounds(ref) if bounds is None else bounds)) - ref


def decoded_bounds(ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bounds :func:`decoded_residual` clamps a prediction of ``ref`` to: 0 below a target of 0 and 1 above
    a target of 1 (a picture's targets are k / 255, so 0 and 1 exactly), unbounded elsewhere."""
    return torch.where(ref == 0.0, 0.0, -math.inf), torch.where(ref == 1.0, 1.0, math.inf)


def refit_mlp(feats: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None, flat: list[torch.Tensor],
              shape: GridShape, steps: int, lr: float, batch: int, beta2: float, seed: int = 0) -> list[torch.Tensor]:
    """The MLP refitted to fixed latents: ``steps`` Adam steps on ``batch``-pixel minibatches, cosine-decayed lr.

    feats: (N, levels) features of the held latents; target: (N, C) colours in [0, 1]; weights: (N, C) per-pixel
    error weights, or None for plain MSE; flat: the MLP's per-layer flat weights. A step gathers its pixels' rows
    and runs feature-major like the fit's step (mlp_forward_t). Returns new flat weights (float32, detached); the
    inputs are not modified.
    """
    params = [w.detach().float().clone().requires_grad_(True) for w in flat]
    opt = FusedAdam([{"params": params, "lr": lr}], betas=(0.9, beta2))
    gen = torch.Generator().manual_seed(seed)
    # feature-major copies, once: a step's columns gathered from them are the (levels or C, batch) tensors the
    # step runs on, where gathering rows and transposing them took twice as long (the same values)
    feats_t, target_t = feats.t().contiguous(), target.t().contiguous()
    weights_t = None if weights is None else weights.t().contiguous()
    with torch.enable_grad():  # callers may run under no_grad (rounding.optimise)
        for i in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(i, steps, lr, 0, 0.0)
            idx = torch.randint(feats.shape[0], (batch,), generator=gen)
            err = decoded_residual(mlp_forward_t(feats_t.index_select(1, idx), split_params(params, shape)),
                                   target_t.index_select(1, idx))  # (C, batch)
            loss = err.square()
            if weights_t is not None:
                loss = loss * weights_t.index_select(1, idx)
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
    return [p.detach() for p in params]


def initial_lambda(cfg: GridConfig, bpp: float) -> float:
    """Starting rate weight for a target: the Kodak fit lambda ~ bpp^(-1/0.66) (ABLATIONS.md K)."""
    return cfg.lam_ref * (bpp / cfg.bpp_ref) ** (-cfg.lam_exponent)


def fits_finest(cfg: GridConfig, latent_bpp: float, levels: int) -> bool:
    """Whether the fit trains the finest latent level at this budget (bits per pixel of latents); a
    network of one level always does."""
    return latent_bpp >= cfg.finest_min_bpp or levels == 1


def straight_through_from(cfg: GridConfig) -> int:
    """The first straight-through step: the last ``ste_frac`` of the steps, at most ``ste_max`` of them."""
    return max(int(cfg.steps * (1 - cfg.ste_frac)), cfg.steps - cfg.ste_max)


def fit_lr(cfg: GridConfig, step: int, base: float) -> float:
    """A parameter group's learning rate at ``step`` of the fit: ``base`` for the first ``lr_hold`` of the steps (but
    never within ``lr_decay_min`` of the end), then fit.lr_at's cosine over the rest, down to about ``final_lr`` x
    ``base`` at the last step."""
    hold = lr_hold_steps(cfg)
    return base if step < hold else lr_at(step - hold, cfg.steps - hold, base, 0, cfg.final_lr)


def lr_hold_steps(cfg: GridConfig) -> int:
    """The steps at the full learning rate: ``lr_hold`` of them, but never within ``lr_decay_min`` of the end."""
    return max(0, min(int(cfg.lr_hold * cfg.steps), cfg.steps - cfg.lr_decay_min))


def noise_narrows_from(cfg: GridConfig, ste_from: int) -> float:
    """The step after which the quantization noise narrows, in a noisy phase of ``ste_from`` steps."""
    return cfg.noise_from * ste_from


def fixed_until(cfg: GridConfig) -> int:
    """How many of the fit's first steps run the same whatever ``cfg.steps`` is: at the full learning rate
    (:func:`fit_lr`), with full-width noise (:func:`noise_width`) and before the straight-through phase. A fit
    whose step count is changed after no more steps than this is the fit of the new count (time_budget.py)."""
    ste_from = straight_through_from(cfg)
    return min(lr_hold_steps(cfg), math.floor(noise_narrows_from(cfg, ste_from)) + 1, ste_from)


def fewest_steps(cfg: GridConfig, done: int) -> int:
    """The fewest steps a fit may be given after ``done`` of them: the least count whose :func:`fixed_until`
    covers them (it grows with the count)."""
    lo, hi = done, max(done, 1)
    while fixed_until(replace(cfg, steps=hi)) < done:
        lo, hi = hi, 2 * hi
    while lo < hi:  # the least count in (lo, hi] that covers them
        mid = (lo + hi) // 2
        if fixed_until(replace(cfg, steps=mid)) >= done:
            hi = mid
        else:
            lo = mid + 1
    return hi


def noise_width(cfg: GridConfig, step: int, ste_from: int) -> float:
    """The quantization noise's width at ``step`` of a noisy phase of ``ste_from`` steps: 1 up to ``noise_from`` of
    the phase, then linearly down to ``noise_end`` at its end."""
    start = noise_narrows_from(cfg, ste_from)
    if step <= start:
        return 1.0
    return 1.0 + (cfg.noise_end - 1.0) * (step - start) / max(1.0, ste_from - start)


def batch_size(cfg: GridConfig, pixels: int) -> int:
    """Pixels sampled a step for a picture of ``pixels``: ``cfg.batch_pixels`` up to ``cfg.batch_ref_pixels``,
    growing as (pixels / batch_ref_pixels) ^ batch_growth above it, and never more than the picture."""
    scale = max(1.0, pixels / cfg.batch_ref_pixels) ** cfg.batch_growth
    return min(pixels, round(cfg.batch_pixels * scale))


def revive_dead_units(feats: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]], opt: FusedAdam,
                      gen: torch.Generator) -> int:
    """Give every hidden ReLU unit that is zero on all of a batch's pixels fresh inputs; returns how many.

    feats: (levels, B) the batch's features; layers: the MLP's (W (out, in), b (out,)) tensors, changed in
    place. A dead unit has no gradient and never comes back, yet its weights are still coded. The revived
    unit gets new incoming weights (drawn as at init), a bias that makes it active on half the batch, and
    zero outgoing weights, so the MLP's output is unchanged and the fit lets the unit in gradually. Its
    entries' Adam moments restart: the first moment at zero, the second at its tensor's mean, so its first
    steps are as large as its neighbours' (a zero second moment would make them ~3x lr).
    """
    h, count = feats, 0
    for i, (W, b) in enumerate(layers[:-1]):
        pre = torch.addmm(b[:, None], W, h)
        dead = (pre <= 0).all(dim=1).nonzero().reshape(-1)
        if len(dead):
            count += len(dead)
            W[dead] = init_uniform(len(dead) * W.shape[1], W.shape[1], gen).view(len(dead), -1).to(W.device)
            b[dead] = -torch.quantile(W[dead] @ h, 0.5, dim=1)
            W_next = layers[i + 1][0]
            W_next[:, dead] = 0.0
            for p, sel in ((W, (dead,)), (b, (dead,)), (W_next, (slice(None), dead))):
                s = opt.state.get(p)
                if s is not None:
                    s[0][sel] = 0.0
                    s[1][sel] = s[1].mean()
            pre = torch.addmm(b[:, None], W, h)
        h = pre.relu_()
    return count


def fit_grid(image: torch.Tensor, shape: GridShape, cfg: GridConfig, latent_bpp: float,
             progress: Progress | None = None, lam_range: float | None = None,
             pix_w: torch.Tensor | None = None, budget: Budget | None = None, sweeps: int = 0) -> GridFit:
    """Fit latents and MLP to ``image`` (H, W, C) float in [0, 1] for ``latent_bpp`` bits per pixel of latents.

    ``lam_range``: keep lambda within [start / lam_range, start x lam_range] (None: ``cfg.lam_max_range``). ``pix_w``: the
    :func:`pixel_weights` of ``image``, (C, H W) on its device, if the caller has them (computed here otherwise).
    ``budget``: a deadline the fit's steps are cut to (at most ``cfg.steps``; :meth:`Budget.plan_fit`, with the
    ``sweeps`` of rounding the encode would make after it); ``GridFit.steps`` says how many it took.
    """
    H, W, C = image.shape
    device = image.device
    n = H * W
    gen = torch.Generator().manual_seed(cfg.seed)
    first = 0 if fits_finest(cfg, latent_bpp, shape.levels) else 1  # levels below first stay zero
    grids = [torch.zeros(h, w, device=device, requires_grad=l >= first) for l, (h, w) in
             enumerate(shape.level_dims(H, W))]
    free = grids[first:]
    # each layer's weight matrix and bias as tensors of their own, not views of one flat vector a layer: no
    # slice nodes in the backward. Adam is elementwise, so the files are the same (and so was the step's time,
    # ABLATIONS.md Y3); fit.weights are flat again at the end.
    layers = [(W.clone().requires_grad_(True), b.clone().requires_grad_(True))
              for W, b in split_params([p.to(device) for p in init_mlp(shape, gen)], shape)]
    weights = [t for layer in layers for t in layer]
    log_b = torch.zeros((shape.levels, PASSES, MAX_BUCKETS) if cfg.context_rate else shape.levels, device=device,
                        requires_grad=True)
    # fused: one kernel per tensor list, 3.1 -> 0.5 ms a step on Kodak (torch.optim.Adam(fused=True)'s kernel)
    opt = FusedAdam([{"params": free, "lr": cfg.lr}, {"params": weights, "lr": cfg.mlp_lr},
                     {"params": [log_b], "lr": cfg.effective_scale_lr}],
                    betas=(0.9, cfg.adam_beta2))
    base = [g["lr"] for g in opt.param_groups]
    lam = lam0 = initial_lambda(cfg, latent_bpp)
    lam_bound = cfg.lam_max_range if lam_range is None else min(lam_range, cfg.lam_max_range)
    batch = batch_size(cfg, n)
    report_every = max(1, cfg.steps // 100)
    ste_from = straight_through_from(cfg)
    context_ratio = 1.0  # context-coded bits / zeroth-order bits of the rounded latents

    # Quantization noise: windows of one buffer at random offsets, not a fresh draw
    # per step (which took 3 ms of a 26 ms step); each latent still sees a new value.
    sizes = [g.numel() for g in free]
    total = sum(sizes)
    noise_buf = (torch.rand(2 * total, generator=gen) - 0.5).to(device)

    state: ContextState | None = None  # set at step 0
    pix_w = pixel_weights(image, cfg, pix_w)
    # each pixel's colour, the bounds of decoded_residual and its error weights side by side, (H W, 3C or 4C): a
    # step gathers its pixels' rows at once, where gathering from (C, H W) read 2C scattered values a pixel (the
    # bounds are the colour's, so gathered with it rather than compared anew each step)
    colour = image.reshape(n, C)
    table = torch.cat([colour, *decoded_bounds(colour)] + ([] if pix_w is None else [pix_w.t()]), dim=1)
    table = table.contiguous()

    def bits(ys: list[torch.Tensor]) -> torch.Tensor:  # the older rate term (context_rate False), by autograd
        return sum(laplace_bits(y, log_b[i]) for i, y in enumerate(ys) if i >= first)

    # a time budget plans the step count at first_check, then at twice as many steps, and at the last step at
    # which the count planned can still change (fixed_until): a plan made early on a few noisy steps is not kept
    # where a later one knows better. Steps are timed from warm_steps on (the first ones allocate).
    most, warm, warm_at = cfg.steps, 0, 0.0
    check = 0
    if budget is not None:
        warm, check = budget.cfg.warm_steps, max(budget.cfg.first_check, budget.cfg.warm_steps + 1)
    step_scale = cfg.coarse_step_factor if first else 1.0  # the time after the fit is in full-model steps
    for step in itertools.count():  # cfg.steps may change as the budget plans
        if step >= cfg.steps:
            break
        if budget is not None and step == warm:
            warm_at = budget.clock()
        if check and step == check:
            until = fixed_until(cfg)
            if step <= until:
                steps = budget.plan_fit(step, (budget.clock() - warm_at) / (step - warm), fewest_steps(cfg, step),
                                        most, sweeps, step_scale)
                if steps != cfg.steps:
                    cfg = replace(cfg, steps=steps)
                    ste_from = straight_through_from(cfg)
                    until = fixed_until(cfg)
                    if progress is not None and hasattr(progress, "retotal"):
                        progress.retotal(steps)
            check = min(2 * step, until) if until > step else 0
        scale = fit_lr(cfg, step, 1.0)  # the schedule is linear in the base rate: once a step for every group
        for g, b0 in zip(opt.param_groups, base):
            g["lr"] = b0 * scale
        ste = step >= ste_from
        if ste:
            ys = grids[:first] + [y + (torch.round(y) - y).detach() for y in free]
        else:
            off = int(torch.randint(0, total, (1,), generator=gen))
            width = noise_width(cfg, step, ste_from)
            ys = grids[:first] + [y + (u.view_as(y) if width == 1.0 else width * u.view_as(y))
                                  for y, u in zip(free, noise_buf[off: off + total].split(sizes))]
        idx = torch.randint(0, n, (batch,), generator=gen).to(device)
        feats = sample_levels(ys, (idx // W).float(), (idx % W).float())  # (levels, batch)
        pred = mlp_forward_t(feats, layers)
        rows = table.index_select(0, idx).t()  # (3C or 4C, batch): colour, its bounds, then weights
        ref = rows[:C]
        err = decoded_residual(pred, ref, (rows[C: 2 * C], rows[2 * C: 3 * C])).square()
        loss = err.mean() if pix_w is None else (err * rows[3 * C:]).mean()
        value = float(loss.detach())
        every = cfg.ste_rate_every if ste else cfg.rate_every
        rate_coef = None  # d loss / d bits at a rate step of the context model (add_context_grad, after backward)
        if step % every == 0:
            refresh = step % cfg.context_every == 0
            if refresh:
                state = context_state(grids, first)
            if cfg.context_rate:
                rate_coef = torch.full((), lam * every, dtype=torch.float32, device=device) * (1 / n)  # as autograd had it
            else:
                loss = loss + lam * every * bits(ys) / n
            if not ste:
                zeroth = zeroth_order_bits(free)
                if refresh:
                    context_ratio = state.bits / max(zeroth, 1.0)
                r = zeroth * context_ratio / n
                step_log = math.log(max(r, 1e-6) / max(latent_bpp, 1e-6))
                lam *= math.exp(cfg.gain * max(-1.0, min(1.0, step_log)))
                lam = min(max(lam, lam0 / lam_bound), lam0 * lam_bound)
        opt.zero_grad()
        if not torch.isfinite(loss):  # never let one bad step poison the latents (they are the file)
            continue
        loss.backward()
        if rate_coef is not None:
            rate, g_log_b = add_context_grad(ys[first:], [g.grad for g in free], log_b, state, rate_coef)
            if not torch.isfinite(rate):
                continue
            log_b.grad = g_log_b
        opt.step()
        if cfg.revive_every and step % cfg.revive_every == cfg.revive_every - 1 and not ste:
            with torch.no_grad():
                revive_dead_units(feats.detach(), layers, opt, gen)
        if progress is not None and (step + 1) % report_every == 0:
            progress(report_every, value)
    if progress is not None and cfg.steps % report_every:
        progress(cfg.steps % report_every, float("nan"))
    return GridFit([g.detach() for g in grids], [torch.cat([W.detach().reshape(-1), b.detach()]) for W, b in layers],
                   lam, cfg.steps)
