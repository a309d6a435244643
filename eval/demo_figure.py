#!/usr/bin/env python3
"""The README's figure: a crop of the demo's original, its pranc decode and the JPEG of no more bytes, side by side.

    pranc demo -o pranc-demo && python eval/demo_figure.py pranc-demo docs/demo.png

The demo's file is the same on every machine (the default thread count), so the figure is too.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

BOX = (128, 100, 384, 356)  # (left, top, right, bottom) of the 512 x 600 photo: the face, 256 x 256
GAP = 10  # white pixels between the panels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo_dir", type=Path, help="the folder `pranc demo -o` wrote")
    ap.add_argument("out", type=Path, help="the figure (PNG)")
    args = ap.parse_args()
    names = ("grace_hopper_original.png", "grace_hopper_decoded.png", "grace_hopper_jpeg.jpg")
    crops = [Image.open(args.demo_dir / n).convert("RGB").crop(BOX) for n in names]
    w, h = crops[0].size
    fig = Image.new("RGB", (len(crops) * w + (len(crops) - 1) * GAP, h), "white")
    for i, c in enumerate(crops):
        fig.paste(c, (i * (w + GAP), 0))
    fig.save(args.out, optimize=True)


if __name__ == "__main__":
    main()
