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

from pranc_codec.evaluation.bjontegaard import _dedupe, _prepare


def curves(path: str) -> tuple[np.ndarray, PchipInterpolator, PchipInterpolator]:
    """A results file's bpp and its PSNR and MS-SSIM as functions of log-bpp (the Bjontegaard axes)."""
    r = json.load(open(path))["results"]
    x, p = _dedupe(*_prepare(r["bpp"], r["psnr-rgb"]))
    _, m = _dedupe(*_prepare(r["bpp"], r["ms-ssim-rgb"]))
    return np.exp(x), PchipInterpolator(x, p), PchipInterpolator(x, m)


def main() -> None:
    folder = sys.argv[1] if len(sys.argv) > 1 else "eval/results"
    pb, pp, pm = curves(f"{folder}/pranc.json")
    jb, jp, jm = curves(f"{folder}/jpeg.json")
    lo, hi = max(pb.min(), jb.min()), min(pb.max(), jb.max())
    x = np.linspace(np.log(lo), np.log(hi), 400)
    dp, dm = pp(x) - jp(x), pm(x) - jm(x)
    bpp = np.exp(x)
    print(f"common range {lo:.3f}-{hi:.3f} bpp")
    print(f"PSNR: smallest lead {dp.min():+.3f} dB at {bpp[dp.argmin()]:.3f} bpp")
    behind = f"behind over {bpp[dm < 0].min():.3f}-{bpp[dm < 0].max():.3f} bpp" if (dm < 0).any() else "never behind"
    print(f"MS-SSIM: smallest lead {dm.min():+.5f} at {bpp[dm.argmin()]:.3f} bpp, {behind}")
    for b in pb:
        jpeg = f"JPEG {float(jp(np.log(b))):.2f} / {float(jm(np.log(b))):.4f}" if jb.min() <= b <= jb.max() else "JPEG: outside its range"
        print(f"{b:.3f} bpp: pranc {float(pp(np.log(b))):.2f} / {float(pm(np.log(b))):.4f}, {jpeg}")


if __name__ == "__main__":
    main()
