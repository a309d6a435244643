#!/usr/bin/env python3
"""Benchmark: seconds of one sweep of the rate-distortion optimised rounding (pranc_codec/rounding.py) on a
synthetic picture of any size, one torch thread (``--threads``), and a hash of what it chose.

The rounding's cost grows with the pixels (an MLP pass over every pixel per sublattice and candidate move)
while the fit's steps do not, so on large pictures it is a growing share of an encode (ABLATIONS.md AT, AX).
No image and no fit are needed: the latents are seeded Laplace values, the MLP seeded random weights, the
target and the error weights seeded uniform noise, so the time is the rounding's own and ``hash`` (of the
moved latents and their features) checks that two commits choose the same moves: run it from two worktrees
one after the other.

    python eval/bench_rounding.py 3072 3840            # 11.8 megapixels, the finest level out (low rates)
    python eval/bench_rounding.py 512 768 --first 0    # Kodak's size, every level (0.5 bpp and up)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time

import torch

from pranc_codec import rounding
from pranc_codec.config import RoundingConfig
from pranc_codec.grid_codec import _features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("height", type=int)
    ap.add_argument("width", type=int)
    ap.add_argument("--first", type=int, default=1, help="the first level coded (1: the finest left out)")
    ap.add_argument("--levels", type=int, default=7)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    h, w, first = args.height, args.width, args.first
    gen = torch.Generator().manual_seed(0)
    lat = []
    for level in range(args.levels):
        dims = (-(-h // 2 ** level), -(-w // 2 ** level))
        if level < first:
            lat.append(torch.zeros(dims))
        else:  # Laplace(0, 1.5) by inversion, from the seeded generator
            u = torch.rand(dims, generator=gen) - 0.5
            lat.append(torch.round(-1.5 * torch.sign(u) * torch.log1p(-2 * u.abs())))
    feats = _features(lat, w, h * w)
    k = args.hidden
    layers = [(torch.randn(k, args.levels, generator=gen) * 0.3, torch.randn(k, generator=gen) * 0.1),
              (torch.randn(k, k, generator=gen) * 0.2, torch.randn(k, generator=gen) * 0.1),
              (torch.randn(3, k, generator=gen) * 0.2, torch.randn(3, generator=gen) * 0.1)]
    target = torch.rand(h * w, 3, generator=gen)
    weights = torch.rand(h * w, 3, generator=gen)
    cfg = RoundingConfig(sweeps=1, mlp_steps=0)
    t0 = time.perf_counter()
    out, moved_feats, changed = rounding.optimise(lat, feats, layers, target, weights, 0.03 * h * w / 1e4, first,
                                                  h, w, cfg)
    seconds = time.perf_counter() - t0
    digest = hashlib.sha256(b"".join(g.numpy().tobytes() for g in out) + moved_feats.numpy().tobytes())
    print(json.dumps({"height": h, "width": w, "first": first, "threads": args.threads,
                      "seconds": round(seconds, 2), "moved": changed,
                      "hash": digest.hexdigest()[:16]}))


if __name__ == "__main__":
    main()
