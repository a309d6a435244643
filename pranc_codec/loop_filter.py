"""The loop filter: a least-squares k x k filter on the decoded 8-bit picture (format version 6).

The latent grid's output has errors that its neighbours predict (blur across
edges, ringing, a colour cast); a linear filter over each pixel's k x k
neighbourhood in every channel, fitted by least squares to the original
(a Wiener filter, the idea of VVC's adaptive loop filter), removes part of
them for a few hundred coefficients. Output channel c of pixel p:

    y_c(p) = clamp(x_c(p) + ((sum_j q[c, j] f_j(p) + 2^(s-1)) >> s), 0, 255)

with x the decoded uint8 picture (borders replicated), f_j the features
(x_{c'}(p + d) for every channel c' and offset d, or x_{c'}(p + d) + x_{c'}(p - d)
for point-symmetric filters, one per pair; then the constant 1), q integer
coefficients and s the shift. Every product and sum is an integer below 2^53,
so float64 arithmetic (BLAS included, in any order) is exact: the same pixels
on every machine and device.

The encoder (:func:`fit_filter`) solves the normal equations once for the
largest filter, takes the smaller and symmetric ones from the same sums, and
picks the shape and precision that minimise MSE + lambda x bits (none included).
The decoder's half, :class:`LoopFilter` and :func:`apply`, is numpy code in
``grid_decode.py`` (re-exported here).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import entropy, grid_decode
from .config import FilterConfig
from .grid_decode import LoopFilter
from .grid_decode import apply_filter as apply  # noqa: F401 (the decoder's, re-exported)
from .quantization import gptq_factor, gptq_round
from .shapes import HEADER_BITS, MAX_COEF, num_features, offsets

# Damping of the least squares' normal equations (and of GPTQ's factor of them), a share of their mean diagonal
_RIDGE = 1e-9


def _features(padded: torch.Tensor, rows: tuple[int, int], taps: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """(C taps^2 + 1, pixels) float64: every channel's taps x taps neighbourhood (the non-symmetric filter's
    features, in ``offsets`` order) of image rows [r0, r1), then the constant. padded: (C, H + 2r, W + 2r),
    a strip of the picture (``grid_decode.padded_strip``), borders replicated by r = taps // 2. ``out``: a
    buffer of that shape to write into (returned), reused strip after strip: a fresh 78 MB matrix a strip
    faulted its pages in every time, and reshaping each shifted slice then stacking them copied it twice
    (at 11.8 megapixels 11 of the least squares' 21 s; eval/ABLATIONS.md BC3)."""
    r0, r1 = rows
    r = taps // 2
    width = padded.shape[2] - 2 * r
    m = num_features(padded.shape[0], taps, False)
    if out is None or out.shape != (m, (r1 - r0) * width):
        out = torch.empty(m, (r1 - r0) * width, dtype=padded.dtype)
    i = 0
    for c in range(padded.shape[0]):
        for dy, dx in offsets(taps, False):
            out[i].view(r1 - r0, width).copy_(padded[c, r + r0 + dy: r + r1 + dy, r + dx: r + dx + width])
            i += 1
    out[i].fill_(1)
    return out


def _feature_map(channels: int, big: int, taps: int, symmetric: bool) -> torch.Tensor:
    """(m_small, m_big) 0/1 matrix: the features of (taps, symmetric) as sums of the big filter's features."""
    full = offsets(big, False)
    pos = {d: i for i, d in enumerate(full)}
    per = len(full)
    rows = []
    for c in range(channels):
        for d in offsets(taps, symmetric):
            row = torch.zeros(channels * per + 1, dtype=torch.float64)
            row[c * per + pos[d]] = 1
            if symmetric and d != (0, 0):
                row[c * per + pos[(-d[0], -d[1])]] = 1
            rows.append(row)
    last = torch.zeros(channels * per + 1, dtype=torch.float64)
    last[-1] = 1
    return torch.stack(rows + [last])


def filter_bits(coefs: np.ndarray) -> float:
    """Bits a filter of integer coefficients ``coefs`` (any shape) takes in the file: their code length under
    their fitted Laplace model plus the filter's header fields."""
    flat = coefs.reshape(-1).astype(np.int32)
    return entropy.code_length(flat, entropy.fit_model(flat)) + HEADER_BITS


def fit_filter(decoded: np.ndarray, original: np.ndarray, lam: float, cfg: FilterConfig,
               max_bits: float = math.inf, seen: np.ndarray | None = None) -> LoopFilter | None:
    """The filter (or None) minimising MSE + lam x bits / pixels over ``cfg``'s shapes and shifts, among those of
    at most ``max_bits`` bits.

    decoded, original: uint8 (H, W, C). MSE is of colour in [0, 1], bits are the coefficients' code length
    under their fitted Laplace model plus the model's header bits, as ``grid_codec.choose_mlp_bits`` counts.
    seen: bool (H, W), the pixels whose error counts (of a picture with transparency); None: all.
    """
    height, width, channels = decoded.shape
    n = height * width
    judged = n if seen is None else int(seen.sum())  # pixels over which the MSE is taken
    if not cfg.enabled or not cfg.taps:
        return None
    big = max(cfg.taps)
    r = big // 2
    m = num_features(channels, big, False)
    G = torch.zeros(m, m, dtype=torch.float64)
    B = torch.zeros(m, channels, dtype=torch.float64)
    rr = torch.zeros(channels, dtype=torch.float64)
    buf = None  # the strips' feature matrix, reused (:func:`_features`)
    # the decoder's strips (at most 65,536 pixels: a strip's features are at most 148 x 65,536 float64, 78 MB)
    for r0, r1 in grid_decode.filter_strips(height, width):
        padded = torch.from_numpy(grid_decode.padded_strip(decoded, (r0, r1), r))
        A = buf = _features(padded, (0, r1 - r0), big, buf)
        target = torch.from_numpy(original[r0: r1].astype(np.float64)).permute(2, 0, 1)
        res = (target.reshape(channels, -1)
               - padded[:, r: r + r1 - r0, r: r + width].reshape(channels, -1))  # what the filter adds
        if seen is not None:
            keep = torch.from_numpy(np.flatnonzero(seen[r0: r1].reshape(-1)))
            A, res = A.index_select(1, keep), res.index_select(1, keep)
        G += A @ A.t()
        B += A @ res.t()
        rr += (res * res).sum(1)
    scale = 255.0 ** 2 * max(judged, 1)  # sums of squared 8-bit errors -> MSE of colour in [0, 1]
    best: tuple[float, LoopFilter | None] = (float(rr.sum()) / (scale * channels), None)
    for taps in sorted(set(cfg.taps)):
        for symmetric in sorted(set(cfg.symmetric)):
            T = _feature_map(channels, big, taps, symmetric)
            Gs, Bs = T @ G @ T.t(), T @ B
            ridge = _RIDGE * Gs.diagonal().mean() * torch.eye(len(Gs), dtype=torch.float64)
            w = torch.linalg.solve(Gs + ridge, Bs)  # (m_small, C)
            # every channel's coefficients, at every shift, spread their errors through this shape's Gram matrix
            upper = gptq_factor(Gs.numpy(), _RIDGE) if cfg.gptq else None
            for shift in cfg.shifts:
                if upper is not None:
                    q = gptq_round(w.t().numpy(), upper, 2.0 ** -shift, MAX_COEF).T
                    q = torch.from_numpy(q.astype(np.float64))
                else:
                    q = torch.round(w * (1 << shift))
                wq = q / (1 << shift)
                # squared error of the filtered picture, from the sums; the final rounding adds ~1/12 a pixel
                sse = rr - 2 * (wq * Bs).sum(0) + (wq * (Gs @ wq)).sum(0) + judged / 12.0
                qi = q.t().numpy().astype(np.int64)
                if np.abs(qi).max() >= MAX_COEF:
                    continue
                bits = filter_bits(qi)
                if bits > max_bits:
                    continue
                cost = float(sse.sum()) / (scale * channels) + lam * bits / n
                if cost < best[0]:
                    best = (cost, LoopFilter(taps, symmetric, shift, qi.astype(np.int32)))
    return best[1]
