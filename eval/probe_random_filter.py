#!/usr/bin/env python3
"""Offline probe: seeded sparse ternary random ReLU features beside the loop filter's linear ones (ABLATIONS.md BL1).

For a grid ``.prc`` file and its original, renders the file's picture before its loop filter and fits, by least
squares over every pixel (float64, coefficients unquantized), the residual original - decoded from:

- ``lin5``, ``lin7``: every channel's 5 x 5 or 7 x 7 neighbourhood and a constant (the codec's non-symmetric
  filter shapes; ``codec_filter`` is the PSNR of the file's own quantized filter);
- ``lin7+rfK``: lin7's features and 2K random ones, relu(z_k - t_k) and relu(-z_k - t_k), where
  z_k = a_k . (N(p) - centre), N(p) the 5 x 5 neighbourhood in every channel less its channel's centre pixel,
  a_k a sparse ternary vector (each entry -1, 0, +1 with probabilities 1/6, 2/3, 1/6) and t_k a random share of
  z_k's spread, rounded. With integer pixels every feature is an integer, so a decoder could regenerate them
  from a seed exactly, as the PRANC basis is.

Prints one JSON line of PSNRs (dB). The features here are drawn by numpy's generator (seed 1234): a probe of
whether such features pay, not a format.

    python eval/probe_random_filter.py FILE.prc ORIGINAL.png [--k 16,64]
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np

from pranc_codec import bitstream
from pranc_codec.bitstream import MetadataHeader
from pranc_codec.grid_decode import apply_filter, dequantize_mlp, read_v5, render
from pranc_codec.image_io import read_image


def unfiltered(path: str):
    """The file's picture before its loop filter (uint8 (H, W, C)), and the filter (or None)."""
    header, payload = bitstream.parse(open(path, "rb").read())
    if isinstance(header, MetadataHeader):
        header, payload = header.picture, header.picture_payload
    latents, mlp_q, flt = read_v5(header, bitstream.split_segments(header, payload))
    pixels = render(latents, dequantize_mlp(mlp_q, header.mlp_steps), header.shape, header.height, header.width, 1)
    return pixels, flt


def neighbourhoods(x: np.ndarray, r: int) -> np.ndarray:
    """(H W, C (2r+1)^2) float64: every channel's (2r+1)^2 neighbourhood, borders replicated."""
    h, w, c = x.shape
    p = np.pad(x.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="edge")
    return np.stack([p[r + dy: r + dy + h, r + dx: r + dx + w, ch].reshape(-1)
                     for ch in range(c) for dy in range(-r, r + 1) for dx in range(-r, r + 1)], 1)


def residual_sse(features: np.ndarray, res: np.ndarray) -> float:
    """Sum of squared residuals after the least-squares fit of res (n, C) on features (n, m)."""
    gram = features.T @ features
    gram += 1e-9 * np.trace(gram) / len(gram) * np.eye(len(gram))
    w = np.linalg.solve(gram, features.T @ res)
    return float(((res - features @ w) ** 2).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("original")
    ap.add_argument("--k", default="16,64", help="random features' counts K (each gives 2K features)")
    args = ap.parse_args()
    x, flt = unfiltered(args.file)
    original = read_image(args.original)[0].astype(np.float64)
    h, w, c = x.shape
    n = h * w
    res = (original - x).reshape(n, c)

    def psnr(sse: float) -> float:
        return round(10 * math.log10(255 ** 2 * n * c / sse), 3)

    out = {"file": args.file, "filter": None if flt is None else [flt.taps, flt.symmetric],
           "none": psnr(float((res ** 2).sum()))}
    if flt is not None:
        out["codec_filter"] = psnr(float(((original - apply_filter(x, flt, 1)) ** 2).sum()))
    ones = np.ones((n, 1))
    out["lin5"] = psnr(residual_sse(np.concatenate([neighbourhoods(x, 2), ones], 1), res))
    lin7 = np.concatenate([neighbourhoods(x, 3), ones], 1)
    out["lin7"] = psnr(residual_sse(lin7, res))
    near = neighbourhoods(x, 2)
    side = 25
    centre = near[:, [ch * side + side // 2 for ch in range(c)]]
    rel = near - centre[:, np.repeat(np.arange(c), side)]
    rng = np.random.default_rng(1234)
    for k in (int(v) for v in args.k.split(",")):
        a = rng.choice([-1.0, 0.0, 1.0], size=(rel.shape[1], k), p=[1 / 6, 2 / 3, 1 / 6])
        z = rel @ a
        t = np.round(rng.uniform(0, 1, k) * (z.std(0) + 1e-9))
        phi = np.concatenate([np.maximum(z - t, 0), np.maximum(-z - t, 0)], 1)
        out[f"lin7+rf{k}"] = psnr(residual_sse(np.concatenate([lin7, phi], 1), res))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
