"""Distortion metrics on 8-bit images, following CompressAI's conventions."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from .batch import available_cores


def psnr_of_mse(m: float) -> float:
    """PSNR in dB (peak 255) of an MSE in 8-bit units^2; inf for 0 (an exact picture)."""
    return math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m)


def reportable(v: float) -> float | None:
    """A metric as JSON can hold it: None for an infinite one (an exact picture's PSNR)."""
    return v if math.isfinite(v) else None


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two uint8 arrays of equal shape, in 8-bit units^2."""
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB with peak 255; inf for identical images."""
    return psnr_of_mse(mse(a, b))


def seen_mse(ref: np.ndarray, out: np.ndarray, seen: np.ndarray | None = None) -> float:
    """MSE in 8-bit units^2 of uint8 (H, W, C) ``out`` against ``ref`` over the ``seen`` pixels (bool (H, W); 0
    where there are none), or over all where None."""
    if seen is None:
        return mse(ref, out)
    return mse(ref[seen], out[seen]) if seen.any() else 0.0


def judged(ref: np.ndarray, out: np.ndarray, seen: np.ndarray | None = None) -> tuple[float, float | None]:
    """(MSE in 8-bit units^2, MS-SSIM or None for grey) of uint8 (H, W, C) ``out`` against ``ref``. Where ``seen``
    (bool (H, W)) is given, a picture with transparency's colour as it is seen: the MSE over those pixels alone
    (:func:`seen_mse`), the MS-SSIM with the others taken as ``ref``'s."""
    m = seen_mse(ref, out, seen)
    if seen is not None:
        out = np.where(seen[:, :, None], out, ref)
    return m, ms_ssim(ref, out) if ref.shape[2] == 3 else None


# MS-SSIM's standard constants (Wang, Simoncelli & Bovik 2003), as pytorch-msssim uses
# them by default: five scales with these exponents, an 11-tap Gaussian of sigma 1.5.
# The fit's structure weights (grid_fit.structure_weights) use the same.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# Pixels of the SSIM map computed at a time. The library blurs the whole picture with
# conv2d, which on the CPU takes a workspace of about 11x its input: 1.15 GB more at
# 3072x2048. Strips bound that; a Kodak picture (393,216 pixels) is one strip, so its
# value is the library's own to the last bit.
_STRIP_PIXELS = 1 << 20


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (pytorch-msssim, data_range 255) of uint8 (H, W, C) arrays.

    The value is the library's `ms_ssim`; each scale's SSIM map is computed in strips of
    rows, so that it adds about 60 bytes a pixel (1.15 GB -> 0.38 GB at 3072 x 2048).
    None when the image is too small for five scales (shorter side <= 160).
    """
    from pytorch_msssim.ssim import _fspecial_gauss_1d

    if min(a.shape[0], a.shape[1]) <= (SSIM_WINDOW - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
        return None
    channels = a.shape[2]
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].float()
    y = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))[None].float()
    win = _fspecial_gauss_1d(SSIM_WINDOW, SSIM_SIGMA).repeat([channels, 1, 1, 1])
    levels = len(MS_SSIM_WEIGHTS)
    per_level = []
    for level in range(levels):
        ssim, cs = _ssim_in_strips(x, y, win)
        if level < levels - 1:
            per_level.append(torch.relu(cs))
            # the library pads odd sizes by one before pooling; the same call keeps its values
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    stacked = torch.stack(per_level + [torch.relu(ssim)], dim=0)  # (level, 1, C)
    weights = x.new_tensor(MS_SSIM_WEIGHTS).view(-1, 1, 1)
    return float(torch.prod(stacked**weights, dim=0).mean())


def _ssim_in_strips(x: torch.Tensor, y: torch.Tensor,
                    win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel means of the SSIM and contrast-structure maps of (1, C, H, W) images.

    The maps are 'valid' convolutions, H - 10 rows high; each strip of map rows reads
    its rows plus the window's 10 below. Returns two (1, C) float32 tensors.
    """
    from pytorch_msssim.ssim import _ssim  # the library's SSIM of one scale

    halo = SSIM_WINDOW - 1
    map_rows, width = x.shape[2] - halo, x.shape[3]
    rows = max(1, _STRIP_PIXELS // width)
    spans = [(r0, min(map_rows, r0 + rows)) for r0 in range(0, map_rows, rows)]

    def strip(span: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        r0, r1 = span
        return _ssim(x[:, :, r0:r1 + halo], y[:, :, r0:r1 + halo], data_range=255.0, win=win, size_average=False)

    # strips side by side on Python threads (torch's kernels let go of the interpreter's lock), where the caller
    # holds torch to fewer threads than the cores (an encode, to one): a 24-megapixel picture's MS-SSIM on two
    # cores instead of one, with no more threads than cores. The sums are the same, in the same order.
    workers = min(len(spans), available_cores() // max(1, torch.get_num_threads()))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            maps = list(pool.map(strip, spans))
    else:
        maps = [strip(span) for span in spans]
    # float64 sums of strip means: one strip gives back its float32 mean exactly
    ssim_sum = torch.zeros(x.shape[:2], dtype=torch.float64)
    cs_sum = torch.zeros(x.shape[:2], dtype=torch.float64)
    for (r0, r1), (s, c) in zip(spans, maps):
        ssim_sum += s.double() * (r1 - r0)
        cs_sum += c.double() * (r1 - r0)
    return (ssim_sum / map_rows).float(), (cs_sum / map_rows).float()
