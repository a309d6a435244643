"""Uniform scalar quantization of the coefficient vector alpha.

One step size ``delta`` (float32, in the header) for all coefficients: the
per-layer gains in ``subspace.py`` already put every group on a unit scale.
"""
from __future__ import annotations

import numpy as np
import torch


def quantize(alpha: np.ndarray, delta: float) -> np.ndarray:
    """alpha (k,) float -> integer symbols (k,) int32 (round half to even)."""
    return np.rint(np.asarray(alpha, dtype=np.float64) / float(np.float32(delta))).astype(np.int32)


def dequantize(q: np.ndarray, delta: float) -> np.ndarray:
    """Symbols (k,) -> float64 alpha (k,); exact: int * float32 fits a double."""
    return q.astype(np.float64) * float(np.float32(delta))


def fake_quantize(alpha: torch.Tensor, delta: float) -> torch.Tensor:
    """Quantize in the forward pass, identity gradient (straight-through estimator)."""
    q = torch.round(alpha / delta) * delta
    return alpha + (q - alpha).detach()
