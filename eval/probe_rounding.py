#!/usr/bin/env python3
"""Ablation probe: the rounding after the fit (pranc_codec/rounding.py) replayed on saved fits (ABLATIONS.md Z).

    python eval/replay_fit.py fit ../shared/data/kodak/kodim15.png 0.5 /tmp/fits/kodim15_0.5.pt
    python eval/probe_rounding.py /tmp/fits/kodim15_0.5.pt rounding.sweeps=0 rounding.sweeps=3 > Z.jsonl
    python eval/equal_rate.py Z.jsonl - eval/results/per_image.csv

``rounding.mlp_steps=0`` is session 21's rounding (no refit of the MLP between and after the sweeps,
ABLATIONS.md AA2). Each argument after the fit is one variant: comma-separated ``section.field=value`` overrides, plus
``fitlam`` (price a bit at the fit's own lambda instead of the curve's), ``lamxF`` (F x the price) or
``mlpq`` (quantize the MLP before the rounding). (Session 21's ``refitK``, K full-batch Adam steps on the MLP
after the rounding, was removed in session 22: the codec's own refit, ``rounding.mlp_steps``, replaced it.)
Each variant rounds the fit's latents, then runs the encoder's later choices (``grid_codec.choose_code``),
packs and decodes, and prints one JSON line in ``eval/encode_one.py``'s fields (``encode_s`` is the
rounding's time alone).
"""
from __future__ import annotations

import argparse
import re
import json
import time
from pathlib import Path

import torch

from pranc_codec import grid_codec
from pranc_codec.codec import decode
from pranc_codec.config import apply_overrides
from pranc_codec.grid_fit import fits_finest, structure_weights
from pranc_codec.latent import split_params
from pranc_codec.metrics import ms_ssim, psnr
from pranc_codec.rounding import pixel_errors
from replay_fit import load_fit


def run(path: Path, variants: list[str], kodak: Path) -> None:
    f = load_fit(path, kodak)
    h, w, _ = f.image.shape
    n = h * w
    _, budget, g = grid_codec.fit_plan(f.image, f.cfg, torch.device("cpu"))
    first = 0 if fits_finest(g, budget, f.shape.levels) else 1
    fit_mlp = [x.float() for x in f.saved["weights"]]
    layers = split_params(fit_mlp, f.shape)
    mse = grid_codec._mlp_mse(f.feats, f.pixels, layers)
    lam = grid_codec.curve_lambda(mse, f.bpp, g)
    for variant in variants:
        items = [s for s in re.split(r",(?=[A-Za-z])", variant) if s]  # a tuple value keeps its commas
        price = lam
        if "fitlam" in items:  # optimise_rounding multiplies by weighted / plain MSE: undo it for the fit's lambda
            weights = structure_weights(f.target, g.structure_mix, g.structure_cap).t().contiguous()
            price = f.saved["lam"] * mse / float(pixel_errors(f.feats, layers, f.pixels, weights, 1 << 15).mean())
        for item in items:
            if item.startswith("lamx"):
                price *= float(item[4:])
        cfg = apply_overrides(f.cfg, [s for s in items if "=" in s])
        t0 = time.perf_counter()
        mlp = fit_mlp
        if "mlpq" in items:  # round against the MLP the decoder will have (quantized at the depth chosen first)
            _, qs, steps = grid_codec.choose_mlp_bits(f.feats, f.pixels, mlp, f.shape, cfg.grid, lam, n)
            mlp = grid_codec.dequantize_mlp(qs, steps)
        lat2, feats2, mlp = grid_codec.optimise_rounding(f.target, f.latents, f.feats, mlp, f.shape, cfg.grid,
                                                         cfg.rounding, price, mse, first,
                                                         budget_bits=budget * n)
        seconds = time.perf_counter() - t0
        code = grid_codec.choose_code(f.image, f.pixels, lat2, feats2, mlp, f.shape, cfg, lam)
        data = grid_codec.pack(code, f.shape, h, w)
        out = decode(data)
        print(json.dumps(dict(image=f"{f.name}.png", bpp_target=f.bpp, over=[variant], bpp=8 * len(data) / n,
                              psnr=psnr(f.image, out), ms_ssim=ms_ssim(f.image, out), encode_s=seconds)),
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fit", type=Path)
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run(args.fit, args.variants, args.kodak)


if __name__ == "__main__":
    main()
