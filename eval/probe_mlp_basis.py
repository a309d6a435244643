#!/usr/bin/env python3
"""Probe: the latent grid's MLP in PRANC form (weights = theta0(seed) + B(seed) @ alpha).

    python eval/probe_mlp_basis.py IMAGE BPP EXPANSION [HIDDEN]

Fits with ``fit_grid(..., subspace=spec)``, quantizes alpha per layer at the bit
depth that minimises MSE + lambda x rate, and reports the size the file would
have (the direct file's latents and header, with the MLP's code replaced by
alpha's code length) and the PSNR / MS-SSIM of the float64 render. EXPANSION 1
runs the default (direct weights) through the same path, for a like-for-like
row. One JSON line; one torch thread.
"""
import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from pranc_codec import bitstream, entropy, metrics
from pranc_codec.config import BasisKind, CodecConfig
from pranc_codec.grid_codec import GridCode, _features, pack, plan, quantize_mlp
from pranc_codec.grid_fit import fit_grid
from pranc_codec.image_io import read_image
from pranc_codec.latent import render, split_params, mlp_forward
from pranc_codec.subspace import EXPANSION_ONE, SubspaceSpec, reconstruct


def main() -> None:
    torch.set_num_threads(1)
    path, bpp, expansion = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    image = read_image(path)[0]
    H, W, C = image.shape
    n = H * W
    config = replace(CodecConfig(), rate=replace(CodecConfig().rate, bpp=bpp))
    cfg = config.grid
    if bpp >= cfg.high_rate_bpp:
        cfg = replace(cfg, lr=cfg.lr_high, mlp_lr=cfg.mlp_lr_high)
    shape = plan(config, H, W, C)
    if len(sys.argv) > 4:
        shape = replace(shape, hidden=int(sys.argv[4]))
    spec = None
    coefs = shape.num_params
    if expansion > 1:
        spec = SubspaceSpec(seed=config.seed, kind=BasisKind.ORTHOGONAL, chunk_size=cfg.mlp_chunk,
                            expansion_fp=round(expansion * EXPANSION_ONE), density_byte=85, offset=True, shape=shape)
        coefs = spec.num_coefs
    overhead = 8 * bitstream.grid_header_size(shape, 0) + 32 * 2
    latent_bpp = max(1e-3, bpp - (overhead + cfg.mlp_bits_estimate * coefs) / n)
    t0 = time.perf_counter()
    target = torch.from_numpy(image.astype(np.float32) / 255.0)
    fit = fit_grid(target, shape, cfg, latent_bpp, subspace=spec)
    latents = [torch.round(g) for g in fit.latents]
    feats = _features(latents, W, n)
    pixels = target.reshape(-1, C)
    params = fit.weights if spec is None else fit.alpha
    best = None
    for bits in cfg.mlp_bits:
        qs, steps = quantize_mlp(params, bits)
        if spec is None:
            w64 = [torch.from_numpy(q.astype(np.float64) * s) for q, s in zip(qs, steps)]
        else:
            a = np.concatenate([q.astype(np.float64) * s for q, s in zip(qs, steps)])
            w64 = [t[0] for t in reconstruct(spec, a)]
        with torch.no_grad():
            mse = float(torch.mean((mlp_forward(feats, split_params([w.float() for w in w64], shape)) - pixels) ** 2))
        nbits = sum(entropy.code_length(q, entropy.fit_model(q)) for q in qs)
        cost = mse + fit.lam * nbits / n
        if best is None or cost < best[0]:
            best = (cost, bits, nbits, w64)
    _, bits, mlp_bits, w64 = best
    # the file's latents and header: pack with the direct weights at 8 bits, then swap the MLP's code length
    dq, dsteps = quantize_mlp([w.float() for w in w64], 8)
    direct = pack(GridCode([g.numpy().astype(np.int32) for g in latents], dq, dsteps), shape, H, W)
    direct_mlp = sum(entropy.code_length(q, entropy.fit_model(q)) for q in dq)
    total_bits = 8 * len(direct) - direct_mlp + mlp_bits
    out = render([g.double() for g in latents], w64, shape, H, W).numpy()
    print(json.dumps({"image": path.split("/")[-1], "bpp_target": bpp, "expansion": expansion, "hidden": shape.hidden,
                      "coefs": coefs, "mlp_bits": round(mlp_bits), "bits_per_coef": bits,
                      "bpp": round(total_bits / n, 4), "psnr": round(metrics.psnr(image, out), 2),
                      "ms_ssim": round(metrics.ms_ssim(image, out), 4),
                      "encode_s": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
