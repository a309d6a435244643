"""Bjøntegaard delta rate and delta quality between two rate–distortion curves.

Both follow VCEG-M33: distortion (PSNR in dB, or MS-SSIM in dB) against the
natural log of the rate, integrated over the overlapping quality (BD-rate) or
log-rate (BD-PSNR) range. Two interpolants are offered:

- ``"pchip"`` (default): piecewise cubic Hermite, as in the JVET/AOM common
  test conditions; it never overshoots between points.
- ``"cubic"``: the original least-squares cubic polynomial (needs >= 4 points).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Method = str  # "pchip" | "cubic"


def msssim_db(values: Sequence[float]) -> np.ndarray:
    """MS-SSIM in [0, 1) -> -10 log10(1 - MS-SSIM), the usual scale for BD metrics."""
    v = np.asarray(values, dtype=np.float64)
    return -10.0 * np.log10(np.clip(1.0 - v, 1e-12, None))


def _prepare(rate: Sequence[float], dist: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    if r.shape != d.shape or r.ndim != 1:
        raise ValueError("rate and distortion must be 1-D sequences of equal length")
    ok = np.isfinite(r) & np.isfinite(d) & (r > 0)
    r, d = r[ok], d[ok]
    order = np.argsort(r)
    return np.log(r[order]), d[order]


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: Method) -> float:
    """Integral over [lo, hi] of the interpolant of y(x); x strictly increasing."""
    if method == "cubic":
        if len(x) < 4:
            raise ValueError("the cubic Bjøntegaard fit needs at least 4 points per curve")
        p = np.polynomial.Polynomial.fit(x, y, 3)
        P = p.integ()
        return float(P(hi) - P(lo))
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        return float(PchipInterpolator(x, y).integrate(lo, hi))
    raise ValueError(f"unknown method {method!r} (pchip or cubic)")


def _dedupe(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep strictly increasing x (drop repeated abscissae, which interpolants reject)."""
    keep = np.diff(x, prepend=-np.inf) > 0  # (empty for a curve with no finite point)
    return x[keep], y[keep]


def bd_rate(rate_ref: Sequence[float], dist_ref: Sequence[float],
            rate_test: Sequence[float], dist_test: Sequence[float],
            method: Method = "pchip") -> float | None:
    """Average rate difference of test against ref at equal quality, in percent.

    Negative means the test codec needs fewer bits. None when the curves share
    no quality range or either has fewer than 2 usable points.
    """
    lr1, d1 = _prepare(rate_ref, dist_ref)
    lr2, d2 = _prepare(rate_test, dist_test)
    # integrate log-rate as a function of quality: sort by quality
    o1, o2 = np.argsort(d1), np.argsort(d2)
    q1, x1 = _dedupe(d1[o1], lr1[o1])
    q2, x2 = _dedupe(d2[o2], lr2[o2])
    if len(q1) < 2 or len(q2) < 2:
        return None
    lo, hi = max(q1[0], q2[0]), min(q1[-1], q2[-1])
    if not hi > lo:
        return None
    diff = (_integral(q2, x2, lo, hi, method) - _integral(q1, x1, lo, hi, method)) / (hi - lo)
    return (math.exp(diff) - 1.0) * 100.0


def bd_quality(rate_ref: Sequence[float], dist_ref: Sequence[float],
               rate_test: Sequence[float], dist_test: Sequence[float],
               method: Method = "pchip") -> float | None:
    """Average quality difference (e.g. BD-PSNR in dB) of test against ref at equal rate."""
    x1, d1 = _dedupe(*_prepare(rate_ref, dist_ref))
    x2, d2 = _dedupe(*_prepare(rate_test, dist_test))
    if len(x1) < 2 or len(x2) < 2:
        return None
    lo, hi = max(x1[0], x2[0]), min(x1[-1], x2[-1])
    if not hi > lo:
        return None
    return (_integral(x2, d2, lo, hi, method) - _integral(x1, d1, lo, hi, method)) / (hi - lo)
