#!/usr/bin/env python3
"""The lossless baseline: at what rate each picture codes exactly, against pranc's files.

    python eval/lossless.py DIR [DIR ...] [--results per_image.csv ...]
    python eval/lossless.py /tmp/content2 --results eval/results-synthetic/per_image.csv \\
        --results eval/results-content/per_image.csv

For each picture (as ``pranc encode`` reads it: ``image_io.read_image``):
its flat share (``grid_codec.flat_share``), its size as lossless WebP
(Pillow's libwebp, ``lossless=True, quality=100, method=6``: the slowest,
smallest setting) and as PNG (``optimize=True``), in bits per pixel, and
pranc's PSNR at the lossless WebP rate, interpolated in log bpp between the
two files of the first ``--results`` that has the picture (pranc rows of
``pranc eval``'s per_image.csv, read by ``equal_rate.load``) that bracket it
(``equal_rate.at_rate``; "-" outside their range),
then pranc's lowest-rate file, and what the encoder's lossless trial
(``lossless.attempt`` with the default ``LosslessConfig``, as ``pranc
encode`` runs it before any fit) does at each of ``--rates``: the rates at
which it stores the picture exactly (format version 9), and the longest the
trial took at any of them. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from equal_rate import Point, at_rate, load  # eval/, beside this script
from pranc_codec import lossless
from pranc_codec.config import LosslessConfig
from pranc_codec.grid_codec import flat_share
from pranc_codec.image_io import read_image

WEBP_LOSSLESS = dict(format="WEBP", lossless=True, quality=100, method=6)


def coded_bpp(image: np.ndarray, **save: object) -> float:
    """Bits per pixel of uint8 (H, W, C) ``image`` saved by Pillow with ``save``'s options."""
    buf = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buf, **save)
    return 8.0 * len(buf.getvalue()) / (image.shape[0] * image.shape[1])


def pranc_points(paths: list[str]) -> dict[str, list[Point]]:
    """picture -> pranc's sorted points (:func:`equal_rate.load`), from the first results file that has it."""
    out: dict[str, list[Point]] = {}
    for path in paths:
        for name, pts in load(path, "pranc").items():
            out.setdefault(name, pts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="folders of pictures (*.png)")
    ap.add_argument("--results", action="append", default=[], help="a per_image.csv with pranc rows")
    ap.add_argument("--rates", default="0.125,0.25,0.5,1", help="target bpp at which to run the encoder's trial")
    args = ap.parse_args()
    points = pranc_points(args.results)
    rates = [float(r) for r in args.rates.split(",")]
    print("| picture | flat share | WebP lossless bpp | PNG bpp | pranc at that rate | pranc's lowest file (bpp, dB) "
          "| stored exactly at (bpp) | trial s (longest) |")
    print("|---|---:|---:|---:|---:|---|---|---:|")
    for path in sorted(p for d in args.dirs for p in Path(d).glob("*.png")):
        image = read_image(str(path))[0]
        webp = coded_bpp(image, **WEBP_LOSSLESS)
        png = coded_bpp(image, format="PNG", optimize=True)
        pts = points.get(path.stem, [])
        inside = len(pts) > 1 and pts[0][0] <= webp <= pts[-1][0]  # at_rate extrapolates outside
        at = f"{at_rate(pts, webp)[0]:.2f} dB" if inside else "-"
        lowest = f"{pts[0][0]:.4f}, {pts[0][1]:.2f}" if pts else "-"
        exact, longest = [], 0.0
        for bpp in rates:
            t0 = time.perf_counter()
            data = lossless.attempt(image, bpp * image.shape[0] * image.shape[1] / 8, LosslessConfig())
            longest = max(longest, time.perf_counter() - t0)
            if data is not None:
                exact.append(f"{bpp:g}")
        print(f"| {path.stem} | {flat_share(image):.3f} | {webp:.3f} | {png:.3f} | {at} | {lowest} | "
              f"{', '.join(exact) or '-'} | {longest:.3f} |", flush=True)


if __name__ == "__main__":
    main()
