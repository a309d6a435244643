#!/usr/bin/env python3
"""Benchmark: milliseconds per fitting step for one image and rate.

Times the fit alone (no quantization, coding or decoding), the part of an
encode that every optimisation of the step is about: ``grid_fit.fit_grid``
for the default latent-grid model, ``fit.fit_alpha`` with ``--model siren``.
The grid's step is not uniform (the rate term runs every ``grid.rate_every``
steps, the coder's contexts every ``grid.context_every``), so time a multiple
of ``context_every`` steps. To compare two commits, run it from two worktrees
at the same time, one thread each, so that both see the same machine load
(ABLATIONS.md J, R):

    python eval/bench_step.py ../shared/data/kodak/kodim05.png 0.25
    python eval/bench_step.py ../shared/data/kodak/kodim05.png 0.25 grid.batch_pixels=16384
    python eval/bench_step.py ../shared/data/kodak/kodim05.png 1.0 --model siren
    python eval/bench_step.py ../shared/data/kodak/kodim05.png 0.25 --device cuda
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from pranc_codec import grid_codec
from pranc_codec.codec import plan, tile_grid
from pranc_codec.config import CodecConfig, apply_overrides
from pranc_codec.fit import TileData, fit_alpha
from pranc_codec.grid_fit import batch_size, fit_grid, fits_finest
from pranc_codec.image_io import read_image
from pranc_codec.subspace import Subspace


def bench_grid(image, cfg: CodecConfig, steps: int, device: str = "cpu", warmup: int = 64) -> tuple[float, dict]:
    """Seconds for ``steps`` steps of fit_grid with the encoder's settings for this rate (its schedule stretched
    to that many steps), and the network."""
    h, w, c = image.shape
    target = torch.from_numpy(image.astype("float32") / 255.0).to(device)
    shape, latent_bpp, settings = grid_codec.fit_plan(image, cfg, target.device)
    settings = replace(settings, steps=steps)
    if target.is_cuda:  # the first steps load CUDA kernels and libraries (seconds): not part of a step
        fit_grid(target, shape, replace(settings, steps=warmup), latent_bpp)
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fit_grid(target, shape, settings, latent_bpp)
    if target.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, dict(width=shape.hidden, batch=batch_size(settings, h * w),
                                          finest=fits_finest(settings, latent_bpp, shape.levels))


def bench_siren(image, cfg: CodecConfig, steps: int, warmup: int) -> tuple[float, dict]:
    h, w, c = image.shape
    spec = plan(cfg, h, w, c)
    sub = Subspace(spec)
    data = TileData.from_image(image, tile_grid(cfg, h, w))
    alpha0 = torch.zeros(spec.num_coefs)
    fit_alpha(sub, spec.shape, data, alpha0, cfg.fit, steps=warmup, lr=cfg.fit.lr)
    t0 = time.perf_counter()
    fit_alpha(sub, spec.shape, data, alpha0, cfg.fit, steps=steps, lr=cfg.fit.lr)
    return time.perf_counter() - t0, dict(width=spec.shape.width, tiles=spec.tiles)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", type=Path)
    ap.add_argument("bpp", type=float)
    ap.add_argument("settings", nargs="*", help="section.field=value overrides (as pranc --set)")
    ap.add_argument("--model", choices=("grid", "siren"), default="grid")
    ap.add_argument("--steps", type=int, default=640, help="timed steps (grid: a multiple of grid.context_every)")
    ap.add_argument("--warmup", type=int, default=30, help="untimed steps first (siren; grid on CUDA)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the grid is fitted")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also print torch.profiler's N costliest operators (self time) of the timed steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    image = read_image(args.image)[0]
    cfg = apply_overrides(CodecConfig(), [f"rate.bpp={args.bpp}", f"model={args.model}"] + args.settings)
    acts = [torch.profiler.ProfilerActivity.CPU]
    if args.device == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) if args.profile else contextlib.nullcontext() as prof:
        if args.model == "grid":
            seconds, net = bench_grid(image, cfg, args.steps, args.device, args.warmup)
        else:
            seconds, net = bench_siren(image, cfg, args.steps, args.warmup)
    if args.profile:  # profiled steps run slower: time without --profile
        key = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=args.profile))
    print(json.dumps(dict(image=args.image.stem, bpp=args.bpp, model=args.model, settings=args.settings, **net,
                          threads=args.threads, device=args.device, steps=args.steps,
                          ms_per_step=round(seconds / args.steps * 1e3, 2))))


if __name__ == "__main__":
    main()
