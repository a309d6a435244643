#!/usr/bin/env python3
"""Check that ``.prc`` files decode to the same pixels on another machine or device.

    python eval/cross_device.py encode OUT IMAGE... [--bpp 0.125,0.25] [--device cpu|cuda]
                                                    [--preset fast] [--set model=siren ...]
    python eval/cross_device.py verify OUT [--device cpu|cuda]

``encode`` writes ``OUT/<stem>-<bpp>[-<model>].prc`` and ``OUT/manifest.json``: per
file, the SHA-256 of the bytes and of the pixels as decoded on the encoding
machine, with bpp, PSNR, encode seconds and where it was made. ``verify``
decodes every file in the manifest here and compares the pixels' SHA-256; it
prints one JSON line per file and exits 1 on any difference. Encode on one
machine, copy ``OUT``, verify on the other (and the other way round).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import torch

from pranc_codec import CodecConfig, decode, encode
from pranc_codec.config import PRESETS, apply_overrides
from pranc_codec.image_io import read_image


def where(device: str) -> dict:
    """Machine, device and library versions, for the manifest."""
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    return {"device": device, "gpu": gpu, "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "python": platform.python_version()}


def pixels_sha(image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def cmd_encode(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = apply_overrides(CodecConfig().with_preset(args.preset), [f"device={args.device}"] + args.set)
    files = []
    for path in args.images:
        image = read_image(path)[0]
        for bpp in (float(b) for b in args.bpp.split(",")):
            res = encode(image, apply_overrides(cfg, [f"rate.bpp={bpp}"]))
            name = f"{Path(path).stem}-{bpp:g}" + ("" if cfg.model == "grid" else f"-{cfg.model}") + ".prc"
            (out / name).write_bytes(res.data)
            t0 = time.perf_counter()
            pixels = decode(res.data)
            row = {"file": name, "bytes_sha256": hashlib.sha256(res.data).hexdigest(),
                   "pixels_sha256": pixels_sha(pixels), "bpp": round(res.stats.bpp, 4),
                   "psnr": round(res.stats.psnr, 3), "encode_s": round(res.stats.encode_seconds, 2),
                   "decode_s": round(time.perf_counter() - t0, 3), "model": cfg.model}
            print(json.dumps(row), flush=True)
            files.append(row)
    manifest = {"made_on": where(args.device), "preset": args.preset, "set": args.set, "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    out = Path(args.out)
    manifest = json.loads((out / "manifest.json").read_text())
    bad = 0
    for row in manifest["files"]:
        data = (out / row["file"]).read_bytes()
        t0 = time.perf_counter()
        got = pixels_sha(decode(data, device=args.device))
        same = got == row["pixels_sha256"] and hashlib.sha256(data).hexdigest() == row["bytes_sha256"]
        bad += not same
        print(json.dumps({"file": row["file"], "same_pixels": same, "decode_s": round(time.perf_counter() - t0, 3)}),
              flush=True)
    print(json.dumps({"made_on": manifest["made_on"], "verified_on": where(args.device),
                      "files": len(manifest["files"]), "different": bad}), flush=True)
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode")
    e.add_argument("out")
    e.add_argument("images", nargs="+")
    e.add_argument("--bpp", default="0.125,0.25,0.5,1")
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    e.add_argument("--preset", default="default", choices=list(PRESETS))
    e.add_argument("--set", action="append", default=[], help="a setting, as pranc eval --set")
    v = sub.add_parser("verify")
    v.add_argument("out")
    v.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args()
    return cmd_encode(args) if args.cmd == "encode" else cmd_verify(args)


if __name__ == "__main__":
    sys.exit(main())
