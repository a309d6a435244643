#!/usr/bin/env python3
"""Small pictures across fit seeds: one JSON line per encode (ABLATIONS.md AJ3).

    python eval/probe_small.py SRC HEIGHT WIDTH BPPS SEEDS [section.field=value ...]
    python eval/probe_small.py smooth 48 64 2,3,4 5
    python eval/probe_small.py ../shared/data/kodak/kodim05.png 96 128 2,3,4 5 grid.lr_growth=0

SRC ``smooth`` is the tests' synthetic picture (``tests.conftest.smooth_image``,
seed 0); otherwise the HEIGHT x WIDTH crop of SRC at row 200, column 300. Each
target in BPPS is encoded with fit seeds (``grid.seed``) 0 .. SEEDS-1, on the
CPU with one thread; PSNR is of the decoder's output (the encoder measures it
on the file it wrote). Run from the repository root.
"""
import json
import sys

import numpy as np

sys.path.insert(0, ".")
from tests.conftest import smooth_image  # noqa: E402

from pranc_codec import CodecConfig, encode  # noqa: E402
from pranc_codec.config import apply_overrides  # noqa: E402
from pranc_codec.image_io import read_image  # noqa: E402


def main() -> None:
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    src, h, w, bpps, seeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    if src == "smooth":
        img = smooth_image(h, w, 3, seed=0)
    else:
        img = np.ascontiguousarray(read_image(src)[0][200:200 + h, 300:300 + w])
    for bpp in bpps.split(","):
        for seed in range(seeds):
            cfg = apply_overrides(CodecConfig(), [f"rate.bpp={bpp}", "device=cpu", "fit.threads=1",
                                                  f"grid.seed={seed}"] + sys.argv[6:])
            st = encode(img, cfg).stats
            print(json.dumps(dict(src=src.split("/")[-1], bpp_t=bpp, seed=seed, over=sys.argv[6:],
                                  bpp=round(st.bpp, 3), psnr=round(st.psnr, 2), s=round(st.encode_seconds, 1))),
                  flush=True)


if __name__ == "__main__":
    main()
