"""The fitting loop of the latent-grid network: rate-distortion training of latents and MLP.

Loss = MSE (colour in [0, 1]) + lambda x rate (bits per pixel), where rate is
the code length of the latents under one zero-mean discretized Laplace per level
with a learned scale: the model ``entropy.py`` codes them with. Uniform noise
stands in for rounding, then the last ``ste_frac`` of the steps see the rounded
latents (straight-through gradient). ``lambda`` follows the target bpp: after
each rate evaluation of the noisy phase it is multiplied by
(rate of the rounded latents / their budget)^gain, a dual ascent on the rate
constraint that lands within a few per cent of the target (ABLATIONS.md K9);
the rate it follows is the entropy of the rounded latents, and each update is
at most a factor exp(gain).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .config import GridConfig
from .context import MAX_BUCKETS, buckets, contexts, split
from .fit import lr_at
from .latent import GridShape, init_mlp, mlp_forward_t, sample_levels, split_params

Progress = Callable[[int, float], None]  # (steps done since last call, current loss)


def laplace_bits(v: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """Code length (bits, summed) of values v under a unit-bin discretized Laplace of scale exp(log_b).

    With a = |v| and b the scale: -log2 P = (a - 1/2) / (b ln 2) - log2((1 - exp(-1/b)) / 2)
    for a >= 1/2 (linear in a: no exp per value), and
    -log2(1 - (exp(-(1/2 - a) / b) + exp(-(1/2 + a) / b)) / 2) in the zero bin.
    """
    b = torch.exp(log_b) + 1e-3
    a = v.abs()
    outer = (a - 0.5) / (b * math.log(2)) - torch.log2(0.5 * (1 - torch.exp(-1 / b)))
    # the zero bin's formula only ever sees a <= 1/2, where both exponents are <= 0: no
    # overflow, and no 0/0 (an overflow in the unused branch of torch.where still puts
    # 0 x inf = NaN into the gradient)
    ai = a.clamp(max=0.5)
    p0 = 1 - 0.5 * (torch.exp((ai - 0.5) / b) + torch.exp(-(ai + 0.5) / b))
    inner = -torch.log2(p0.clamp_min(1e-9))
    return torch.where(a < 0.5, inner, outer).sum()


def _conditional_entropy(q: torch.Tensor, b: torch.Tensor) -> float:
    """Empirical entropy (bits, summed) of int64 symbols q (n,) given int64 buckets b (n,)."""
    if q.numel() == 0:
        return 0.0
    span = int(q.max() - q.min()) + 1
    joint = torch.bincount(b * span + (q - q.min())).double()
    per_bucket = torch.bincount(b).double()
    joint, per_bucket = joint[joint > 0], per_bucket[per_bucket > 0]
    return float((per_bucket * torch.log2(per_bucket)).sum() - (joint * torch.log2(joint)).sum())


def zeroth_order_bits(grids: list[torch.Tensor]) -> float:
    """Zeroth-order entropy (bits, summed over levels) of the rounded latents: 5x cheaper than entropy_bits."""
    bits = 0.0
    with torch.no_grad():
        for g in grids:
            q = torch.round(g).to(torch.int64).reshape(-1)
            counts = torch.bincount(q - q.min()).double()
            counts = counts[counts > 0]
            bits += float(-(counts * torch.log2(counts / q.numel())).sum())
    return bits


def entropy_bits(grids: list[torch.Tensor]) -> float:
    """Bits (summed) of the rounded latents under the coder's context model, as empirical entropies.

    Every sublattice of every level counts the entropy of its symbols given the finest
    context buckets (context.py): about what the coder's fitted models will cost.
    The lambda controller measures the rate with this (through the ratio to
    :func:`zeroth_order_bits`, refreshed every ``context_every`` steps, as it
    costs ~30 ms on Kodak), not with the learned scales, which lag behind at the
    start (with b = 1 an all-zero grid costs 1.35 bits a latent, and lambda
    shot up 30-fold at 0.125 bpp before the scales caught up).
    """
    with torch.no_grad():
        lat = [torch.round(g).to(torch.int64).cpu() for g in grids]
        bits = 0.0
        for l, q in enumerate(lat):
            subs = split(q)
            parent = lat[l + 1] if l + 1 < len(lat) else None
            for k in range(len(subs)):
                mu, ctx = contexts(subs, parent, k)
                bits += _conditional_entropy((subs[k] - mu).reshape(-1), buckets(ctx, MAX_BUCKETS).reshape(-1))
        return bits


@dataclass
class GridFit:
    """Fitted parameters: latents (float, before rounding) and MLP weights, float32."""

    latents: list[torch.Tensor]  # (h_l, w_l) per level
    weights: list[torch.Tensor]  # flat (n_l,) per MLP layer
    lam: float  # final rate weight (MSE per bpp)


def initial_lambda(cfg: GridConfig, bpp: float) -> float:
    """Starting rate weight for a target: the Kodak fit lambda ~ bpp^(-1/0.66) (ABLATIONS.md K)."""
    return cfg.lam_ref * (bpp / cfg.bpp_ref) ** (-cfg.lam_exponent)


def fit_grid(image: torch.Tensor, shape: GridShape, cfg: GridConfig, latent_bpp: float,
             progress: Progress | None = None, lam_range: float | None = None) -> GridFit:
    """Fit latents and MLP to ``image`` (H, W, C) float in [0, 1] for ``latent_bpp`` bits per pixel of latents.

    ``lam_range``: keep lambda within [start / lam_range, start x lam_range] (None: unbounded).
    """
    H, W, C = image.shape
    device = image.device
    target = image.reshape(-1, C).t().contiguous()  # (C, H W), the fitting layout
    n = H * W
    gen = torch.Generator().manual_seed(cfg.seed)
    grids = [torch.zeros(h, w, device=device, requires_grad=True) for h, w in shape.level_dims(H, W)]
    weights = [p.to(device).requires_grad_(True) for p in init_mlp(shape, gen)]
    log_b = torch.zeros(shape.levels, device=device, requires_grad=True)
    opt = torch.optim.Adam([{"params": grids + [log_b], "lr": cfg.lr}, {"params": weights, "lr": cfg.mlp_lr}],
                           fused=True)  # one kernel per tensor: 3.1 -> 0.5 ms a step on Kodak
    base = [g["lr"] for g in opt.param_groups]
    lam = lam0 = initial_lambda(cfg, latent_bpp)
    batch = min(cfg.batch_pixels, n)
    report_every = max(1, cfg.steps // 100)
    ste_from = int(cfg.steps * (1 - cfg.ste_frac))
    context_ratio = 1.0  # context-coded bits / zeroth-order bits of the rounded latents

    # Quantization noise: windows of one buffer at random offsets, not a fresh draw
    # per step (which took 3 ms of a 26 ms step); each latent still sees a new value.
    sizes = [h * w for h, w in shape.level_dims(H, W)]
    total = sum(sizes)
    noise_buf = (torch.rand(2 * total, generator=gen) - 0.5).to(device)

    def bits(ys: list[torch.Tensor]) -> torch.Tensor:
        return sum(laplace_bits(y, log_b[i]) for i, y in enumerate(ys))

    for step in range(cfg.steps):
        for g, b0 in zip(opt.param_groups, base):
            g["lr"] = lr_at(step, cfg.steps, b0, 0, cfg.final_lr)
        ste = step >= ste_from
        if ste:
            ys = [y + (torch.round(y) - y).detach() for y in grids]
        else:
            off = int(torch.randint(0, total, (1,), generator=gen))
            ys = [y + u.view_as(y) for y, u in zip(grids, noise_buf[off: off + total].split(sizes))]
        idx = torch.randint(0, n, (batch,), generator=gen).to(device)
        pred = mlp_forward_t(sample_levels(ys, (idx // W).float(), (idx % W).float()), split_params(weights, shape))
        loss = F.mse_loss(pred, target.index_select(1, idx))
        value = float(loss.detach())
        if ste or step % cfg.rate_every == 0:
            loss = loss + lam * (1 if ste else cfg.rate_every) * bits(ys) / n
            if not ste:
                zeroth = zeroth_order_bits(grids)
                if step % cfg.context_every == 0:
                    context_ratio = entropy_bits(grids) / max(zeroth, 1.0)
                r = zeroth * context_ratio / n
                step_log = math.log(max(r, 1e-6) / max(latent_bpp, 1e-6))
                lam *= math.exp(cfg.gain * max(-1.0, min(1.0, step_log)))
                if lam_range is not None:
                    lam = min(max(lam, lam0 / lam_range), lam0 * lam_range)
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):  # never let one bad step poison the latents (they are the file)
            continue
        loss.backward()
        opt.step()
        if progress is not None and (step + 1) % report_every == 0:
            progress(report_every, value)
    if progress is not None and cfg.steps % report_every:
        progress(cfg.steps % report_every, float("nan"))
    return GridFit([g.detach() for g in grids], [w.detach() for w in weights], lam)
