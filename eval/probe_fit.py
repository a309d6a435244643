#!/usr/bin/env python3
"""Ablation probe: encode one image with settings overridden, print the fit's trajectory.

Prints one JSON line: the minibatch PSNR (dB) at every tenth of the fit, the
PSNR of the decoded file, bpp, divergence-guard restarts, coefficients, width
and encode seconds. One torch thread, like one job of ``pranc eval --jobs 2``;
the ABLATIONS.md rows of section I ran two of these at a time. Example:

    python eval/probe_fit.py ../shared/data/kodak/kodim05.png 1.0 fit.first_layer_lr=0.03
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from pranc_codec import encode
from pranc_codec.config import CodecConfig, apply_overrides
from pranc_codec.image_io import read_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("bpp", type=float)
    ap.add_argument("settings", nargs="*", help="section.field=value overrides (as pranc --set)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    image = read_image(args.image)[0]
    cfg = apply_overrides(CodecConfig(), [f"rate.bpp={args.bpp}"] + args.settings)
    trace: dict[str, list[float]] = {}

    def factory(phase: str, total: int):
        def report(steps: int, loss: float) -> None:
            if math.isfinite(loss) and loss > 0:
                trace.setdefault(phase, []).append(-10 * math.log10(loss))
        return report

    stats = encode(image, cfg, progress=factory).stats
    fit = trace.get("fit", [])  # one value per 1 % of the steps
    print(json.dumps(dict(image=args.image.stem, bpp_target=args.bpp, settings=args.settings,
                          fit_psnr_every_10pct=[round(x, 1) for x in fit[::10]], psnr=round(stats.psnr, 2),
                          ms_ssim=None if stats.ms_ssim is None else round(stats.ms_ssim, 4),
                          bpp=round(stats.bpp, 4), restarts=stats.fit_restarts, coefs=stats.num_coefs,
                          width=stats.net_width, encode_s=round(stats.encode_seconds, 1))), flush=True)


if __name__ == "__main__":
    main()
