"""The latent-grid coordinate network: multi-resolution latents plus a small MLP.

A pixel (y, x) of an H x W image is represented by bilinear samples of
``levels`` single-channel latent grids, level l having ceil(H / 2^l) x
ceil(W / 2^l) values, and a ReLU MLP maps those ``levels`` features to colour:

    f(y, x) = MLP([bilinear(grid_l, y, x) for l in 0 .. levels-1]) + 0.5

(the Cool-chic / C3 family of image INRs). Each latent touches only the pixels
near it, so a minibatch step updates what it sees cheaply, and the bits go
where the picture needs them; on Kodak this beat the SIREN at every rate
(eval/ABLATIONS.md, sections K and L).

Two evaluations:

- :func:`sample_levels` for fitting: ``torch.nn.functional.grid_sample``,
  float32, differentiable (2.3x faster than gathering by hand);
- ``grid_decode.render`` for decoding (numpy): bilinear weights
  and the MLP in float64 with a fixed order of IEEE operations (no BLAS for the
  pixels that matter), so every machine decodes the same 8-bit pixels;
  :func:`_bilinear64` and :func:`_mlp64` are that order, per pixel, in torch:
  the reference the tests hold the decoder to.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .grid_decode import EXACT_MARGIN  # noqa: F401 (re-exported)
from .grid_decode import split_params  # noqa: F401 (slicing: the same for tensors)
from .shapes import GridShape


@functools.lru_cache(maxsize=16)
def _sample_scales(dims: tuple[tuple[int, int], ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(levels, 2): the factors 2 / (2^l w_l), 2 / (2^l h_l) that map pixel x + 1/2, y + 1/2 to grid_sample's [-1, 1]
    (cached: a fresh small tensor each step would be a host-to-device copy on CUDA)."""
    return torch.tensor([[2.0 / (2.0 ** l * w), 2.0 / (2.0 ** l * h)] for l, (h, w) in enumerate(dims)],
                        dtype=dtype, device=device)


def sample_levels(grids: list[torch.Tensor], py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Differentiable bilinear samples of every grid at pixels (py, px): (levels, N), float32.

    Feature-major, as :func:`mlp_forward_t` takes it.

    grids: (h_l, w_l) each; py, px: (N,) pixel indices (float). Level l is read at
    (p + 0.5) / 2^l - 0.5 in its own index space, clamped to its border, which is
    what :func:`_bilinear64` computes in float64.
    """
    # every level's sample positions in two passes over (levels, N, 2), not four small ones per level;
    # grid_sample (align_corners=False) reads index ((u + 1) w - 1) / 2 at normalised u
    scales = _sample_scales(tuple(tuple(g.shape) for g in grids), px.dtype, px.device)
    locs = (torch.stack([px, py], dim=-1) + 0.5).mul(scales[:, None, :]).sub_(1.0)
    out = [F.grid_sample(g.view(1, 1, *g.shape), loc.view(1, 1, -1, 2), mode="bilinear", padding_mode="border",
                         align_corners=False).view(-1) for g, loc in zip(grids, locs)]
    return torch.stack(out, dim=0)


def mlp_forward_t(feats: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """(levels, N) -> colour (C, N), the fitting layout.

    W @ h on feature-major activations: the row-major (N, width) form made
    autograd hand ReLU's backward a transposed gradient (2.5 ms instead of
    0.14 ms per step on Kodak).
    """
    h = feats
    for W, b in layers[:-1]:
        h = torch.addmm(b[:, None], W, h).relu_()  # in place: addmm's backward does not read its output
    W, b = layers[-1]
    return torch.addmm(b[:, None], W, h) + 0.5


def mlp_forward(feats: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """(N, levels) -> colour (N, C), unclamped, ~[0, 1] (BLAS; for fitting and the float32 pass)."""
    h = feats
    for W, b in layers[:-1]:
        h = torch.relu(torch.addmm(b, h, W.t()))
    W, b = layers[-1]
    return torch.addmm(b, h, W.t()) + 0.5


def _bilinear64(grid: torch.Tensor, level: int, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of one float64 grid (h, w) at int64 pixels (N,), in a fixed order of IEEE ops.

    The source position (p + 0.5) / 2^l - 0.5 and the weights are dyadic
    fractions, exact in float64; the blend is (a (1-fx) + b fx) (1-fy) + (c (1-fx) + d fx) fy,
    each product and sum rounded once, so the result is the same everywhere.
    """
    h, w = grid.shape
    s = 2.0 ** level
    u = (px.double() + 0.5) / s - 0.5
    v = (py.double() + 0.5) / s - 0.5
    x0f, y0f = torch.floor(u), torch.floor(v)
    fx, fy = u - x0f, v - y0f
    x0, y0 = x0f.long(), y0f.long()
    x1, y1 = (x0 + 1).clamp(0, w - 1), (y0 + 1).clamp(0, h - 1)
    x0, y0 = x0.clamp(0, w - 1), y0.clamp(0, h - 1)
    flat = grid.reshape(-1)
    top = flat[y0 * w + x0] * (1 - fx) + flat[y0 * w + x1] * fx
    bottom = flat[y1 * w + x0] * (1 - fx) + flat[y1 * w + x1] * fx
    return top * (1 - fy) + bottom * fy


def _mlp64(feats: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The MLP in float64 with a fixed summation order (b + x_0 w_0 + x_1 w_1 + ...), no BLAS."""
    h = feats
    for i, (W, b) in enumerate(layers):
        acc = b.expand(h.shape[0], -1).clone()
        for j in range(W.shape[1]):
            acc = acc + h[:, j: j + 1] * W[:, j]
        h = torch.relu(acc) if i < len(layers) - 1 else acc + 0.5
    return h


def init_uniform(count: int, fan_in: int, gen: torch.Generator) -> torch.Tensor:
    """(count,) weights uniform in +-1/sqrt(fan_in), like torch.nn.Linear's (encoder only)."""
    return (torch.rand(count, generator=gen) * 2 - 1) * (1.0 / math.sqrt(fan_in))


def init_mlp(shape: GridShape, gen: torch.Generator) -> list[torch.Tensor]:
    """Per-layer flat parameter vectors, :func:`init_uniform` (encoder only)."""
    return [init_uniform(fi * fo + fo, fi, gen) for fi, fo in shape.layer_dims()]
