#!/usr/bin/env python3
"""One encode with configuration overrides, one JSON line (the ablation rows of ABLATIONS.md L).

    python eval/encode_one.py IMAGE BPP [section.field=value ...]
    python eval/encode_one.py ../shared/data/kodak/kodim23.png 1.0 grid.lr=0.08

Overrides use the syntax of ``pranc eval --set`` (``config.apply_overrides``);
one torch thread, as the harness runs its encodes. PSNR and MS-SSIM are of the
decoder's output. ``speed`` is the machine's speed around the encode, as the
harness measures it (``pranc_codec/evaluation/calibration.py``; 1 = the reference
machine in a quiet hour), so that probes run in different hours compare.
"""
import json
import sys

from pranc_codec import CodecConfig, encode
from pranc_codec.config import apply_overrides
from pranc_codec.evaluation.calibration import framed, speed_of
from pranc_codec.image_io import read_image


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    image = read_image(sys.argv[1])[0]
    cfg = apply_overrides(CodecConfig(), [f"rate.bpp={sys.argv[2]}", "fit.threads=1"] + sys.argv[3:])
    result, ref_s = framed(lambda: encode(image, cfg))
    s = result.stats
    print(json.dumps({"image": sys.argv[1].split("/")[-1], "bpp_target": float(sys.argv[2]), "over": sys.argv[3:],
                      "bytes": s.bytes, "max_bytes": s.max_bytes, "bpp": round(s.bpp, 4), "psnr": round(s.psnr, 2),
                      "ms_ssim": None if s.ms_ssim is None else round(s.ms_ssim, 4),
                      "hidden": s.net_width, "steps": s.steps, "sweeps": s.sweeps,
                      "encode_s": round(s.encode_seconds, 1),
                      "speed": round(speed_of(ref_s), 2)}), flush=True)


if __name__ == "__main__":
    main()
