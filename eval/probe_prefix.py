#!/usr/bin/env python3
"""Probe: a grid file decoded with its k finest latent levels left at zero (ABLATIONS.md AE1).

What a progressive decoder would show from a prefix of the stream, if the coarse levels came first and the
fine ones were missing. The loop filter is not applied (its coefficients were fitted to the whole picture).

    python eval/probe_prefix.py FILE.prc ORIGINAL.png
"""
import sys

import numpy as np

from pranc_codec import bitstream, grid_codec, grid_decode
from pranc_codec.image_io import read_image
from pranc_codec.metrics import ms_ssim, psnr


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = open(sys.argv[1], "rb").read()
    image = read_image(sys.argv[2])[0]
    header, payload = bitstream.parse(data)
    latents, mlp, _ = grid_decode.read_v5(header, bitstream.split_segments(header, payload))
    sizes = [g.size for g in latents]
    for k in range(len(latents)):
        kept = [np.zeros_like(g) if l < k else g for l, g in enumerate(latents)]
        pixels = grid_codec._render(kept, mlp, header.mlp_steps, header.shape, header.height, header.width)
        dropped = sum(int((g != 0).sum()) for g in latents[:k])
        print(f"{k} finest levels zeroed: {sum(sizes[k:]) / sum(sizes):.3f} of the latents kept, {dropped} nonzero "
              f"dropped: {psnr(image, pixels):.2f} dB, MS-SSIM {ms_ssim(image, pixels):.4f}")


if __name__ == "__main__":
    main()
