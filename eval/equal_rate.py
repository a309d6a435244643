#!/usr/bin/env python3
"""A variant's files against a reference run's curve, image by image, at equal rate.

    python eval/equal_rate.py VARIANT_CSV VARIANT_CODEC REFERENCE_CSV [REFERENCE_CODEC]
    python eval/equal_rate.py eval/results-mlp-share/per_image.csv mlp-share eval/results-s11/per_image.csv
    python eval/equal_rate.py probe.jsonl - eval/results/per_image.csv
    python eval/equal_rate.py v_seed0.jsonl+v_seed1.jsonl - ref_seed0.jsonl+ref_seed1.jsonl+ref_seed2.jsonl

A variant file ending in ``.jsonl`` holds ``eval/encode_one.py``'s lines (its
codec argument is ignored).

For every file of the variant (``per_image.csv`` of ``pranc eval``), the
reference codec's PSNR and MS-SSIM for the same image are interpolated
linearly in log bpp between the reference's two points that bracket the
file's rate (the nearest two outside the reference's range). Prints, per
target rate and over all, the mean rate and the mean, range and count of wins
of the differences.

Either side may be several runs joined by ``+`` (the same settings with other seeds of the fit's random stream,
``grid.seed``): the variant's files are pooled, and the reference at a rate is the mean of its runs' curves
there. One run of eight Kodak images resolves about 0.05 dB: the default with seeds 0, 1 and 2 differs by up to
0.08 dB in the mean and 7 of 8 files (eval/ABLATIONS.md BE8).
"""
import csv
import json
import math
import sys
from collections import defaultdict


Point = tuple[float, float, float, float, str]  # bpp, psnr, ms_ssim, encode_s, target


def load(path: str, codec: str) -> dict[str, list[Point]]:
    """image -> sorted [(bpp, psnr, ms_ssim, encode_s, target)] of one codec (or of encode_one's lines); an
    MS-SSIM the file does not have is NaN."""
    out: dict[str, list[Point]] = defaultdict(list)
    if path.endswith(".jsonl"):
        for r in map(json.loads, open(path)):
            ms = math.nan if r["ms_ssim"] is None else r["ms_ssim"]  # None: a grey picture
            out[r["image"].rsplit(".", 1)[0]].append((r["bpp"], r["psnr"], ms, r["encode_s"],
                                                      f"{r['bpp_target']:g}"))
    else:
        for r in csv.DictReader(open(path)):
            if r["codec"] == codec:
                # an empty MS-SSIM (a picture too small for its five scales, or grey) is NaN
                out[r["image"]].append((float(r["bpp"]), float(r["psnr"]), float(r["ms_ssim"] or "nan"),
                                        float(r["encode_s"]), f"{float(r['point']):g}"))
    return {k: sorted(v) for k, v in out.items()}


def at_rate(points: list[Point], bpp: float) -> tuple[float, float]:
    """(PSNR, MS-SSIM) of a reference curve at ``bpp``, linear in log bpp."""
    i = max(0, min(len(points) - 2, sum(p[0] <= bpp for p in points) - 1))
    (b0, p0, s0, *_), (b1, p1, s1, *_) = points[i], points[i + 1]
    t = (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0))
    return p0 + t * (p1 - p0), s0 + t * (s1 - s0)


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    var = [load(path, sys.argv[2]) for path in sys.argv[1].split("+")]
    ref_paths = sys.argv[3].split("+")
    ref = [load(path, sys.argv[4] if len(sys.argv) > 4 else "pranc") for path in ref_paths]
    images = {image for run in var for image in run}
    for path, run in zip(ref_paths, ref):
        short = sorted(image for image in images if len(run.get(image, [])) < 2)
        if short:
            sys.exit(f"{path}: needs two points or more for every image of the variant ({', '.join(short)})")
    rows = []
    for run in var:
        for image, points in run.items():
            for bpp, psnr, msssim, secs, target in points:
                # the reference runs' mean curve at this rate
                p, s = (sum(c) / len(ref) for c in zip(*(at_rate(r[image], bpp) for r in ref)))
                rows.append((bpp, psnr - p, msssim - s, secs, target))
    targets = sorted({r[4] for r in rows}, key=float)
    if len(targets) > 1:
        for t in targets:
            report(f"target {t}", [r for r in rows if r[4] == t])
    report("all", rows)


def report(label: str, rows: list[tuple]) -> None:
    n = len(rows)
    dp, ds = [r[1] for r in rows], [r[2] for r in rows]
    print(f"{label}: {n} files, mean bpp {sum(r[0] for r in rows) / n:.4f}, "
          f"encode s mean {sum(r[3] for r in rows) / n:.1f} / max {max(r[3] for r in rows):.1f}")
    print(f"  PSNR at equal rate: mean {sum(dp) / n:+.3f} dB, range {min(dp):+.2f}..{max(dp):+.2f}, "
          f"{sum(d > 0 for d in dp)} of {n} ahead")
    print(f"  MS-SSIM at equal rate: mean {sum(ds) / n:+.4f}, range {min(ds):+.4f}..{max(ds):+.4f}, "
          f"{sum(d > 0 for d in ds)} of {n} ahead")


if __name__ == "__main__":
    main()
