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
then pranc's lowest-rate file. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from equal_rate import Point, at_rate, load  # eval/, beside this script
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
    args = ap.parse_args()
    points = pranc_points(args.results)
    print("| picture | flat share | WebP lossless bpp | PNG bpp | pranc at that rate | pranc's lowest file (bpp, dB) |")
    print("|---|---:|---:|---:|---:|---|")
    for path in sorted(p for d in args.dirs for p in Path(d).glob("*.png")):
        image = read_image(str(path))[0]
        webp = coded_bpp(image, **WEBP_LOSSLESS)
        png = coded_bpp(image, format="PNG", optimize=True)
        pts = points.get(path.stem, [])
        inside = len(pts) > 1 and pts[0][0] <= webp <= pts[-1][0]  # at_rate extrapolates outside
        at = f"{at_rate(pts, webp)[0]:.2f} dB" if inside else "-"
        lowest = f"{pts[0][0]:.4f}, {pts[0][1]:.2f}" if pts else "-"
        print(f"| {path.stem} | {flat_share(image):.3f} | {webp:.3f} | {png:.3f} | {at} | {lowest} |", flush=True)


if __name__ == "__main__":
    main()
