#!/usr/bin/env python3
"""Benchmark: files under a size ceiling (``pranc encode --max-size``; RateConfig.max_bytes).

    python eval/ceiling.py                                   # Kodak, ceilings of 0.25 bpp
    python eval/ceiling.py --dataset /tmp/content --bpp 0.5 --out content.jsonl

For every picture the ceiling is ``--bpp`` x its pixels / 8 bytes (rounded down), and the encode (default
preset, one thread, ``--jobs`` side by side, as ``pranc eval`` runs them) is given only that ceiling, as
``pranc encode --max-size`` alone is. Prints one JSON line per file, in the layout of ``eval/encode_one.py``
(so ``eval/equal_rate.py OUT.jsonl - eval/results/per_image.csv pranc`` sets the files against plain
``--bpp`` encodes at equal rate), then a summary: files over their ceiling (the promise is none), how much of
it the files fill, how many were trimmed (grid_codec.trim_to_ceiling), and the encode time.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one(path: str, bpp: float) -> dict:
    """Encode one picture under its ceiling; its JSON line."""
    import torch

    from pranc_codec import CodecConfig, encode
    from pranc_codec.image_io import read_image

    torch.set_num_threads(1)
    image = read_image(path)[0]
    cap = math.floor(bpp * image.shape[0] * image.shape[1] / 8)
    cfg = CodecConfig()
    cfg = replace(cfg, rate=replace(cfg.rate, bpp=8 * cap / (image.shape[0] * image.shape[1]), max_bytes=cap),
                  fit=replace(cfg.fit, threads=1))
    s = encode(image, cfg).stats
    return {"image": Path(path).name, "bpp_target": bpp, "max_bytes": cap, "bytes": s.bytes,
            "fill": round(s.bytes / cap, 4), "trim_sweeps": s.trim_sweeps, "bpp": round(s.bpp, 4),
            "psnr": round(s.psnr, 2), "ms_ssim": None if s.ms_ssim is None else round(s.ms_ssim, 4),
            "encode_s": round(s.encode_seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", help="folder of pictures (repeatable; default: Kodak)")
    ap.add_argument("--bpp", type=float, default=0.25, help="the ceiling, in bits per pixel of each picture")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", help="also write the JSON lines here")
    args = ap.parse_args()
    dirs = args.dataset or [str(ROOT.parent / "shared" / "data" / "kodak")]
    paths = sorted(str(p) for d in dirs for p in Path(d).iterdir() if p.suffix.lower() in (".png", ".jpg", ".ppm"))
    if not paths:
        sys.exit(f"no pictures in {', '.join(dirs)}")
    rows = []
    out = open(args.out, "w") if args.out else None
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(one, paths, [args.bpp] * len(paths)):
            rows.append(row)
            line = json.dumps(row)
            print(line, flush=True)
            if out:
                print(line, file=out, flush=True)
    fill = [r["fill"] for r in rows]
    secs = [r["encode_s"] for r in rows]
    print(json.dumps({"files": len(rows), "over": sum(r["bytes"] > r["max_bytes"] for r in rows),
                      "fill_min": min(fill), "fill_mean": round(statistics.mean(fill), 4),
                      "trimmed": sum(r["trim_sweeps"] > 0 for r in rows),
                      "trim_sweeps_mean": round(statistics.mean(r["trim_sweeps"] for r in rows), 2),
                      "encode_s_mean": round(statistics.mean(secs), 1), "encode_s_max": max(secs)}))


if __name__ == "__main__":
    main()
