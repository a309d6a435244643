"""The fitting loop: Adam on the coefficient vector alpha over random pixel minibatches."""
from __future__ import annotations

import math
from typing import Callable

import torch

from .config import FitConfig
from .inr import SirenShape, siren_forward, split_params
from .quantization import fake_quantize
from .subspace import Subspace

Progress = Callable[[int, float], None]  # (steps done since last call, current loss)


def _lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t)))


def fit_alpha(subspace: Subspace, shape: SirenShape, coords: torch.Tensor, target: torch.Tensor,
              alpha: torch.Tensor, cfg: FitConfig, *, steps: int, lr: float,
              steps_q: torch.Tensor | None = None, progress: Progress | None = None) -> torch.Tensor:
    """Minimise the pixel MSE over alpha and return the fitted alpha (k,), detached.

    coords: (N, 2) in [-1, 1]; target: (N, C) in [0, 1]; alpha: (k,) start point.
    With ``steps_q`` (per-coefficient quantization steps, (k,)) the forward pass
    sees quantized alpha (straight-through).
    """
    alpha = alpha.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([alpha], lr=lr)
    gen = torch.Generator(device=coords.device).manual_seed(cfg.seed)
    n = coords.shape[0]
    batch = min(cfg.batch_pixels, n)
    report_every = max(1, steps // 100)
    warmup = min(cfg.warmup_steps, steps // 4) if steps_q is None else 0
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        idx = torch.randint(0, n, (batch,), device=coords.device, generator=gen)
        a = alpha if steps_q is None else fake_quantize(alpha, steps_q)
        pred = siren_forward(coords[idx], split_params(subspace(a), shape), shape.omega0)
        loss = torch.mean((pred - target[idx]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None and (step + 1) % report_every == 0:
            progress(report_every, float(loss.detach()))
    if progress is not None and steps % report_every:
        progress(steps % report_every, float("nan"))
    return alpha.detach()


def group_sensitivity(subspace: Subspace, shape: SirenShape, coords: torch.Tensor, target: torch.Tensor,
                      alpha: torch.Tensor, probe: float, pixels: int, seed: int = 0) -> list[float]:
    """Per-coefficient MSE sensitivity of each coefficient group, h_g.

    Adds uniform noise of width ``probe`` to one group at a time and measures the
    MSE increase on ``pixels`` random pixels; the pair (+e, -e) cancels the
    first-order term, so h_g = dMSE / (n_g * probe^2 / 12) is the curvature the
    quantizer sees (MSE in [0, 1]^2 units per unit alpha^2).
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = coords.shape[0]
    idx = torch.randint(0, n, (min(pixels, n),), generator=gen).to(coords.device)
    xy, y = coords[idx], target[idx]

    def mse(a: torch.Tensor) -> float:
        with torch.no_grad():
            pred = siren_forward(xy, split_params(subspace(a), shape), shape.omega0)
            return float(torch.mean((pred.double() - y.double()) ** 2))

    base = mse(alpha)
    out, pos = [], 0
    for lay in subspace.layouts:
        k = lay.num_coefs
        e = (torch.rand(k, generator=gen) - 0.5).mul_(probe).to(alpha.device)
        up, down = alpha.clone(), alpha.clone()
        up[pos: pos + k] += e
        down[pos: pos + k] -= e
        d = 0.5 * (mse(up) + mse(down)) - base
        out.append(max(d, 0.0) / (k * probe * probe / 12.0))
        pos += k
    return out
