"""The coordinate network: a SIREN (Sitzmann et al. 2020) evaluated from a flat weight vector.

Layers: 2 -> w, then (hidden_layers - 1) x (w -> w), each followed by
sin(omega0 * .), then a linear w -> C head; the output is offset by 0.5 so
that a zero head predicts mid-grey. Weights are passed in, not owned, because
they are produced by the PRANC reparametrization (see ``subspace.py``).
"""
from __future__ import annotations

import torch

from .shapes import SirenShape


def width_for_params(n: int, hidden_layers: int, channels: int, lo: int, hi: int) -> int:
    """Largest width whose SIREN has at most ``n`` parameters, clamped to [lo, hi]."""
    best = lo
    for w in range(lo, hi + 1):
        if SirenShape(w, hidden_layers, channels, 30.0).num_params <= n:
            best = w
        else:
            break
    return best


def make_coords(height: int, width: int, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu", rows: slice | None = None) -> torch.Tensor:
    """Pixel-centre coordinates in [-1, 1]^2 as (N, 2) (x, y), row-major over ``rows``."""
    r0, r1 = (0, height) if rows is None else (rows.start, rows.stop)
    ys = (torch.arange(r0, r1, dtype=torch.float64) * 2 + 1) / height - 1
    xs = (torch.arange(width, dtype=torch.float64) * 2 + 1) / width - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(dtype=dtype, device=device)


def siren_forward(coords: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]],
                  omega0: float, fold: bool = False) -> torch.Tensor:
    """Evaluate the SIREN: coords (N, 2) -> colour (N, C), unclamped, ~[0, 1].

    ``layers`` holds (W (fan_out, fan_in), b (fan_out,)) per linear layer. With a
    leading tile dimension (coords (T, N, 2), W (T, fan_out, fan_in), b (T, fan_out))
    every tile is evaluated by its own network in one batched product.

    ``fold`` multiplies omega0 into W and b (a few thousand numbers) instead of
    into the activations (N x width per layer, and again in the backward pass):
    the fit and the decoder's float32 pass use it (5-15 % of a 1 bpp fitting
    step in a micro-benchmark, not measurable over a whole encode). It rounds
    differently from the unfolded form, so the exact float64 pass, which
    decides the pixels (render), keeps the unfolded one.
    """
    h = coords
    for W, b in layers[:-1]:
        h = torch.sin(_affine(h, omega0 * W, omega0 * b) if fold else omega0 * _affine(h, W, b))
    W, b = layers[-1]
    return _affine(h, W, b) + 0.5


def _affine(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h W^T + b for h (N, fan_in), or per tile for h (T, N, fan_in) with W (T, fan_out, fan_in)."""
    if h.dim() == 3:
        return torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
    return torch.addmm(b, h, W.t())


def split_params(theta: list[torch.Tensor], shape: SirenShape) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer flat vectors (n_l,) or (T, n_l) -> (W, b) pairs, W first (row-major), then b."""
    out = []
    for vec, (fi, fo) in zip(theta, shape.layer_dims()):
        lead = vec.shape[:-1]
        out.append((vec[..., : fi * fo].reshape(*lead, fo, fi), vec[..., fi * fo: fi * fo + fo]))
    return out


# float32 evaluation differs from float64 by < 5e-4 of an 8-bit level on Kodak
# (measured); pixels whose float32 value lies within this margin of a rounding
# boundary are re-evaluated in float64, so the 8-bit result is that of float64.
EXACT_MARGIN = 0.02


def render(thetas: list[torch.Tensor], shape: SirenShape, height: int, width: int,
           max_batch: int = 1 << 16) -> torch.Tensor:
    """Rasterize the network to uint8 pixels (height, width, C), in row bands.

    ``thetas`` are float64. Pixels are evaluated in float32 and, where the value
    is within ``EXACT_MARGIN`` of a rounding boundary, again in float64, so the
    output does not depend on the machine's float32 summation order or sin().
    """
    layers64 = split_params(thetas, shape)
    layers32 = split_params([t.float() for t in thetas], shape)
    device = thetas[0].device
    out = torch.empty((height * width, shape.channels), dtype=torch.uint8)
    rows = max(1, max_batch // width)
    with torch.no_grad():
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            xy = make_coords(height, width, torch.float64, device, slice(r0, r1))
            v = (siren_forward(xy.float(), layers32, shape.omega0, fold=True) * 255).double()
            near = ((v - v.floor() - 0.5).abs() < EXACT_MARGIN).any(dim=1)
            if near.any():
                v[near] = siren_forward(xy[near], layers64, shape.omega0) * 255
            out[r0 * width: r1 * width] = torch.round(v.clamp(0, 255)).to(torch.uint8).cpu()
    return out.view(height, width, shape.channels)
