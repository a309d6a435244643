#!/usr/bin/env python3
"""Benchmark: milliseconds per fitting step for one image and rate.

Times ``fit_alpha`` alone (no quantization, coding or decoding), the part of
an encode that every optimisation of the step is about. To compare two commits,
run it from two worktrees at the same time, one thread each, so that both see
the same machine load (ABLATIONS.md J):

    python eval/bench_step.py ../shared/data/kodak/kodim05.png 1.0
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pranc_codec.codec import plan, tile_grid
from pranc_codec.config import CodecConfig, apply_overrides
from pranc_codec.fit import TileData, fit_alpha
from pranc_codec.image_io import read_image
from pranc_codec.subspace import Subspace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", type=Path)
    ap.add_argument("bpp", type=float)
    ap.add_argument("settings", nargs="*", help="section.field=value overrides (as pranc --set)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=30, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    image = read_image(args.image)[0]
    cfg = apply_overrides(CodecConfig(), [f"rate.bpp={args.bpp}"] + args.settings)
    h, w, c = image.shape
    spec = plan(cfg, h, w, c)
    sub = Subspace(spec)
    data = TileData.from_image(image, tile_grid(cfg, h, w))
    alpha0 = torch.zeros(spec.num_coefs)
    fit_alpha(sub, spec.shape, data, alpha0, cfg.fit, steps=args.warmup, lr=cfg.fit.lr)
    t0 = time.perf_counter()
    fit_alpha(sub, spec.shape, data, alpha0, cfg.fit, steps=args.steps, lr=cfg.fit.lr)
    ms = (time.perf_counter() - t0) / args.steps * 1e3
    print(json.dumps(dict(image=args.image.stem, bpp=args.bpp, settings=args.settings, width=spec.shape.width,
                          tiles=spec.tiles, threads=args.threads, steps=args.steps, ms_per_step=round(ms, 2))))


if __name__ == "__main__":
    main()
