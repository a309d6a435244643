#!/usr/bin/env python3
"""Ablation probe: fit once, then replay what follows the fit (MLP bits, loop filter, pack, decode) per variant.

The latent-grid fit takes 30-40 s and does not depend on what the encoder does
after it, so variants of those later choices can be compared on the very same
fits (ABLATIONS.md W1-W2). Two steps:

    python eval/replay_fit.py fit ../shared/data/kodak/kodim15.png 0.125 /tmp/fits/kodim15_0.125.pt
    python eval/replay_fit.py replay /tmp/fits/kodim15_0.125.pt fit curve curve:0.5 ratio > W.jsonl
    python eval/equal_rate.py W-curve.jsonl - W-fit.jsonl

``fit`` saves the encoder's fit (latents, MLP weights, lambda) with the
default settings and any ``section.field=value`` overrides after the path.
``capture`` (same arguments) runs a whole encode and saves instead what the
encoder hands its choices after the fit (``grid_codec.choose_code``): the
latents and MLP after the rate-distortion rounding, and its price of a bit; it
prints the encode's own line, which ``replay FILE curve`` repeats exactly:

    python eval/replay_fit.py capture ../shared/data/kodak/kodim15.png 0.5 /tmp/cap/kodim15_0.5.pt
    python eval/replay_fit.py replay /tmp/cap/kodim15_0.5.pt curve --set filter.taps=3,5,7,9 > V.jsonl

``replay`` prints one JSON line per lambda for the choices after the fit,
``grid_codec.choose_code`` then ``pack`` (``encode_one.py``'s fields; encode_s is 0): ``fit`` the fit's own lambda
(session 17's encoder), ``curve[:k]`` k x ``grid_codec.curve_lambda`` (the
default, k = 1), ``ratio`` the fit's lambda x plain MSE / structure-weighted
MSE (on a captured file: ``curve`` at the encoder's own MSE, which the
overrides' ``grid.slope_db`` reprices; ``fit`` the encoder's lambda). ``--set``
applies overrides to the choices after the fit. The image is read from the Kodak folder (``--kodak``) by the fit file's
name, ``IMAGE_BPP.pt``. Each line also splits the file's bits (ABLATIONS.md X4):
``latent_budget`` (bits the encoder leaves the latents), ``latent_bits`` (the
coder's code length of the fit's rounded latents, models included),
``mlp_bits`` (the chosen MLP's ideal code length) and ``filter_bits`` (the file
less the same file without a filter).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pranc_codec import bitstream, grid_codec
from pranc_codec.codec import decode
from pranc_codec.config import CodecConfig, apply_overrides
from pranc_codec.grid_fit import context_state, fit_grid, structure_weights
from pranc_codec.image_io import read_image
from pranc_codec.latent import GridShape, mlp_forward, split_params
from pranc_codec.metrics import ms_ssim, psnr


def _setup(image: np.ndarray, bpp: float, settings: list[str]):
    cfg = apply_overrides(CodecConfig(), [f"rate.bpp={bpp}"] + settings)
    h, w, c = image.shape
    return cfg, grid_codec.plan(cfg, h, w, c)


def fit(image_path: Path, bpp: float, out: Path, settings: list[str]) -> None:
    image = read_image(image_path)[0]
    cfg, _ = _setup(image, bpp, settings)
    target = torch.from_numpy(image.astype(np.float32) / 255.0)
    shape, latent_bpp, g = grid_codec.fit_plan(image, cfg, torch.device("cpu"))
    result = fit_grid(target, shape, g, latent_bpp)
    torch.save(dict(latents=result.latents, weights=result.weights, lam=result.lam, settings=settings), out)


def capture(image_path: Path, bpp: float, out: Path, settings: list[str]) -> None:
    from pranc_codec import codec

    image = read_image(image_path)[0]
    cfg, _ = _setup(image, bpp, settings + ["fit.threads=1"])
    real, saved = grid_codec.choose_code, {}

    def spy(image, pixels, latents, feats, weights, shape, config, lam, **kw):
        if not saved:  # the encode's own call (a trim under a ceiling calls it again)
            saved.update(latents=[g.clone() for g in latents], weights=[w.detach().cpu().clone() for w in weights],
                         lam=lam, mse=lam / grid_codec.curve_lambda(1.0, bpp, cfg.grid), settings=settings,
                         captured=True)
        return real(image, pixels, latents, feats, weights, shape, config, lam, **kw)

    grid_codec.choose_code = spy  # fit_and_code looks it up in its module
    try:
        result = codec.encode(image, cfg)
    finally:
        grid_codec.choose_code = real
    if not saved:
        raise SystemExit(f"{image_path}: the encode did not fit a latent grid")
    torch.save(saved, out)
    s = result.stats
    print(json.dumps(dict(image=image_path.name, bpp_target=bpp, over=["encode"], bpp=8 * s.bytes / (image.shape[0]
                                                                                               * image.shape[1]),
                          psnr=s.psnr, ms_ssim=s.ms_ssim, encode_s=s.encode_seconds)), flush=True)


@dataclass
class SavedFit:
    """A fit saved by ``fit``, with its picture and what the encoder derives from it before its later choices."""

    name: str
    bpp: float
    saved: dict  # latents, weights, lam, settings
    image: np.ndarray  # uint8 (H, W, C)
    cfg: CodecConfig
    shape: GridShape
    target: torch.Tensor  # (H, W, C) colour in [0, 1]
    pixels: torch.Tensor  # the same, (H W, C)
    latents: list[torch.Tensor]  # the fit's latents rounded
    feats: torch.Tensor  # their (H W, levels) features


def load_fit(path: Path, kodak: Path) -> SavedFit:
    """The fit saved at ``path`` (``IMAGE_BPP.pt``) and its Kodak picture from ``kodak``."""
    name, bpp_text = path.stem.rsplit("_", 1)
    bpp = float(bpp_text)
    saved = torch.load(path)
    image = read_image(kodak / f"{name}.png")[0]
    cfg, shape = _setup(image, bpp, saved.get("settings", []))
    h, w, c = image.shape
    target = torch.from_numpy(image.astype(np.float32) / 255.0)
    latents = [torch.round(g) for g in saved["latents"]]
    return SavedFit(name, bpp, saved, image, cfg, shape, target, target.reshape(-1, c), latents,
                    grid_codec._features(latents, w, h * w))


def replay(path: Path, modes: list[str], kodak: Path, overrides: list[str]) -> None:
    f = load_fit(path, kodak)
    if overrides:
        f.cfg = apply_overrides(f.cfg, overrides)
    name, bpp, saved, image, cfg, shape = f.name, f.bpp, f.saved, f.image, f.cfg, f.shape
    target, pixels, latents, feats = f.target, f.pixels, f.latents, f.feats
    h, w, c = image.shape
    n = h * w
    with torch.no_grad():
        err = (mlp_forward(feats, split_params(saved["weights"], shape)) - pixels) ** 2  # (n, C)
    mse = float(err.mean()) if not saved.get("captured") else saved["mse"]
    latent_bits = context_state(latents, 0 if latents[0].abs().sum() > 0 else 1).bits
    for mode in modes:
        kind, _, factor = mode.partition(":")
        if kind == "fit":
            lam = saved["lam"]
        elif kind == "curve":
            lam = float(factor or 1.0) * grid_codec.curve_lambda(mse, bpp, cfg.grid)
        elif kind == "ratio" and not saved.get("captured"):
            weights = structure_weights(target, cfg.grid.structure_mix, cfg.grid.structure_cap)  # (C, n)
            lam = saved["lam"] * mse / float((err.t() * weights).mean())
        else:
            raise SystemExit(f"unknown mode {mode!r}: fit, curve[:k] or (on a fit) ratio")
        code = grid_codec.choose_code(image, pixels, latents, feats, saved["weights"], shape, cfg, lam)
        data = grid_codec.pack(code, shape, h, w)
        bare = grid_codec.pack(replace(code, loop_filter=None), shape, h, w)
        split = dict(latent_budget=grid_codec.latent_budget(cfg, shape, h, w) * n, latent_bits=latent_bits,
                     mlp_bits=grid_codec.mlp_code_length(code.mlp_q), filter_bits=8 * (len(data) - len(bare)))
        header = bitstream.parse(data)[0]
        flt = [header.filter_taps, header.filter_symmetric, header.filter_shift] if header.filter_taps else None
        out = decode(data)
        print(json.dumps(dict(image=f"{name}.png", bpp_target=bpp, over=[mode] + overrides, bpp=8 * len(data) / n,
                              psnr=psnr(image, out), ms_ssim=ms_ssim(image, out), encode_s=0.0, lam=lam,
                              mlp_steps=list(header.mlp_steps), filter=flt, **split)), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("image", type=Path)
    f.add_argument("bpp", type=float)
    f.add_argument("out", type=Path)
    f.add_argument("settings", nargs="*")
    c = sub.add_parser("capture")
    c.add_argument("image", type=Path)
    c.add_argument("bpp", type=float)
    c.add_argument("out", type=Path)
    c.add_argument("settings", nargs="*")
    r = sub.add_parser("replay")
    r.add_argument("fit", type=Path)
    r.add_argument("modes", nargs="+")
    r.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.cmd == "fit":
        fit(args.image, args.bpp, args.out, args.settings)
    elif args.cmd == "capture":
        capture(args.image, args.bpp, args.out, args.settings)
    else:
        replay(args.fit, args.modes, args.kodak, args.overrides)


if __name__ == "__main__":
    main()
