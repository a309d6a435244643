"""Uniform scalar quantization: the coefficient vector alpha, one step per group; a layer's weights by GPTQ.

Group g (layer g) is quantized with step ``delta_g = delta * 2^(-shift_g / 4)``:
``delta`` (float32) and the integer ``shift_g`` (int8, quarter octaves) are in
the header. The shifts let the encoder spend precision where the picture is
sensitive: on Kodak the first layer (2 -> w, scaled by omega0) is ~10^4 times
more sensitive per coefficient than the hidden layers, and one common step
cost ~1.9 dB at 0.25 bpp.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

SHIFTS_PER_OCTAVE = 4
MAX_SHIFT = 127
# 2^(-i/4) for i = 0..3 as exact binary64 constants, so every machine derives
# bit-identical steps (ldexp by the whole octaves is exact).
_QUARTER_ROOTS = tuple(float.fromhex(h) for h in (
    "0x1.0000000000000p+0", "0x1.ae89f995ad3adp-1", "0x1.6a09e667f3bcdp-1", "0x1.306fe0a31b715p-1"))


def group_step(delta: float, shift: int) -> float:
    """delta * 2^(-shift/4), computed exactly the same way everywhere (float64)."""
    return float(np.float32(delta)) * math.ldexp(_QUARTER_ROOTS[shift % 4], -(shift // 4))


def coef_steps(delta: float, shifts: Sequence[int], group_sizes: Sequence[int]) -> np.ndarray:
    """Per-coefficient step sizes, float64 (k,)."""
    return np.concatenate([np.full(n, group_step(delta, s)) for s, n in zip(shifts, group_sizes)])


def shifts_for(sensitivity: Sequence[float], group_sizes: Sequence[int]) -> list[int]:
    """Step shifts from per-coefficient sensitivities h_g (MSE increase per unit step^2).

    At high rate, distortion sum_g n_g h_g delta_g^2 / 12 under rate
    sum_g n_g log2(1/delta_g) is minimised by delta_g proportional to h_g^(-1/2).
    The largest group gets shift 0 so that ``delta`` is the step of the bulk.
    """
    h = np.maximum(np.asarray(sensitivity, dtype=np.float64), 1e-30)
    ref = h[int(np.argmax(group_sizes))]
    s = np.rint(SHIFTS_PER_OCTAVE * 0.5 * np.log2(h / ref))
    return [int(v) for v in np.clip(s, -MAX_SHIFT - 1, MAX_SHIFT)]


def quantize(alpha: np.ndarray, steps: np.ndarray | float) -> np.ndarray:
    """alpha (k,) float -> integer symbols (k,) int32 (round half to even)."""
    return np.rint(np.asarray(alpha, dtype=np.float64) / steps).astype(np.int32)


def dequantize(q: np.ndarray, steps: np.ndarray | float) -> np.ndarray:
    """Symbols (k,) -> float64 alpha (k,)."""
    return q.astype(np.float64) * steps


def fake_quantize(alpha: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Quantize in the forward pass, identity gradient (straight-through estimator)."""
    q = torch.round(alpha / steps) * steps
    return alpha + (q - alpha).detach()


# Each failed factorization retries with ten times the damping, this many times, then plain rounding (U = I)
GPTQ_DAMP_RETRIES = 8


def gptq_factor(gram: np.ndarray, damp: float) -> np.ndarray:
    """The upper Cholesky factor U (in, in) of (gram + damp x mean(diag(gram)) I)^-1 that :func:`gptq_round`
    spreads rounding errors through; one per Gram matrix, whatever the step.

    The damping keeps it defined where inputs never vary or repeat one another (a dead unit; a loop filter on a
    flat picture, or on a grey one stored as RGB, whose three channels' features are equal): where gram is so
    near singular that its inverse comes out not positive definite in float64, the damping grows tenfold at a
    time, and past GPTQ_DAMP_RETRIES the identity is returned, with which gptq_round rounds plainly.
    """
    return gptq_factors(gram[None], damp)[0]


def gptq_factors(grams: np.ndarray, damp: float) -> np.ndarray:
    """:func:`gptq_factor` of each of a stack of Gram matrices (k, in, in): one LAPACK call each for the stack
    where every matrix factors at the first damping, else matrix by matrix with the retries."""
    size = grams.shape[-1]
    scale = np.array([max(float(np.mean(np.diag(g))), 1e-30) for g in grams])

    def factor(g: np.ndarray, ridge: np.ndarray) -> np.ndarray | None:
        """U of (g + ridge I)^-1 (stacked or not), None where it is not defined."""
        try:
            upper = np.swapaxes(np.linalg.cholesky(np.linalg.inv(g + ridge[..., None, None] * np.eye(size))), -1, -2)
        except np.linalg.LinAlgError:
            return None
        return upper if np.all(np.isfinite(upper)) else None  # gram^-1 = U^T U

    upper = factor(grams, damp * scale)
    if upper is not None:
        return upper
    out = []
    for g, s in zip(grams, scale):
        for k in range(GPTQ_DAMP_RETRIES + 1):
            u = factor(g, np.asarray(damp * 10.0 ** k * s))
            if u is not None:
                break
        out.append(np.eye(size) if u is None else u)
    return np.stack(out)


def gptq_round_rows(weights: np.ndarray, uppers: np.ndarray, step: float, qmax: int) -> np.ndarray:
    """:func:`gptq_round` of each row of weights (out, in) on its own factor, uppers (out, in, in): the same
    symbols, the rows' columns rounded side by side."""
    w = np.array(weights, dtype=np.float64)
    q = np.zeros(w.shape, dtype=np.int32)
    rows = np.arange(len(w))
    for i in range(w.shape[1]):
        qi = np.clip(np.rint(w[:, i] / step), -qmax, qmax)
        q[:, i] = qi
        err = (w[:, i] - qi * step) / uppers[rows, i, i]
        w[:, i + 1:] -= err[:, None] * uppers[:, i, i + 1:]
    return q


def gptq_round(weights: np.ndarray, upper: np.ndarray, step: float, qmax: int) -> np.ndarray:
    """Symbols (out, in) int32 of a linear layer's weights (out, in) float64 at one step, chosen by GPTQ.

    GPTQ (Frantar et al., ICLR 2023) rounds the inputs' columns one at a time and spreads each column's rounding
    error over the columns not yet rounded, so that the layer's outputs W x over the inputs x whose Gram matrix
    gram = sum x x^T is given stay as close as least squares can keep them: error e of column i moves column
    j > i by -e U_ij / U_ii, ``upper`` = U = :func:`gptq_factor` of gram. Where gram is diagonal nothing is
    spread and the symbols are plain rounding's. Symbols are clipped to +-qmax.
    """
    return gptq_round_rows(weights, np.broadcast_to(upper, (len(weights),) + upper.shape), step, qmax)
