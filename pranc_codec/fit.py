"""The fitting loop: Adam on the coefficient vector alpha over random pixel minibatches."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .config import FitConfig
from .inr import SirenShape, make_coords, siren_forward, split_params
from .quantization import fake_quantize
from .subspace import Subspace
from .tiling import TileGrid

Progress = Callable[[int, float], None]  # (steps done since last call, current loss)


@dataclass
class TileData:
    """Pixels of every tile, padded to the largest tile.

    table: (T, P, 2 + C), per pixel its tile-local coordinates in [-1, 1] (the
    first 2 columns, ``coords``) and its colour in [0, 1] (the rest, ``target``),
    in one tensor so that a minibatch is one row gather; counts: (T,) real
    pixels per tile (rows past a tile's count are padding).
    """

    table: torch.Tensor
    counts: torch.Tensor

    @property
    def coords(self) -> torch.Tensor:
        return self.table[..., :2]

    @property
    def target(self) -> torch.Tensor:
        return self.table[..., 2:]

    @classmethod
    def from_image(cls, image: np.ndarray, grid: TileGrid, device: torch.device | str = "cpu") -> "TileData":
        """image: uint8 (H, W, C)."""
        c = image.shape[2]
        boxes = grid.boxes()
        P = max((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes)
        table = torch.zeros(len(boxes), P, 2 + c)
        counts = []
        for t, (y0, y1, x0, x1) in enumerate(boxes):
            n = (y1 - y0) * (x1 - x0)
            table[t, :n, :2] = make_coords(y1 - y0, x1 - x0)
            table[t, :n, 2:] = torch.from_numpy(image[y0:y1, x0:x1].reshape(-1, c).astype(np.float32) / 255.0)
            counts.append(n)
        return cls(table.to(device), torch.tensor(counts, device=device))

    def sample(self, per_tile: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``per_tile`` random pixels of every tile: coords (T, b, 2), target (T, b, C)."""
        T, P = self.table.shape[:2]
        u = torch.rand(T, per_tile, device=self.table.device, generator=gen)
        idx = (u * self.counts[:, None]).long().clamp_(max=P - 1)
        idx += torch.arange(0, T * P, P, device=idx.device)[:, None]
        rows = self.table.view(T * P, -1).index_select(0, idx.view(-1)).view(T, per_tile, -1)
        return rows[..., :2], rows[..., 2:]


def lr_at(step: int, total: int, base: float, warmup: int, floor: float) -> float:
    """Linear warm-up, then cosine decay to ``floor`` x ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))


def fit_alpha(subspace: Subspace, shape: SirenShape, data: TileData, alpha: torch.Tensor, cfg: FitConfig, *,
              steps: int, lr: float, steps_q: torch.Tensor | None = None,
              progress: Progress | None = None, stats: dict | None = None) -> torch.Tensor:
    """Minimise the pixel MSE over alpha and return the fitted alpha (k,), detached.

    Each step draws ``cfg.batch_pixels`` pixels spread evenly over the tiles.
    With ``steps_q`` (per-coefficient quantization steps, (k,)) the forward pass
    sees quantized alpha (straight-through).

    Divergence guard: SIRENs occasionally blow up at a learning rate that suits
    most images (seen on kodim23 at 1 bpp with 5 sin() layers: 20.7 dB instead of
    ~32). When the smoothed loss exceeds ``cfg.diverge_factor`` x its best value,
    alpha goes back to the best checkpoint, Adam restarts and the learning rate
    is halved for the rest of the fit. ``stats["restarts"]`` counts this.

    The input layer's coefficients learn at ``cfg.first_layer_lr`` x ``lr``: Adam
    moves every coefficient by about the learning rate per step, and a step of
    the input layer shifts the phase of every sine by omega0 x (its weight
    change), several times more than a hidden layer's step does.
    """
    sizes = subspace.spec.group_sizes()
    split = [sizes[0], sum(sizes[1:-1]), sizes[-1]]
    # three leaves, input layer, hidden layers and head, each with its own learning rate
    parts = [p.clone().requires_grad_(True) for p in alpha.detach().split(split)]
    mults = (cfg.first_layer_lr, 1.0, cfg.last_layer_lr)

    def new_adam() -> torch.optim.Adam:
        return torch.optim.Adam([{"params": [p], "lr": lr * m} for p, m in zip(parts, mults)])

    opt = new_adam()
    gen = torch.Generator(device=data.table.device).manual_seed(cfg.seed)
    T = data.counts.shape[0]
    per_tile = max(1, min(cfg.batch_pixels // T, int(data.counts.max())))
    report_every = max(1, steps // 100)
    warmup = min(cfg.warmup_steps, steps // 4) if steps_q is None else 0
    ema, best, best_alpha, scale, restarts = None, math.inf, alpha.detach().clone(), 1.0, 0
    for step in range(steps):
        rate = scale * lr_at(step, steps, lr, warmup, cfg.final_lr)
        for group, m in zip(opt.param_groups, mults):
            group["lr"] = m * rate
        xy, y = data.sample(per_tile, gen)
        alpha = torch.cat(parts)
        a = alpha if steps_q is None else fake_quantize(alpha, steps_q)
        pred = siren_forward(xy, split_params(subspace(a), shape), shape.omega0, fold=True)
        loss = torch.mean((pred - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.detach())
        ema = value if ema is None else 0.9 * ema + 0.1 * value
        if step % cfg.checkpoint_every == 0 and ema < best:
            best, best_alpha = ema, alpha.detach()  # a fresh tensor every step (torch.cat)
        if (ema > cfg.diverge_factor * best or not math.isfinite(value)) and restarts < cfg.max_restarts:
            with torch.no_grad():
                for p, b in zip(parts, best_alpha.split(split)):
                    p.copy_(b)
            opt = new_adam()
            scale, restarts, ema = 0.5 * scale, restarts + 1, best
            continue
        opt.step()
        if progress is not None and (step + 1) % report_every == 0:
            progress(report_every, value)
    if progress is not None and steps % report_every:
        progress(steps % report_every, float("nan"))
    if stats is not None:
        stats["restarts"] = restarts
    return torch.cat(parts).detach()


def group_sensitivity(subspace: Subspace, shape: SirenShape, data: TileData, alpha: torch.Tensor,
                      probe: float, pixels: int, seed: int = 0) -> list[float]:
    """Per-coefficient MSE sensitivity of each coefficient group, h_g.

    Adds uniform noise of width ``probe`` to one group at a time and measures the
    MSE increase on about ``pixels`` random pixels; the pair (+e, -e) cancels the
    first-order term, so h_g = dMSE / (n_g * probe^2 / 12) is the curvature the
    quantizer sees (MSE in [0, 1]^2 units per unit alpha^2).
    """
    gen = torch.Generator(device=data.table.device).manual_seed(seed)
    T = data.counts.shape[0]
    xy, y = data.sample(max(1, pixels // T), gen)
    cpu = torch.Generator().manual_seed(seed)

    def mse(a: torch.Tensor) -> float:
        with torch.no_grad():
            pred = siren_forward(xy, split_params(subspace(a), shape), shape.omega0, fold=True)
            return float(torch.mean((pred.double() - y.double()) ** 2))

    base = mse(alpha)
    out, pos = [], 0
    for k in subspace.spec.group_sizes():
        e = (torch.rand(k, generator=cpu) - 0.5).mul_(probe).to(alpha.device)
        up, down = alpha.clone(), alpha.clone()
        up[pos: pos + k] += e
        down[pos: pos + k] -= e
        d = 0.5 * (mse(up) + mse(down)) - base
        out.append(max(d, 0.0) / (k * probe * probe / 12.0))
        pos += k
    return out
