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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import entropy
from .config import FilterConfig
from .shapes import HEADER_BITS, MAX_COEF, num_features, offsets

_ROWS = 1 << 16  # pixels per strip: the feature matrix of a strip is at most 148 x 65536 float64 (78 MB)


@dataclass(frozen=True)
class LoopFilter:
    """A decoded or fitted filter: ``taps`` x ``taps``, point-symmetric or not, coefficients in 2^-shift units."""

    taps: int
    symmetric: bool
    shift: int
    coefs: np.ndarray  # int32 (C, num_features(C, taps, symmetric))


def _strips(height: int, width: int) -> list[tuple[int, int]]:
    rows = max(1, _ROWS // width)
    return [(r, min(height, r + rows)) for r in range(0, height, rows)]


def _features(padded: torch.Tensor, rows: tuple[int, int], taps: int) -> torch.Tensor:
    """(C taps^2 + 1, pixels) float64: every channel's taps x taps neighbourhood (the non-symmetric filter's
    features, in ``offsets`` order) of image rows [r0, r1), then the constant. padded: (C, H + 2r, W + 2r),
    the picture or a strip of it (:func:`_padded_strip`), borders replicated by r = taps // 2. (Stacked
    slices: 0.13 s faster a Kodak fit than ``F.unfold``.)"""
    r0, r1 = rows
    r = taps // 2
    width = padded.shape[2] - 2 * r
    out = [padded[c, r + r0 + dy: r + r1 + dy, r + dx: r + dx + width].reshape(-1)
           for c in range(padded.shape[0]) for dy, dx in offsets(taps, False)]
    out.append(torch.ones_like(out[0]))
    return torch.stack(out)


def _padded_strip(image: np.ndarray, rows: tuple[int, int], r: int) -> torch.Tensor:
    """uint8 (H, W, C) -> float64 (C, r1 - r0 + 2r, W + 2r): rows [r0 - r, r1 + r) and columns [-r, W + r) of
    the picture, borders replicated. A strip at a time: the whole picture in float64 held 24 bytes a pixel, and
    48 while it was padded (at 3072 x 2048 the decoder's peak was 1.22 GB with it, 0.86 GB without;
    ABLATIONS.md AC3)."""
    height, width = image.shape[:2]
    ys = np.clip(np.arange(rows[0] - r, rows[1] + r), 0, height - 1)
    xs = np.clip(np.arange(-r, width + r), 0, width - 1)
    return torch.from_numpy(image[ys][:, xs]).permute(2, 0, 1).double()


def apply(image: np.ndarray, flt: LoopFilter) -> np.ndarray:
    """Filter a decoded uint8 (H, W, C) picture; exact integer arithmetic (see the module docstring), strip by
    strip of rows so that the float64 work space stays bounded.

    Feature by feature, as FORMAT.md writes it: each feature plane (a shifted channel, or a symmetric pair's
    sum) is added into every output channel's accumulator times its coefficient. Every value is an integer
    below 2^53, so the order does not matter. A strip is held flat, rows at the padded width W + 2r, so that a
    shifted plane is a contiguous slice (offset dy (W + 2r) + dx) and every addition one vectorised pass; the
    2r extra columns a row are computed and dropped. Against the same sums as a float64 ``conv2d`` (torch has
    no fast float64 convolution on the CPU): 0.34-0.37 -> 0.05 s for kodim05 at 1 bpp (7 x 7 symmetric),
    2.0-5.8 -> 1.0-1.2 s at 3072 x 2048 (7 x 7), ``eval/bench_decode.py`` (ABLATIONS.md AK2).
    """
    height, width, channels = image.shape
    r = flt.taps // 2
    pw = width + 2 * r
    q = flt.coefs.astype(np.float64)  # (C, features)
    out = np.empty_like(image)
    half, div = float(1 << flt.shift >> 1), float(1 << flt.shift)
    for r0, r1 in _strips(height, width):
        rows = r1 - r0
        n = rows * pw  # outputs at the padded width
        # (C, (rows + 2r) pw + 2r): the last row's shifted slices reach 2r values past the padded strip
        padded = F.pad(_padded_strip(image, (r0, r1), r).reshape(channels, -1), (0, 2 * r))
        base = r * pw + r  # the first output pixel's position in the flat padded strip
        acc = torch.empty(channels, n, dtype=torch.float64)
        for c in range(channels):
            acc[c].fill_(float(q[c, -1]))
        pair = torch.empty(n, dtype=torch.float64)
        j = 0
        for ci in range(channels):
            for dy, dx in offsets(flt.taps, flt.symmetric):
                o = base + dy * pw + dx
                f = padded[ci, o: o + n]
                if flt.symmetric and (dy, dx) != (0, 0):
                    o2 = base - dy * pw - dx
                    f = torch.add(f, padded[ci, o2: o2 + n], out=pair)
                for c in range(channels):
                    if q[c, j]:
                        acc[c].add_(f, alpha=float(q[c, j]))
                j += 1
        corr = torch.floor((acc + half) / div).view(channels, rows, pw)[:, :, :width]  # power-of-two: exact
        centre = padded[:, base: base + n].view(channels, rows, pw)[:, :, :width]
        out[r0: r1] = (centre + corr).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
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


def fit_filter(decoded: np.ndarray, original: np.ndarray, lam: float, cfg: FilterConfig) -> LoopFilter | None:
    """The filter (or None) minimising MSE + lam x bits / pixels over ``cfg``'s shapes and shifts.

    decoded, original: uint8 (H, W, C). MSE is of colour in [0, 1], bits are the coefficients' code length
    under their fitted Laplace model plus the model's header bits, as ``grid_codec.choose_mlp_bits`` counts.
    """
    height, width, channels = decoded.shape
    n = height * width
    if not cfg.enabled or not cfg.taps:
        return None
    big = max(cfg.taps)
    r = big // 2
    m = num_features(channels, big, False)
    G = torch.zeros(m, m, dtype=torch.float64)
    B = torch.zeros(m, channels, dtype=torch.float64)
    rr = torch.zeros(channels, dtype=torch.float64)
    for r0, r1 in _strips(height, width):
        padded = _padded_strip(decoded, (r0, r1), r)
        A = _features(padded, (0, r1 - r0), big)
        target = torch.from_numpy(original[r0: r1].astype(np.float64)).permute(2, 0, 1)
        res = (target.reshape(channels, -1)
               - padded[:, r: r + r1 - r0, r: r + width].reshape(channels, -1))  # what the filter adds
        G += A @ A.t()
        B += A @ res.t()
        rr += (res * res).sum(1)
    scale = 255.0 ** 2 * n  # sums of squared 8-bit errors -> MSE of colour in [0, 1]
    best: tuple[float, LoopFilter | None] = (float(rr.sum()) / (scale * channels), None)
    for taps in sorted(set(cfg.taps)):
        for symmetric in sorted(set(cfg.symmetric)):
            T = _feature_map(channels, big, taps, symmetric)
            Gs, Bs = T @ G @ T.t(), T @ B
            ridge = 1e-9 * Gs.diagonal().mean() * torch.eye(len(Gs), dtype=torch.float64)
            w = torch.linalg.solve(Gs + ridge, Bs)  # (m_small, C)
            for shift in cfg.shifts:
                q = torch.round(w * (1 << shift))
                wq = q / (1 << shift)
                # squared error of the filtered picture, from the sums; the final rounding adds ~1/12 a pixel
                sse = rr - 2 * (wq * Bs).sum(0) + (wq * (Gs @ wq)).sum(0) + n / 12.0
                qi = q.t().numpy().astype(np.int64)
                if np.abs(qi).max() >= MAX_COEF:
                    continue
                flat = qi.reshape(-1).astype(np.int32)
                bits = entropy.code_length(flat, entropy.fit_model(flat)) + HEADER_BITS
                cost = float(sse.sum()) / (scale * channels) + lam * bits / n
                if cost < best[0]:
                    best = (cost, LoopFilter(taps, symmetric, shift, qi.astype(np.int32)))
    return best[1]
