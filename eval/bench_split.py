#!/usr/bin/env python3
"""Benchmark: a large picture fitted whole against as strips side by side (split.py), one encode at a time.

Each encode runs in a child process (the API, ``fit.threads`` as given; 0, ``pranc encode``'s default: a whole
fit on one thread, strips side by side on every core; the figures of ABLATIONS.md AZ were taken with 2, a whole
fit then on two threads),
whose process tree's resident memory is sampled every 0.2 s for its peak. One JSON line an encode:

    python eval/bench_split.py --mosaic 16 --out /tmp/m16.png                 # kodim01-16 as 3072 x 2048
    python eval/bench_split.py /tmp/m16.png 0.25                             # whole, then strips
    python eval/bench_split.py /tmp/m4.png 1 --threads 1                      # strips one after the other

The mosaics are Kodak pictures in reading order, five or four or two a row (30: 3840 x 3072, 16: 3072 x 2048,
4: 1536 x 1024), portrait ones turned (ABLATIONS.md AX, AZ). The figures of ABLATIONS.md AZ were measured so.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = {4: 2, 16: 4, 30: 5}

CHILD = """
import json, sys, time
from pranc_codec import CodecConfig, encode
from pranc_codec.config import apply_overrides
from pranc_codec.image_io import read_image
image = read_image(sys.argv[1])[0]
cfg = apply_overrides(CodecConfig(), sys.argv[2:])
t = time.perf_counter()
s = encode(image, cfg).stats
print(json.dumps({"model": s.model, "strips": s.strips, "bpp": round(s.bpp, 5), "psnr": round(s.psnr, 3),
                  "ms_ssim": round(s.ms_ssim, 5), "s": round(time.perf_counter() - t, 1)}))
"""


def mosaic(count: int, dataset: Path, out: Path) -> None:
    """Kodak pictures 1.. in reading order (again from the first past 24), 768 x 512 each, portrait ones turned."""
    from PIL import Image

    cols = COLUMNS[count]
    rows = count // cols
    m = Image.new("RGB", (768 * cols, 512 * rows))
    for j in range(count):
        im = Image.open(dataset / f"kodim{j % 24 + 1:02d}.png").convert("RGB")
        if im.height > im.width:
            im = im.transpose(Image.Transpose.ROTATE_90)
        m.paste(im, ((j % cols) * 768, (j // cols) * 512))
    m.save(out)


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
            except OSError:
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS:")), 0)
        except OSError:
            pass
        todo += children.get(p, [])
    return total


def run(image: str, overrides: list[str]) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, image, *overrides], stdout=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    out = proc.stdout.read()
    if proc.returncode != 0:
        sys.exit(f"encode failed ({proc.returncode})")
    return {**json.loads(out.strip().splitlines()[-1]), "peak_gb": round(peak / 1e9, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", nargs="?")
    ap.add_argument("bpp", nargs="?", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=0, help="fit.threads (0: the encoder's default)")
    ap.add_argument("--set", action="append", default=[], help="more overrides, section.field=value")
    ap.add_argument("--mosaic", type=int, choices=sorted(COLUMNS), help="write a mosaic of Kodak pictures")
    ap.add_argument("--dataset", type=Path, default=Path(os.environ.get("PRANC_DATASET", "../shared/data/kodak")))
    ap.add_argument("--out", type=Path, help="the mosaic's path")
    a = ap.parse_args()
    if a.mosaic:
        if not a.out:
            ap.error("--mosaic needs --out")
        mosaic(a.mosaic, a.dataset, a.out)
        return
    if not a.image:
        ap.error("an image is needed")
    base = [f"rate.bpp={a.bpp}", f"fit.threads={a.threads}", *a.set]
    for label, extra in (("whole", ["split.enabled=false"]), ("strips", ["split.min_pixels=1"])):
        print(json.dumps({"image": Path(a.image).name, "bpp_target": a.bpp, "threads": a.threads, "run": label,
                          **run(a.image, base + extra)}), flush=True)


if __name__ == "__main__":
    main()
