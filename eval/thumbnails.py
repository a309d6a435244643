"""Small pictures (thumbnails, previews): pranc against Pillow's JPEG, WebP and AVIF at the same byte budget.

A Kodak picture is resized (Lanczos) to each size; pranc encodes it at each rate with default settings; each
other codec's quality is searched (0-100, step 2) for its best PSNR within pranc's file size. A codec whose
smallest file is larger than pranc's is reported as ``-`` (its header alone is over the budget).

    python eval/thumbnails.py [--image ../shared/data/kodak/kodim23.png] [--sizes 48x32,96x64,192x128]
                              [--bpp 0.5,1,2]
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pranc_codec import CodecConfig, encode  # noqa: E402
from pranc_codec.metrics import psnr  # noqa: E402

OTHERS = ("JPEG", "WEBP", "AVIF")


def best_within(img: np.ndarray, fmt: str, budget: int) -> tuple[int, float] | None:
    """(bytes, PSNR) of ``fmt``'s best file of ``img`` within ``budget`` bytes, or None where none fits."""
    best = None
    for q in range(0, 101, 2):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, fmt, quality=q)
        n = len(buf.getvalue())
        if n <= budget:
            p = psnr(img, np.asarray(Image.open(buf).convert("RGB")))
            if best is None or p > best[1]:
                best = (n, p)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default=str(ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"))
    ap.add_argument("--sizes", default="48x32,96x64,192x128")
    ap.add_argument("--bpp", default="0.5,1,2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with Image.open(args.image) as im:
        src = im.convert("RGB")
    for size in args.sizes.split(","):
        w, h = map(int, size.split("x"))
        img = np.asarray(src.resize((w, h), Image.LANCZOS))
        for bpp in (float(b) for b in args.bpp.split(",")):
            c = CodecConfig()
            r = encode(img, replace(c, rate=replace(c.rate, bpp=bpp), fit=replace(c.fit, threads=args.threads)))
            line = {"size": size, "target": bpp, "bytes": r.stats.bytes, "pranc": round(r.stats.psnr, 2),
                    "seconds": round(r.stats.encode_seconds, 1)}
            for fmt in OTHERS:
                found = best_within(img, fmt, r.stats.bytes)
                line[fmt.lower()] = None if found is None else [found[0], round(found[1], 2)]
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
