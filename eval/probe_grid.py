#!/usr/bin/env python3
"""Prototype, not the codec: a latent-grid coordinate network, rate estimated, no bitstream.

The question it answers (ABLATIONS.md section K): is a multi-resolution latent
grid plus a tiny MLP (the Cool-chic / C3 family, here without their
autoregressive entropy model) better than pranc's SIREN at equal bits and
equal encode time on this machine? It is still coordinates in, colour out:

    pixel (y, x) -> [bilinear sample of grid level l at (y, x), l = first..first+levels-1]
                 -> Linear(levels, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, 3) + 0.5

Level l has ceil(H / 2^l) x ceil(W / 2^l) latents (one channel). Fitting: Adam
on pixel minibatches; the loss is MSE + lambda x rate (bits per pixel), the
rate being the code length of the latents under one zero-mean discretized
Laplace per level with a learned scale (the model ``entropy.py`` codes with),
latents perturbed by uniform noise as the quantization proxy, then rounded
with a straight-through gradient for the last ``--ste-frac`` of the steps.
The rate term is evaluated every ``--rate-every`` steps (scaled up to match):
over all ~1.33 H W latents it costs more than the pixel batch does.

Reported bpp = code length of the rounded latents under the fitted model +
the MLP's weights, quantized per layer (step = max |w| / 2^(bits-1)) and
counted at their empirical entropy, + 32 bits per level for the model's scale.
PSNR and MS-SSIM (``pranc_codec.metrics``) are of the rendered, clamped, 8-bit
output with those quantized weights.
The files a codec would write would be a little larger (header, coder
overhead, under 1 % for rANS at these sizes).

With ``--bpp`` the rate weight starts at ``--lam`` and follows the target:
after every rate evaluation of the noisy phase, lambda is multiplied by
(rate of the rounded latents / their share of the target)^gain, a dual ascent
on the rate constraint (it costs one more pass over the latents).

With ``--context N`` the Laplace scale of each latent of the N finest levels
is exp(a_l + c_l log(0.5 + |latent of level l+1 above it|)), a cross-scale
context: a decoder that decodes coarse to fine knows it, and all
latents of a level still decode in parallel (unlike a raster-order
autoregressive model). Examples:

    python eval/probe_grid.py ../shared/data/kodak/kodim23.png --lam 2.5e-4
    python eval/probe_grid.py ../shared/data/kodak/kodim23.png --bpp 0.5 --lam 2.5e-3
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pranc_codec.fit import lr_at
from pranc_codec.image_io import read_image
from pranc_codec.metrics import ms_ssim, psnr


def laplace_bits(v: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """Code length (bits, summed) of values v under a unit-bin discretized Laplace of scale exp(log_b)."""
    b = torch.exp(log_b) + 1e-3
    a = v.abs()
    # each branch sees only its own range: an overflow in the unused branch would
    # still put 0 x inf = NaN into the gradient through torch.where
    ai, ao = a.clamp(max=0.5), a.clamp(min=0.5)
    inner = 1 - 0.5 * (torch.exp((ai - 0.5) / b) + torch.exp(-(ai + 0.5) / b))  # P for |v| < 0.5
    outer = 0.5 * torch.exp(-(ao - 0.5) / b) * (1 - torch.exp(-1 / b))  # P for |v| >= 0.5
    p = torch.where(a < 0.5, inner, outer).clamp_min(1e-9)
    return -torch.log2(p).sum()


def sample_levels(grids: list[torch.Tensor], levels: list[int], py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (align_corners=False) of every level at pixels (py, px): (N, levels)."""
    out = []
    for level, g in zip(levels, grids):
        h, w = g.shape
        s = float(2 ** level)
        u = (px + 0.5) / s - 0.5
        v = (py + 0.5) / s - 0.5
        x0f, y0f = torch.floor(u), torch.floor(v)
        fx, fy = u - x0f, v - y0f
        x0, y0 = x0f.long(), y0f.long()
        x1, y1 = (x0 + 1).clamp(0, w - 1), (y0 + 1).clamp(0, h - 1)
        x0, y0 = x0.clamp(0, w - 1), y0.clamp(0, h - 1)
        flat = g.reshape(-1)

        def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
            return flat.index_select(0, yy * w + xx)

        top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
        bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
        out.append(top * (1 - fy) + bottom * fy)
    return torch.stack(out, 1)


def empirical_bits(q: np.ndarray) -> float:
    """Zeroth-order entropy code length of an integer array (bits)."""
    _, counts = np.unique(q, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", type=Path)
    ap.add_argument("--lam", type=float, default=1e-3, help="rate weight (MSE in [0,1]^2 per bpp)")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=16384, help="pixels per step")
    ap.add_argument("--levels", type=int, default=7)
    ap.add_argument("--first", type=int, default=0, help="finest level (0 = full resolution)")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05, help="latents")
    ap.add_argument("--mlp-lr", type=float, default=0.01)
    ap.add_argument("--ste-frac", type=float, default=0.1)
    ap.add_argument("--rate-every", type=int, default=4)
    ap.add_argument("--bpp", type=float, default=0.0, help="target bpp: lambda follows the rate (0 = fixed --lam)")
    ap.add_argument("--gain", type=float, default=0.05, help="lambda controller gain per rate evaluation")
    ap.add_argument("--mlp-bits", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--context", type=int, default=0, metavar="N",
                    help="the N finest levels take each latent's scale from the coarser level's magnitude there")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    image = read_image(args.image)[0]
    H, W, C = image.shape
    target = torch.from_numpy(image.reshape(-1, C).astype(np.float32) / 255.0)
    levels = list(range(args.first, args.first + args.levels))
    grids = [torch.zeros(math.ceil(H / 2 ** l), math.ceil(W / 2 ** l), requires_grad=True) for l in levels]
    log_b = torch.zeros(len(levels), requires_grad=True)
    ctx_w = torch.zeros(len(levels), requires_grad=True)

    def level_log_b(ys: list[torch.Tensor], i: int) -> torch.Tensor:
        """Scale of level i's latents: from the coarser level's magnitudes (decoded first)."""
        if i >= min(args.context, len(ys) - 1):
            return log_b[i]
        h_, w_ = ys[i].shape
        up = ys[i + 1].abs().repeat_interleave(2, 0).repeat_interleave(2, 1)[:h_, :w_]
        return log_b[i] + ctx_w[i] * torch.log(0.5 + up)

    def level_bits(ys: list[torch.Tensor]) -> list[torch.Tensor]:
        """Code length (bits) of each level's latents under its scale model."""
        return [laplace_bits(y, level_log_b(ys, i)) for i, y in enumerate(ys)]

    h = args.hidden
    mlp = torch.nn.Sequential(torch.nn.Linear(len(levels), h), torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU(),
                              torch.nn.Linear(h, C))
    opt = torch.optim.Adam([{"params": grids + [log_b, ctx_w], "lr": args.lr},
                            {"params": list(mlp.parameters()), "lr": args.mlp_lr}])
    base = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator().manual_seed(0)
    trace = []
    lam = args.lam
    n_mlp = sum(p.numel() for p in mlp.parameters())
    latent_target = args.bpp - (n_mlp * args.mlp_bits + 32 * len(levels)) / (H * W)
    for step in range(args.steps):
        for g, b0 in zip(opt.param_groups, base):
            g["lr"] = lr_at(step, args.steps, b0, 0, 0.02)  # the codec's cosine schedule, no warm-up
        ste = step / args.steps >= 1 - args.ste_frac
        ys = [y + (torch.round(y) - y).detach() if ste else y + torch.rand_like(y) - 0.5 for y in grids]
        idx = torch.randint(0, H * W, (args.batch,), generator=gen)
        pred = mlp(sample_levels(ys, levels, (idx // W).float(), (idx % W).float())) + 0.5
        mse = F.mse_loss(pred, target.index_select(0, idx))
        loss = mse
        if ste or step % args.rate_every == 0:
            rate = sum(level_bits(ys)) / (H * W)
            loss = loss + lam * (1 if ste else args.rate_every) * rate
            if args.bpp and not ste:
                # dual ascent on the rate constraint, on the rate of the rounded latents
                with torch.no_grad():
                    r = sum(map(float, level_bits([torch.round(g) for g in grids]))) / (H * W)
                lam *= math.exp(args.gain * math.log(max(r, 1e-6) / latent_target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % max(1, args.steps // 10) == 0:
            trace.append(round(-10 * math.log10(mse.item()), 2))
    fit_s = time.perf_counter() - t0
    with torch.no_grad():
        q = [torch.round(y) for y in grids]
        lat_bits = sum(map(float, level_bits(q)))
        mlp_bits = 0.0
        for p in mlp.parameters():
            step_w = float(p.abs().max()) / 2 ** (args.mlp_bits - 1) or 1.0
            qw = torch.round(p / step_w)
            mlp_bits += empirical_bits(qw.numpy().astype(np.int64)) + 32
            p.copy_(qw * step_w)
        idx = torch.arange(H * W)
        out = torch.cat([mlp(sample_levels(q, levels, (i // W).float(), (i % W).float())) + 0.5
                         for i in idx.split(65536)])
        decoded = torch.round(out.clamp(0, 1) * 255).to(torch.uint8).reshape(H, W, C).numpy()
    bits = lat_bits + mlp_bits + 32 * len(levels)
    print(json.dumps(dict(image=args.image.stem, lam=args.lam, lam_final=lam, context=args.context,
                          ctx_w=[round(float(v), 3) for v in ctx_w.detach()], bpp_target=args.bpp, steps=args.steps,
                          batch=args.batch, levels=levels,
                          hidden=h, lr=args.lr, psnr=round(psnr(image, decoded), 2),
                          ms_ssim=round(ms_ssim(image, decoded), 4), bpp=round(bits / (H * W), 4),
                          latent_bpp=round(lat_bits / (H * W), 4), mlp_bpp=round(mlp_bits / (H * W), 4),
                          batch_psnr_every_10pct=trace, encode_s=round(fit_s, 1))), flush=True)


if __name__ == "__main__":
    main()
