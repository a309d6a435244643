"""Encoding and decoding of latent-grid files (format version 4); ``codec.py`` dispatches here.

Encoder: fit latents and MLP for the target rate (grid_fit.py), round the
latents, quantize the MLP at the bit depth that minimises MSE + lambda x rate,
entropy-code everything with one Laplace model per latent level and per MLP
layer (entropy.py), and pack (bitstream.py). Decoder: the reverse, then
:func:`latent.render`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from . import bitstream, entropy
from .bitstream import GridHeader
from .config import CodecConfig
from .grid_fit import GridFit, fit_grid
from .latent import GridShape, mlp_forward, render, sample_levels, split_params
from .quantization import dequantize, quantize


@dataclass
class GridCode:
    """Everything that goes into the file: integer symbols, MLP steps, and the models fitted to them."""

    latents: list[np.ndarray]  # int32 (h_l, w_l) per level
    mlp_q: list[np.ndarray]  # int32 (n_l,) per MLP layer
    mlp_steps: list[float]  # float32 values


def plan(config: CodecConfig, height: int, width: int, channels: int) -> GridShape:
    """The network for this picture and budget: the configured levels (no grid below 1 x 1 pixel) and
    the widest MLP, up to ``grid.hidden``, whose expected coded size fits ``grid.mlp_share`` of the budget."""
    g = config.grid
    levels = max(1, min(g.levels, (max(height, width) - 1).bit_length() + 1))
    budget = g.mlp_share * config.rate.bpp * height * width / g.mlp_bits_estimate

    def shape(h: int) -> GridShape:
        return GridShape(levels=levels, hidden=h, hidden_layers=g.hidden_layers, channels=channels)

    hidden = max([h for h in range(g.min_hidden, g.hidden + 1) if shape(h).num_params <= budget], default=g.min_hidden)
    return shape(hidden)


def _segment_counts(group_sizes: list[int], a: int, b: int) -> list[int]:
    """Symbols of each group that fall in [a, b) of the concatenated sequence."""
    out, start = [], 0
    for n in group_sizes:
        out.append(max(0, min(b, start + n) - max(a, start)))
        start += n
    return out


def pack(code: GridCode, shape: GridShape, height: int, width: int) -> bytes:
    """Symbols -> ``.prc`` bytes (fits one Laplace model per level and per MLP layer)."""
    level_models = [entropy.fit_model(q.reshape(-1)) for q in code.latents]
    mlp_models = [entropy.fit_model(q) for q in code.mlp_q]
    header = GridHeader(width=width, height=height, channels=shape.channels, shape=shape,
                        level_models=tuple(level_models), mlp_steps=tuple(code.mlp_steps),
                        mlp_models=tuple(mlp_models))
    symbols = np.concatenate([q.reshape(-1) for q in code.latents] + list(code.mlp_q))
    models = level_models + mlp_models
    sizes = header.group_sizes()
    bounds = header.segment_bounds()
    segments = [entropy.encode(symbols[a:b], _segment_counts(sizes, a, b), models) for a, b in zip(bounds, bounds[1:])]
    return bitstream.pack_grid(header, segments)


def decode(header: GridHeader, payload: bytes) -> np.ndarray:
    """Payload of a version-4 file -> uint8 (H, W, C)."""
    shape = header.shape
    segments = bitstream.split_segments(header, payload)
    sizes = header.group_sizes()
    bounds = header.segment_bounds()
    models = list(header.level_models + header.mlp_models)
    symbols = np.empty(bounds[-1], dtype=np.int32)
    for seg, a, b in zip(segments, bounds, bounds[1:]):
        symbols[a:b] = entropy.decode(seg, _segment_counts(sizes, a, b), models)
    parts = np.split(symbols, np.cumsum(sizes)[:-1])
    latents = [torch.from_numpy(q.reshape(h, w)) for q, (h, w) in zip(parts, shape.level_dims(header.height, header.width))]
    # one correctly rounded multiplication per weight: the same on every machine
    weights = [torch.from_numpy(dequantize(q, float(step))) for q, step in zip(parts[shape.levels:], header.mlp_steps)]
    return render(latents, weights, shape, header.height, header.width).numpy()


def quantize_mlp(weights: list[torch.Tensor], bits: int) -> tuple[list[np.ndarray], list[float]]:
    """Per layer: step = max|w| / 2^(bits-1) (as float32), symbols round(w / step)."""
    qs, steps = [], []
    for w in weights:
        w64 = w.detach().double().cpu().numpy()
        step = float(np.float32(max(float(np.abs(w64).max()), 1e-12) / 2 ** (bits - 1)))
        qs.append(quantize(w64, step))
        steps.append(step)
    return qs, steps


def choose_mlp_bits(feats: torch.Tensor, target: torch.Tensor, weights: list[torch.Tensor], shape: GridShape,
                    bit_choices: tuple[int, ...], lam: float,
                    pixels: int) -> tuple[int, list[np.ndarray], list[float]]:
    """Bit depth of the MLP that minimises MSE + lambda x (its bits per pixel), with its symbols and steps.

    feats: (P, levels) float32 features of the rounded latents at P pixels;
    target: (P, C) in [0, 1]. Bits are the ideal code length under the fitted
    Laplace models, over ``pixels`` pixels of the image.
    """
    best, best_cost = None, float("inf")
    for bits in bit_choices:
        qs, steps = quantize_mlp(weights, bits)
        wq = [torch.from_numpy(q.astype(np.float32) * s) for q, s in zip(qs, steps)]
        with torch.no_grad():
            mse = float(torch.mean((mlp_forward(feats, split_params(wq, shape)) - target) ** 2))
        nbits = sum(entropy.code_length(q, entropy.fit_model(q)) for q in qs)
        cost = mse + lam * nbits / pixels
        if best is None or cost < best_cost:
            best, best_cost = (bits, qs, steps), cost
    return best


def _features(latents: list[torch.Tensor], width: int, n: int) -> torch.Tensor:
    """(n, levels) float32 features of the (rounded) latents at every pixel."""
    idx = torch.arange(n)
    with torch.no_grad():
        return sample_levels(latents, (idx // width).float(), (idx % width).float()).t().contiguous()


def _collapsed(feats: torch.Tensor, target: torch.Tensor, fit: GridFit, shape: GridShape) -> bool:
    """True when the fit is within 3 dB of the flat mean-colour picture (or not finite): it failed."""
    with torch.no_grad():
        pred = mlp_forward(feats, split_params([w.cpu() for w in fit.weights], shape))
        mse = float(torch.mean((pred - target) ** 2))
        flat = float(torch.mean((target - target.mean(0)) ** 2))
    return not math.isfinite(mse) or mse > 0.5 * flat


def fit_and_code(image: np.ndarray, config: CodecConfig, device: torch.device,
                 progress=None) -> tuple[bytes, GridShape]:
    """uint8 (H, W, C) -> ``.prc`` bytes, and the network shape it used."""
    height, width, channels = image.shape
    cfg = config.grid
    if config.rate.bpp >= cfg.high_rate_bpp:
        cfg = replace(cfg, lr=cfg.lr_high)
    shape = plan(config, height, width, channels)
    n = height * width
    target = torch.from_numpy(image.astype(np.float32) / 255.0).to(device)
    segments = len(bitstream.segment_bounds(shape.num_latents(height, width) + shape.num_params)) - 1
    overhead = 8 * bitstream.grid_header_size(shape) + 32 * segments
    latent_bpp = max(1e-3, config.rate.bpp - (overhead + cfg.mlp_bits_estimate * shape.num_params) / n)
    pixels = target.reshape(-1, channels).cpu()
    cb = progress("fit", cfg.steps) if progress else None
    fit = fit_grid(target, shape, cfg, latent_bpp, progress=cb)
    latents = [torch.round(g).cpu() for g in fit.latents]
    feats = _features(latents, width, n)
    if _collapsed(feats, pixels, fit, shape):
        cb = progress("fit (retry)", cfg.steps) if progress else None
        retry = replace(cfg, lr=cfg.lr * cfg.retry_lr_factor, mlp_lr=cfg.mlp_lr * cfg.retry_lr_factor)
        fit = fit_grid(target, shape, retry, latent_bpp, progress=cb, lam_range=cfg.retry_lam_range)
        latents = [torch.round(g).cpu() for g in fit.latents]
        feats = _features(latents, width, n)
    _, mlp_q, steps = choose_mlp_bits(feats, pixels, [w.cpu() for w in fit.weights], shape, cfg.mlp_bits, fit.lam, n)
    code = GridCode(latents=[g.numpy().astype(np.int32) for g in latents], mlp_q=mlp_q, mlp_steps=steps)
    return pack(code, shape, height, width), shape
