#!/usr/bin/env python3
"""Benchmark: encode and decode one image, report bpp, PSNR, MS-SSIM, times and peak memory.

Each phase runs in its own subprocess so that peak memory (ru_maxrss) is that
phase's alone; ``speed`` is the machine's speed around the encode, as the
evaluation harness measures it. Example (the issue-2 figures):

    python eval/bench_codec.py ../shared/data/kodak/kodim23.png --bpp 0.25
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from pranc_codec.evaluation.calibration import framed, speed_of

PHASE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from pranc_codec.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_seconds": time.perf_counter() - t0, "peak_rss_mb": rss}), file=sys.stderr)
"""


def reference_in_subprocess() -> float:
    """The harness's reference workload timed in a process of its own: this one must not load torch, since a
    phase's peak memory (ru_maxrss) counts what its parent held when it was forked."""
    code = "from pranc_codec.evaluation.calibration import reference_seconds; print(reference_seconds())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def run_phase(args: list[str]) -> tuple[dict, dict]:
    r = subprocess.run([sys.executable, "-c", PHASE, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"phase failed: {' '.join(args)}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1]), json.loads(r.stderr.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--bpp", type=float, default=0.25)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--extra", default="", help="more `pranc encode` options, one string")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        prc, png = Path(d) / "x.prc", Path(d) / "x.png"
        encode = ["encode", args.image, "-o", str(prc), "--bpp", str(args.bpp), "--preset", args.preset,
                  "--device", args.device, "--json", *args.extra.split()]
        if args.device == "cpu":  # the workload times the CPU
            (enc, enc_proc), ref_s = framed(lambda: run_phase(encode), reference_in_subprocess)
        else:
            (enc, enc_proc), ref_s = run_phase(encode), None
        dec, dec_proc = run_phase(["decode", str(prc), "-o", str(png), "--json"])
    import torch  # after the phases: see reference_in_subprocess

    report = {
        "image": args.image, "target_bpp": args.bpp, "bpp": enc["bpp"], "psnr": enc["psnr"],
        "ms_ssim": enc["ms_ssim"], "num_coefs": enc["num_coefs"],
        "encode_seconds": enc["encode_seconds"], "encode_process_seconds": enc_proc["wall_seconds"],
        "encode_peak_rss_mb": enc_proc["peak_rss_mb"],
        "decode_seconds": dec["decode_seconds"], "decode_process_seconds": dec_proc["wall_seconds"],
        "decode_peak_rss_mb": dec_proc["peak_rss_mb"],
        # the CPU's speed around the encode against the reference machine's (pranc_codec/evaluation/calibration.py)
        "speed": None if ref_s is None else round(speed_of(ref_s), 3),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                   f"torch {torch.__version__}, python {platform.python_version()}",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
