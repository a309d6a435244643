#!/usr/bin/env python3
"""pranc against the JPEG of the same run, point by point: where each curve leads and by how much.

    python eval/pointwise.py eval/results

Both curves (pranc.json and jpeg.json of that folder, CompressAI's layout) are
interpolated with pchip in log-bpp over their common range. Prints the
smallest lead in PSNR and in MS-SSIM, the range where pranc is behind, and
JPEG's value at each pranc point.
"""
import json
import sys

import numpy as np
from scipy.interpolate import PchipInterpolator


def load(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bpp, PSNR, MS-SSIM) sorted by bpp."""
    r = json.load(open(path))["results"]
    b, p, m = (np.array(r[k]) for k in ("bpp", "psnr-rgb", "ms-ssim-rgb"))
    o = np.argsort(b)
    return b[o], p[o], m[o]


def main() -> None:
    folder = sys.argv[1] if len(sys.argv) > 1 else "eval/results"
    pb, pp, pm = load(f"{folder}/pranc.json")
    jb, jp, jm = load(f"{folder}/jpeg.json")
    lo, hi = max(pb.min(), jb.min()), min(pb.max(), jb.max())
    x = np.linspace(np.log(lo), np.log(hi), 400)
    dp = PchipInterpolator(np.log(pb), pp)(x) - PchipInterpolator(np.log(jb), jp)(x)
    dm = PchipInterpolator(np.log(pb), pm)(x) - PchipInterpolator(np.log(jb), jm)(x)
    bpp = np.exp(x)
    print(f"common range {lo:.3f}-{hi:.3f} bpp")
    print(f"PSNR: smallest lead {dp.min():+.3f} dB at {bpp[dp.argmin()]:.3f} bpp")
    behind = f"behind over {bpp[dm < 0].min():.3f}-{bpp[dm < 0].max():.3f} bpp" if (dm < 0).any() else "never behind"
    print(f"MS-SSIM: smallest lead {dm.min():+.5f} at {bpp[dm.argmin()]:.3f} bpp, {behind}")
    fp, fm = PchipInterpolator(np.log(jb), jp), PchipInterpolator(np.log(jb), jm)
    for b, p, m in zip(pb, pp, pm):
        jpeg = f"JPEG {float(fp(np.log(b))):.2f} / {float(fm(np.log(b))):.4f}" if jb.min() <= b <= jb.max() else "JPEG: outside its range"
        print(f"{b:.3f} bpp: pranc {p:.2f} / {m:.4f}, {jpeg}")


if __name__ == "__main__":
    main()
