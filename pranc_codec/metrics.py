"""Distortion metrics on 8-bit images, following CompressAI's conventions."""
from __future__ import annotations

import math

import numpy as np
import torch


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two uint8 arrays of equal shape, in 8-bit units^2."""
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB with peak 255; inf for identical images."""
    m = mse(a, b)
    return math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (pytorch-msssim, data_range 255) of uint8 (H, W, C) arrays.

    None when the image is too small for five scales (shorter side <= 160).
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(a.shape[0], a.shape[1]) <= 160:
        return None
    x = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
    y = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1)[None]
    return float(_ms_ssim(x, y, data_range=255.0))
