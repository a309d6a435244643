#!/usr/bin/env python3
"""Probe: would a learned predictor code the latents in fewer bits than the coder's context model?

Reads fits saved by ``eval/replay_fit.py fit`` and, per level and sublattice
(context.py's coding order), fits a small generalised linear model by maximum
likelihood: a discretized Laplace whose mean is a linear combination of the
already-coded neighbours (and the parent level's values) and whose scale is a
softplus of a linear combination of their magnitudes. Its code length, plus
8 bits per model parameter of header, is printed against the coder's own
(``grid_fit.context_state``: rounded neighbour mean, bucketed Laplaces, their
header included). A bound on what such a model could save on latents fitted
for the current coder (ABLATIONS.md X1):

    python eval/context_bound.py /tmp/fits/kodim01_0.25.pt /tmp/fits/kodim01_1.0.pt

Variants: ``4nb`` the coder's own four neighbours; ``+par`` the parent's value;
``r2`` / ``r3`` every coded neighbour within 2 / 3 positions; ``par3`` the
parent's 3 x 3 neighbourhood.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from pranc_codec.context import SUBLATTICES
from pranc_codec.grid_fit import context_state

VARIANTS = {"4nb": (1, -1), "4nb+par": (1, 0), "r2": (2, -1), "r2+par3": (2, 1), "r3+par3": (3, 1)}
HEADER_BITS = 8  # per model parameter


def known_offsets(k: int, radius: int) -> list[tuple[int, int]]:
    """Offsets (di, dj) from a position of S_k to positions of sublattices coded before it."""
    r, c = SUBLATTICES[k]
    order = {rc: i for i, rc in enumerate(SUBLATTICES)}
    return [(di, dj) for di in range(-radius, radius + 1) for dj in range(-radius, radius + 1)
            if (di or dj) and order[((r + di) % 2, (c + dj) % 2)] < k]


def shifted(q: torch.Tensor, di: int, dj: int, pad: int = 4) -> torch.Tensor:
    """q[i + di, j + dj] at every (i, j), zero outside."""
    h, w = q.shape
    p = F.pad(q[None, None], (pad, pad, pad, pad))[0, 0]
    return p[pad + di:pad + di + h, pad + dj:pad + dj + w]


def features(q: torch.Tensor, parent: torch.Tensor | None, k: int, radius: int,
             parent_radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F) features and (N,) symbols of S_k's positions."""
    r, c = SUBLATTICES[k]
    cols = [shifted(q, di, dj)[r::2, c::2] for di, dj in known_offsets(k, radius)]
    if parent is not None and parent_radius >= 0:
        up = parent.repeat_interleave(2, 0).repeat_interleave(2, 1)[:q.shape[0], :q.shape[1]]
        for di in range(-parent_radius, parent_radius + 1):
            for dj in range(-parent_radius, parent_radius + 1):
                cols.append(shifted(up, 2 * di, 2 * dj)[r::2, c::2])
    y = q[r::2, c::2].reshape(-1)
    if not cols:
        return torch.zeros(y.numel(), 0), y
    return torch.stack([x.reshape(-1) for x in cols], 1), y


def laplace_bits(y: torch.Tensor, mu: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Code length (bits) of integers y under unit-bin discretized Laplaces (mu, b), one scale per symbol
    (grid_fit.laplace_bits takes one scale per model index and autograd of its own, for the fit)."""
    def cdf(x: torch.Tensor) -> torch.Tensor:
        z = (x - mu) / b
        return torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0)), 1 - 0.5 * torch.exp(-z.clamp(min=0)))
    return -torch.log2((cdf(y + 0.5) - cdf(y - 0.5)).clamp_min(1e-12)).sum()


def fit_glm(x: torch.Tensor, y: torch.Tensor, iters: int = 250) -> tuple[float, int]:
    """Maximum-likelihood GLM on (x, y): (code length in bits, number of parameters)."""
    n, d = x.shape
    w = torch.zeros(d, requires_grad=True)
    a = torch.zeros(d + 1)
    a[0] = float(torch.log(torch.expm1(y.abs().mean().clamp_min(0.05))))
    a.requires_grad_(True)
    opt = torch.optim.Adam([w, a], lr=0.05)

    def bits() -> torch.Tensor:
        return laplace_bits(y, x @ w, F.softplus(a[0] + x.abs() @ a[1:]) + 0.02)
    for _ in range(iters):
        opt.zero_grad()
        (bits() / n).backward()
        opt.step()
    with torch.no_grad():
        return float(bits()), 2 * d + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fits", nargs="+", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    totals = dict.fromkeys(["ref", *VARIANTS], 0.0)
    for path in args.fits:
        levels = [torch.round(g).float() for g in torch.load(path)["latents"]]
        first = 0 if levels[0].abs().sum() > 0 else 1
        ref = context_state(levels, first).bits
        row = {}
        for name, (radius, parent_radius) in VARIANTS.items():
            total = 0.0
            for lv in range(first, len(levels)):
                if levels[lv].abs().sum() == 0:
                    continue
                parent = levels[lv + 1] if lv + 1 < len(levels) else None
                for k in range(4):
                    nll, params = fit_glm(*features(levels[lv], parent, k, radius, parent_radius))
                    total += nll + HEADER_BITS * params
            row[name] = total
            totals[name] += total
        totals["ref"] += ref
        print(f"{path.stem:16s} coder {ref:9.0f} bits  " +
              "  ".join(f"{v} {100 * (b / ref - 1):+.2f} %" for v, b in row.items()), flush=True)
    print("all              " + "  ".join(f"{v} {100 * (totals[v] / totals['ref'] - 1):+.2f} %" for v in VARIANTS))


if __name__ == "__main__":
    main()
