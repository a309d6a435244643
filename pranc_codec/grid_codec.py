"""Encoding of latent-grid files (format version 8); ``codec.py`` dispatches here.

Encoder: fit latents and MLP for the target rate (grid_fit.py), round the
latents and move them a step where that lowers error + lambda x bits
(rounding.py), quantize the MLP at the bit depth that minimises MSE + lambda x rate,
entropy-code the latents in context order (context.py: one Laplace model per
context bucket of each level and pass) and the MLP with one model per layer
(entropy.py), fit the loop filter to the decoded picture (loop_filter.py), and
pack (bitstream.py; version 8, the filter flagged). The decoder is
``grid_decode.py`` (numpy, no torch); the encoder renders and reads through it
too, so that it measures what a decoder will produce.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import numpy as np
import torch

from . import bitstream, entropy, grid_decode, loop_filter, metrics, rounding
from .bitstream import MODEL_BITS, GridHeader
from .config import CodecConfig, GridConfig, RoundingConfig
from .errors import LimitError
from .shapes import MAX_BUCKETS, PASS_OF, PASSES, SUBLATTICES
from .grid_fit import (GridFit, context_state, decoded_residual, fit_grid, fits_finest, pixel_weights, refit_mlp,
                       seen_weights)
from .latent import GridShape, mlp_forward, sample_levels, split_params
from .loop_filter import LoopFilter
from .time_budget import Budget
from .quantization import gptq_factors, gptq_round_rows, quantize


@dataclass
class GridCode:
    """Everything that goes into the file: integer symbols, MLP steps, and the models fitted to them."""

    latents: list[np.ndarray]  # int32 (h_l, w_l) per level
    mlp_q: list[np.ndarray]  # int32 (n_l,) per MLP layer
    mlp_steps: list[float]  # float32 values
    loop_filter: LoopFilter | None = None


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


def _choose_buckets(symbols: np.ndarray, ctx: np.ndarray) -> list[entropy.LaplaceModel]:
    """The bucket count (1..MAX_BUCKETS) that minimises coded bits plus header bits, and its (compact) models."""
    best, best_bits = None, math.inf
    for n in range(1, MAX_BUCKETS + 1):
        b = grid_decode.buckets(ctx, n)
        parts = [symbols[b == k] for k in range(n)]
        models = [entropy.fit_compact_model(q) for q in parts]
        bits = sum(entropy.code_length(q, m) for q, m in zip(parts, models)) + MODEL_BITS * n
        if bits < best_bits:
            best, best_bits = models, bits
    return best


def pack(code: GridCode, shape: GridShape, height: int, width: int) -> bytes:
    """Symbols -> version-8 ``.prc`` bytes (fits the compact models of the context buckets, the MLP layers and
    the filter). The contexts, order and model indexes are the decoder's own (``grid_decode``)."""
    lat = [q.astype(np.int64) for q in code.latents]
    coded: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # (level, sublattice) -> symbols, contexts
    for l, k in grid_decode.coding_order(shape.levels):
        subs = grid_decode.split(lat[l])
        mu, ctx = grid_decode.contexts(subs, lat[l + 1] if l + 1 < shape.levels else None, k)
        coded[l, k] = (subs[k] - mu).reshape(-1).astype(np.int32), ctx.reshape(-1)
    chosen: dict[tuple[int, int], list[entropy.LaplaceModel]] = {}  # (level, pass) -> bucket models
    for l in range(shape.levels):
        for p in range(PASSES):
            ks = [k for k in range(len(SUBLATTICES)) if PASS_OF[k] == p]
            chosen[l, p] = _choose_buckets(np.concatenate([coded[l, k][0] for k in ks]),
                                           np.concatenate([coded[l, k][1] for k in ks]))
    header_order = [(l, p) for l in range(shape.levels) for p in range(PASSES)]
    level_models = [m for key in header_order for m in chosen[key]]
    mlp_models = [entropy.fit_compact_model(q) for q in code.mlp_q]
    flt = code.loop_filter
    filter_q = flt.coefs.reshape(-1).astype(np.int32) if flt is not None else None
    filter_fields = {} if flt is None else dict(filter_taps=flt.taps, filter_symmetric=flt.symmetric,
                                                filter_shift=flt.shift,
                                                filter_model=entropy.fit_compact_model(filter_q))
    header = GridHeader(width=width, height=height, channels=shape.channels, shape=shape,
                        level_models=tuple(level_models), mlp_steps=tuple(code.mlp_steps),
                        mlp_models=tuple(mlp_models), buckets=tuple(len(chosen[key]) for key in header_order),
                        compact=True, packed=True, **filter_fields)
    offsets = grid_decode.model_offsets(header.buckets, shape.levels)
    symbols, indexes = [], []
    for l, k in grid_decode.coding_order(shape.levels):
        sym, ctx = coded[l, k]
        symbols.append(sym)
        indexes.append(offsets[l, PASS_OF[k]] + grid_decode.buckets(ctx, len(chosen[l, PASS_OF[k]])))
    for j, q in enumerate(code.mlp_q):
        symbols.append(q)
        indexes.append(np.full(q.size, len(level_models) + j))
    models = level_models + mlp_models
    if flt is not None:
        symbols.append(filter_q)
        indexes.append(np.full(filter_q.size, len(models)))
        models.append(header.filter_model)
    symbols, indexes = np.concatenate(symbols), np.concatenate(indexes)
    bounds = header.segment_bounds()
    segments = [entropy.encode_indexed(symbols[a:b], indexes[a:b], models) for a, b in zip(bounds, bounds[1:])]
    return bitstream.pack_grid(header, segments)


def _render(latents: list[torch.Tensor] | list[np.ndarray], mlp_q: list[np.ndarray],
            steps: tuple[float, ...] | list[float], shape: GridShape, height: int, width: int) -> np.ndarray:
    """The network's uint8 (H, W, C) picture from integer latents and MLP symbols, before any loop filter, as
    the decoder renders it (``grid_decode.render``)."""
    grids = [g.numpy() if isinstance(g, torch.Tensor) else g for g in latents]
    return grid_decode.render(grids, grid_decode.dequantize_mlp(mlp_q, steps), shape, height, width)


def quantize_mlp(weights: list[torch.Tensor], bits: int, shape: GridShape | None = None,
                 inputs: torch.Tensor | None = None, damp: float = 0.0, weighted: bool = False,
                 act_order: bool = False, memo: dict | None = None) -> tuple[list[np.ndarray], list[float]]:
    """Per layer: step = max|w| / 2^(bits-1) (as float32), symbols round(w / step); with ``inputs`` (P, levels)
    float64 (features at P pixels, :func:`gptq_inputs`) and the ``shape``, each layer's symbols are chosen by
    GPTQ (quantization.gptq_round, damping ``damp``) on the inputs that the layers before it, as quantized, give
    at those pixels, the bias as the weight of a constant input. The steps are the same either way.

    ``weighted``: a hidden unit's errors are weighed at each pixel by how much they move the colour there (zero
    where its ReLU is off, else the squared norm of the float network's Jacobian from it to the colour), one
    Gram matrix a unit. ``act_order``: each layer's inputs rounded in order of decreasing energy. ``memo``: a
    dict kept between calls on the same weights and inputs (other depths), for what does not depend on the depth:
    the units' weights and the first layer's Gram matrices."""
    flat = [w.detach().double().cpu().numpy() for w in weights]
    steps = [float(np.float32(max(float(np.abs(w64).max()), 1e-12) / 2 ** (bits - 1))) for w64 in flat]
    if inputs is None:
        return [quantize(w64, step) for w64, step in zip(flat, steps)], steps
    layers = split_params(flat, shape)
    memo = {} if memo is None else memo
    if "rows" not in memo:
        memo["rows"] = _unit_weights(inputs, layers) if weighted else [None] * len(layers)
    rows = memo["rows"]
    # the (P, 33) products in torch, whose BLAS keeps to the encoder's thread count: numpy's started a thread a
    # core, and with two encodes side by side (as pranc eval runs them) its products took 0.4-1.8 s an encode,
    # where alone they take under a tenth of that (ABLATIONS.md BH2). numpy's BLAS is now held to that count too
    # (batch.compute_threads, BP2); the products stay in torch, which gives these files their bytes
    x = torch.cat([inputs, torch.ones(len(inputs), 1, dtype=inputs.dtype)], dim=1)
    qs = []
    for i, ((W, b), step, r) in enumerate(zip(layers, steps, rows)):
        Wb, qmax = np.concatenate([W, b[:, None]], axis=1), 2 ** (bits - 1)
        # the first layer's inputs are the features at every depth
        grams = memo.get("first") if i == 0 else None
        if grams is None:
            grams = (x.t() @ x).numpy() if r is None else _unit_grams(x, r).numpy()  # one a unit where weighted
            if i == 0:
                memo["first"] = grams
        q = _gptq_layer(Wb, grams, step, qmax, damp, act_order)
        qs.append(np.concatenate([q[:, :-1].reshape(-1), q[:, -1]]))  # split_params' order: W row-major, then b
        if i + 1 < len(flat):  # the next layer's inputs: this layer's ReLU outputs, as quantized
            wq = torch.from_numpy(q.astype(np.float64) * np.float64(np.float32(step)))
            x = torch.cat([torch.relu(x @ wq.t()), x[:, -1:]], dim=1)
    return qs, steps


def _gptq_layer(weights: np.ndarray, gram: np.ndarray, step: float, qmax: int, damp: float,
                act_order: bool) -> np.ndarray:
    """GPTQ's symbols (out, in) of a layer's weights (out, in) on ``gram``: one (in, in) Gram matrix for every
    row, or (out, in, in), one a row (a weighted layer's units), the rows rounded side by side (a call a row took
    0.4 s of an encode); with ``act_order`` each row's inputs in order of decreasing energy."""
    grams = gram[None] if gram.ndim == 2 else gram
    size = grams.shape[-1]
    order = (np.argsort(-np.diagonal(grams, axis1=1, axis2=2), axis=1, kind="stable") if act_order
             else np.tile(np.arange(size), (len(grams), 1)))  # (1 or out, in)
    k = np.arange(len(grams))[:, None]
    uppers = gptq_factors(grams[k[:, :, None], order[:, :, None], order[:, None, :]], damp)
    order, uppers = (np.broadcast_to(a, (len(weights),) + a.shape[1:]) for a in (order, uppers))
    rows = np.arange(len(weights))[:, None]
    q = gptq_round_rows(weights[rows, order], uppers, step, qmax)
    out = np.empty_like(q)
    out[rows, order] = q
    return out


_GRAM_CHUNK = 4096  # pixels a product of _unit_grams: (chunk, in^2) float32 outer products, 18 MB at 33 inputs


def _unit_grams(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(out, in, in) float64 Gram matrices sum_p r[p, o] x_p x_p^T of inputs x (P, in) under weights r (P, out),
    as one float32 product a chunk of pixels: 4-6 times faster than a float64 product a unit, within 1e-6 of
    it, where GPTQ's damping adds 1e-2."""
    n = x.shape[1]
    xf, rf = x.float(), r.float()
    out = torch.zeros(r.shape[1], n * n)
    for s in range(0, len(x), _GRAM_CHUNK):
        xs = xf[s: s + _GRAM_CHUNK]
        out += rf[s: s + _GRAM_CHUNK].t() @ (xs[:, :, None] * xs[:, None, :]).reshape(len(xs), n * n)
    return out.reshape(-1, n, n).double()


def _unit_weights(inputs: torch.Tensor, layers: list[tuple[np.ndarray, np.ndarray]]) -> list[torch.Tensor | None]:
    """Per layer, (P, out) weights of each unit's pre-activation error at each of the P pixels of ``inputs``
    (P, levels) float64: for a hidden unit its ReLU's gate times the squared norm of the float network's Jacobian
    from its output to the colour; None for the output layer (every channel's error counts alike)."""
    Ws = [torch.from_numpy(W) for W, _ in layers]
    h, gates = inputs, []
    for W, b in layers[:-1]:
        z = h @ torch.from_numpy(W).t() + torch.from_numpy(b)
        gates.append((z > 0).double())
        h = torch.relu(z)
    out: list[torch.Tensor | None] = [None]
    jac = Ws[-1].expand(len(inputs), *Ws[-1].shape)  # (P, C, units of the last hidden layer)
    for k in range(len(gates) - 1, -1, -1):
        out.insert(0, gates[k] * (jac ** 2).sum(1))
        if k:
            jac = (jac * gates[k][:, None, :]) @ Ws[k]
    return out


def dequantize_mlp(qs: list[np.ndarray], steps: list[float]) -> list[torch.Tensor]:
    """The MLP's float32 per-layer weights from its symbols and steps, for the encoder's float32 passes (the
    decoder renders in float64, ``_render``)."""
    return [torch.from_numpy(q.astype(np.float32) * s) for q, s in zip(qs, steps)]


def mlp_code_length(qs: list[np.ndarray]) -> float:
    """Bits of the MLP's symbols (one array per layer) under their fitted Laplace models, headers excluded."""
    return sum(entropy.code_length(q, entropy.fit_model(q)) for q in qs)


def gptq_inputs(feats: torch.Tensor, g: GridConfig) -> torch.Tensor | None:
    """The features (P, levels) GPTQ weighs the MLP's rounding errors on: at most ``g.mlp_gptq_rows`` of the P
    pixels, evenly strided, float64 (CPU); None when ``g.mlp_gptq_rows`` is 0 (plain rounding)."""
    if g.mlp_gptq_rows <= 0 or len(feats) == 0:
        return None
    return feats[:: max(1, -(-len(feats) // g.mlp_gptq_rows))].detach().cpu().double().contiguous()


def choose_mlp_bits(feats: torch.Tensor, target: torch.Tensor, weights: list[torch.Tensor], shape: GridShape,
                    g: GridConfig, lam: float, pixels: int) -> tuple[int, list[np.ndarray], list[float]]:
    """Bit depth of the MLP that minimises MSE + lambda x (its bits per pixel), with its symbols and steps.

    feats: (P, levels) float32 features of the rounded latents at P pixels;
    target: (P, C) in [0, 1]. Bits are the ideal code length under the fitted
    Laplace models, over ``pixels`` pixels of the image. The depths tried are ``g.mlp_bits``, the rounding
    ``quantize_mlp``'s GPTQ on (a stride of) feats unless ``g.mlp_gptq_rows`` is 0.

    The cost falls then rises with the depth (the error shrinks about 4-fold a bit while the bits grow by one a
    weight), so the search walks from the middle choice toward the lower cost and stops where it rises: 3 to 5
    of the 7 default depths are priced, each an MLP pass over every pixel, and the choice is the full search's
    (ABLATIONS.md AX).
    """
    choices = sorted(set(g.mlp_bits))
    tried: dict[int, tuple[float, list[np.ndarray], list[float]]] = {}
    inputs = gptq_inputs(feats, g)
    memo: dict = {}

    def cost(i: int) -> float:
        if i not in tried:
            qs, steps = quantize_mlp(weights, choices[i], shape, inputs, g.mlp_gptq_damp, g.mlp_gptq_weighted,
                                     g.mlp_gptq_act_order, memo)
            mse = _mlp_mse(feats, target, split_params(dequantize_mlp(qs, steps), shape))
            tried[i] = (mse + lam * mlp_code_length(qs) / pixels, qs, steps)
        return tried[i][0]

    i = (len(choices) - 1) // 2
    cost(i)
    step = 1 if i + 1 < len(choices) and cost(i + 1) < cost(i) else -1
    while 0 <= i + step < len(choices) and cost(i + step) < cost(i):
        i += step
    return choices[i], tried[i][1], tried[i][2]


# Pixels per MLP evaluation after the fit. A whole-picture pass held P x width floats per layer: 1.45 GB peak
# RSS for a 3-megapixel picture, against 1.0 GB for the fit itself (eval/ABLATIONS.md Y5).
_EVAL_CHUNK = 1 << 16


def _features(latents: list[torch.Tensor], width: int, n: int) -> torch.Tensor:
    """(n, levels) float32 features of the (rounded) latents at every pixel, ``_EVAL_CHUNK`` pixels at a time:
    the sampler's positions and outputs for the whole picture at once put 0.33 GB on the fit phase's peak at
    3072 x 2048 (eval/ABLATIONS.md AB5); a sample is per point, so the values are the same."""
    out = torch.empty(n, len(latents))
    with torch.no_grad():
        for s in range(0, n, _EVAL_CHUNK):
            idx = torch.arange(s, min(s + _EVAL_CHUNK, n))
            out[s: s + len(idx)] = sample_levels(latents, (idx // width).float(), (idx % width).float()).t()
    return out


def _mlp_mse(feats: torch.Tensor, target: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """MSE (colour in [0, 1], after the decoder's clip: grid_fit.decoded_residual) of the MLP ``layers`` on
    features (P, levels) against target (P, C), ``_EVAL_CHUNK`` pixels at a time, summed in float64."""
    total = 0.0
    with torch.no_grad():
        for s in range(0, feats.shape[0], _EVAL_CHUNK):
            err = decoded_residual(mlp_forward(feats[s: s + _EVAL_CHUNK], layers), target[s: s + _EVAL_CHUNK])
            total += float(err.square().sum(dtype=torch.float64))
    return total / max(target.numel(), 1)


def _fit_mse(feats: torch.Tensor, target: torch.Tensor, fit: GridFit, shape: GridShape) -> float:
    """MSE (colour in [0, 1]) of the fit's unquantized MLP on the rounded latents' features (P, levels)."""
    return _mlp_mse(feats, target, split_params([w.cpu() for w in fit.weights], shape))


def _collapsed(mse: float, target: torch.Tensor, latents: list[torch.Tensor], first: int, budget_bits: float,
               g: GridConfig) -> bool:
    """True when a fit failed: its MSE is not finite, or within 3 dB of the flat mean-colour picture's while its
    rounded ``latents`` (levels from ``first``) code in under ``g.collapse_rate_share`` of their budget (dead
    latents; a fit of a hard picture that spends its budget for little is not redone). target: (H W, C) colour
    in [0, 1]."""
    if not math.isfinite(mse):
        return True
    flat = float(torch.mean((target - target.mean(0)) ** 2))
    return mse > 0.5 * flat and context_state(latents, first).bits < g.collapse_rate_share * budget_bits


def curve_slope(bpp: float, cfg: GridConfig) -> float:
    """dB of PSNR gained per doubling of the rate at ``bpp`` on the codec's mean Kodak curve: interpolated in log
    bpp from ``cfg.slope_bpp``, ``cfg.slope_db`` (held constant past their ends)."""
    return float(np.interp(math.log2(max(bpp, 1e-9)), np.log2(cfg.slope_bpp), cfg.slope_db))


def curve_lambda(mse: float, bpp: float, cfg: GridConfig) -> float:
    """The price of a bit after the fit (MSE of colour in [0, 1] per bit per pixel): the slope -d MSE / d bpp of
    the codec's rate-distortion curve at ``bpp`` for a picture at ``mse``.

    With s dB gained per doubling of the rate (:func:`curve_slope`), d ln MSE / d bpp = -(ln 10 / 10) s /
    (ln 2 bpp).
    """
    return math.log(10) / 10 * curve_slope(bpp, cfg) / math.log(2) * mse / bpp


def high_rate_lr(bpp: float, g: GridConfig) -> float:
    """The latents' learning rate at a target of ``bpp`` (from ``g.high_rate_bpp`` on): ``g.lr_high``, growing as
    bpp^``g.lr_growth`` between ``g.lr_growth_bpp`` and ``g.lr_growth_max_bpp``. With the latents rounded to integers,
    a high rate wants large latents, and Adam moves each by about lr a step."""
    return g.lr_high * (min(max(bpp, g.lr_growth_bpp), g.lr_growth_max_bpp) / g.lr_growth_bpp) ** g.lr_growth


_FLAT_ROWS = 256  # rows a strip of flat_share compares at once


def flat_share(image: np.ndarray) -> float:
    """The share of an (H, W, C) picture's pixels that equal their upper and left neighbours in every channel
    (the first row and column count as not flat): near 1 for screenshots, charts and diagrams, whose flat areas
    are flat to the last bit, near 0 for photographs, whose grain and noise leave few pixels equal."""
    height, width = image.shape[:2]
    if height < 2 or width < 2:
        return 0.0
    flat = 0
    for top in range(1, height, _FLAT_ROWS):  # strips: a few MB at a time at 8192 x 8192
        rows = image[top - 1:top + _FLAT_ROWS]
        here = rows[1:, 1:]
        flat += int(((here == rows[:-1, 1:]) & (here == rows[1:, :-1])).all(axis=-1).sum())
    return flat / (height * width)


def fit_settings(config: CodecConfig, shape: GridShape, latent_bpp: float, device: torch.device,
                 flat: float = 0.0, pixels: int = 0) -> GridConfig:
    """The grid settings the fit runs with at this rate: from ``high_rate_bpp`` on, the high-rate learning
    rates (:func:`high_rate_lr`); without the finest level (a latent budget below ``finest_min_bpp``, or below
    ``finest_min_bpp_flat`` for a synthetic picture: a :func:`flat_share` ``flat`` of at least
    ``finest_flat_share``, at least ``finest_flat_min_pixels`` ``pixels`` and ``finest_flat_min_steps`` steps) on
    the CPU, ``coarse_step_factor`` x the steps. On CUDA a step is launch-bound (RESULTS.md "CUDA"): fewer
    latents do not make it cheaper, and 1.82x the steps (session 15) took 34-40 s instead of 20-22 s there, so it
    keeps its steps."""
    g = config.grid
    if flat >= g.finest_flat_share and pixels >= g.finest_flat_min_pixels and g.steps >= g.finest_flat_min_steps:
        g = replace(g, finest_min_bpp=min(g.finest_min_bpp, g.finest_min_bpp_flat))
    if config.rate.bpp >= g.high_rate_bpp:
        g = replace(g, lr=high_rate_lr(config.rate.bpp, g), scale_lr=g.lr_high, mlp_lr=g.mlp_lr_high)
    if not fits_finest(g, latent_bpp, shape.levels) and device.type == "cpu":
        g = replace(g, steps=round(g.steps * g.coarse_step_factor))
    return g


def _overhead_bits(shape: GridShape, height: int, width: int) -> int:
    """Bits of a file that neither the latents' rate nor the MLP's nor the filter's counts: the header and the
    segments' lengths (the latents' bucket models are counted in their rate, grid_fit.context_state)."""
    segments = len(bitstream.segment_bounds(shape.num_latents(height, width) + shape.num_params)) - 1
    return bitstream.packed_overhead_bits(shape, segments)


def latent_budget(config: CodecConfig, shape: GridShape, height: int, width: int) -> float:
    """Bits per pixel left for the latents: the target less the header, segment and expected MLP bits."""
    overhead = _overhead_bits(shape, height, width)
    f = config.filter
    total = config.rate.bpp * height * width
    reserve = min(f.reserve_scale * math.sqrt(total), f.reserve_share * total) if f.enabled else 0.0
    return max(1e-3, (total - overhead - config.grid.mlp_bits_estimate * shape.num_params - reserve) / (height * width))


def fit_plan(image: np.ndarray, config: CodecConfig, device: torch.device) -> tuple[GridShape, float, GridConfig]:
    """What a fit of ``image`` (uint8 (H, W, C)) runs with: the network's shape, the latents' budget (bits per
    pixel, :func:`latent_budget`) and the grid settings at that rate on ``device`` (:func:`fit_settings`)."""
    height, width, channels = image.shape
    shape = plan(config, height, width, channels)
    if shape.num_params * height * width > bitstream.MAX_GRID_RENDER_MACS:  # before the fit, not after it
        raise LimitError(f"an MLP of {shape.num_params} parameters is too large for a {width}x{height} picture: "
                         f"its decode would exceed {bitstream.MAX_GRID_RENDER_MACS:.3g} multiply-adds "
                         "(a smaller grid.hidden or grid.hidden_layers)")
    latent_bpp = latent_budget(config, shape, height, width)
    return shape, latent_bpp, fit_settings(config, shape, latent_bpp, device, flat_share(image), height * width)


class Coded(NamedTuple):
    """What :func:`fit_and_code` made and how."""

    data: bytes  # the .prc file
    shape: GridShape  # the network's shape
    trims: int  # the sweeps that trimmed the file under its ceiling (config.rate.max_bytes; 0 where none did)
    restarts: int  # the fits redone by the collapse guard (0 or 1)
    steps: int  # fitting steps (of the last fit; cut by a time budget, or the configured count)
    sweeps: int  # rounding sweeps


def fit_and_code(image: np.ndarray, config: CodecConfig, device: torch.device,
                 progress=None, seen: np.ndarray | None = None) -> Coded:
    """uint8 (H, W, C) -> ``.prc`` bytes and how they were made (:class:`Coded`). ``seen``: bool (H, W), the
    pixels whose error counts (of a picture with transparency; None: all): the fit, the rounding and every
    choice after them weigh the others' error at 0. With ``config.time.limit``, the fit's steps and the
    rounding's sweeps are cut to that many seconds from now (time_budget.py)."""
    height, width, channels = image.shape
    t = config.time
    budget = Budget.start(None if t.limit is None else t.limit - t.spent, t, height * width)
    shape, latent_bpp, cfg = fit_plan(image, config, device)
    n = height * width
    cap = config.rate.max_bytes
    if cap is not None:  # before minutes of fitting: the container's fields that do not depend on the coded data
        floor = math.ceil(bitstream.packed_overhead_bits(shape, segments=1) / 8)
        if cap < floor:
            raise LimitError(f"cannot fit this picture in {cap} bytes: its header alone takes {floor} bytes")
    target = torch.from_numpy(image.astype(np.float32) / 255.0).to(device)
    pixels = target.reshape(-1, channels).cpu()
    # once for the fit, its retry and the rounding, which all minimise the same weighted error
    pix_w = seen_weights(pixel_weights(target, cfg), seen, channels)
    rows = _seen_rows(seen)
    cb = progress("fit", cfg.steps) if progress else None
    rc = config.rounding
    fit = fit_grid(target, shape, cfg, latent_bpp, progress=cb, pix_w=pix_w, budget=budget, sweeps=rc.sweeps)
    latents = [torch.round(g).cpu() for g in fit.latents]
    feats = _features(latents, width, n)
    mse = _fit_mse(rows(feats), rows(pixels), fit, shape)
    first = 0 if fits_finest(cfg, latent_bpp, shape.levels) else 1  # a level left out of the fit stays zero
    restarts = 0
    if _collapsed(mse, rows(pixels), latents, first, latent_bpp * n, cfg):
        restarts = 1
        cb = progress("fit (retry)", cfg.steps) if progress else None
        f = cfg.retry_lr_factor
        retry = replace(cfg, lr=cfg.lr * f, mlp_lr=cfg.mlp_lr * f, scale_lr=cfg.effective_scale_lr * f)
        fit = fit_grid(target, shape, retry, latent_bpp, progress=cb, lam_range=cfg.retry_lam_range, pix_w=pix_w,
                       budget=budget, sweeps=rc.sweeps)
        latents = [torch.round(g).cpu() for g in fit.latents]
        feats = _features(latents, width, n)
        mse = _fit_mse(rows(feats), rows(pixels), fit, shape)
    lam = curve_lambda(mse, config.rate.bpp, cfg)  # not fit.lam: see GridConfig.slope_db
    latents, feats, weights = optimise_rounding(target.cpu(), latents, feats, fit.weights, shape, cfg, rc, lam, mse,
                                                first, progress, pix_w, budget_bits=latent_bpp * n, seen=seen,
                                                budget=budget)
    code = choose_code(image, pixels, latents, feats, weights, shape, config, lam, seen=seen)
    data = pack(code, shape, height, width)
    trims = 0
    if cap is not None and len(data) > cap:
        data, trims = trim_to_ceiling(image, pixels, latents, feats, weights, shape, config, lam, first, pix_w,
                                      data, progress, seen, code_filter_bits(code))
    sweeps = budget.ended if budget is not None and budget.ended else max(rc.sweeps, 0)
    return Coded(data, shape, trims, restarts, fit.steps, sweeps)


def code_filter_bits(code: GridCode) -> float:
    """The code length (bits) of ``code``'s loop filter; 0 for none."""
    return 0.0 if code.loop_filter is None else loop_filter.filter_bits(code.loop_filter.coefs)


def _file_mse(data: bytes, image: np.ndarray, seen: np.ndarray | None) -> float:
    """MSE (8-bit units^2) of grid file ``data``'s decoded pixels against uint8 (H, W, C) ``image``, over the
    ``seen`` pixels (bool (H, W); None: all)."""
    return metrics.seen_mse(image, grid_decode.decode(*bitstream.parse(data)), seen)


def _seen_rows(seen: np.ndarray | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function (H W, ...) tensor -> its rows of the ``seen`` pixels (bool (H, W)); all of them where None."""
    if seen is None:
        return lambda t: t
    index = torch.from_numpy(np.flatnonzero(seen.reshape(-1)))
    return lambda t: t.index_select(0, index)


def optimise_rounding(target: torch.Tensor, latents: list[torch.Tensor], feats: torch.Tensor,
                      weights: list[torch.Tensor], shape: GridShape, g: GridConfig, rc: RoundingConfig, lam: float,
                      mse: float, first: int = 0, progress=None, pix_w: torch.Tensor | None = None,
                      budget_bits: float | None = None, seen: np.ndarray | None = None,
                      budget: Budget | None = None) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    """The rounded latents moved where that lowers the fit's error + ``lam`` x bits (rounding.py), their
    features, and the MLP refitted to them (``rc.mlp_steps``; else the fit's, on the CPU). target: (H, W, C)
    colour in [0, 1] (CPU); latents: the rounded grids; feats: their (H W, levels) features; weights: the fit's
    MLP (per-layer flat); lam: curve_lambda's price of a bit, for plain MSE ``mse`` of the fit's MLP on these
    latents; levels below ``first`` are left alone; pix_w: the fit's structure weights (C, H W), if the caller has
    them (computed here otherwise); budget_bits: the latents' budget (bits), held between sweeps with
    ``rc.aim_budget`` (else, or when None, the code length the latents have now); seen: as
    :func:`choose_code`'s (pix_w is then zero at the other pixels); budget: a time budget that may end the
    sweeps before ``rc.sweeps`` and skip refits before them (:meth:`Budget.plan_sweep`)."""
    mlp = [w.detach().cpu().float() for w in weights]
    if rc.sweeps <= 0:
        return latents, feats, mlp
    height, width, channels = target.shape
    n = height * width
    pixels = target.reshape(-1, channels)
    rows = _seen_rows(seen)
    layers = split_params(mlp, shape)
    pix_w, errors, price = _rounding_price(feats, layers, pixels, pixel_weights(target, g, pix_w), lam, mse,
                                           rc.chunk)

    def refit(f: torch.Tensor, quantize: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The MLP refitted to features f (H W, levels); quantized as choose_code would (at the curve's price)
        when another sweep is to price against it."""
        nonlocal mlp
        mlp = refit_mlp(f, pixels, pix_w, mlp, shape, rc.mlp_steps, rc.mlp_lr, min(rc.mlp_batch, n), g.adam_beta2,
                        g.seed)
        if quantize:
            _, qs, steps = choose_mlp_bits(rows(f), rows(pixels), mlp, shape, g, lam, n)
            mlp = dequantize_mlp(qs, steps)
        return split_params(mlp, shape)

    cb = progress("rounding", rc.sweeps, "sweep") if progress else None
    target_bits = None
    if rc.hold_rate:
        target_bits = budget_bits if rc.aim_budget and budget_bits else context_state(latents, first).bits
    out, feats, _ = rounding.optimise(latents, feats, layers, pixels, pix_w, price, first, height, width, rc,
                                      target_bits, errors, progress=cb,
                                      refit=refit if rc.mlp_steps > 0 else None,
                                      plan=None if budget is None else budget.plan_sweep)
    if rc.mlp_steps > 0:
        refit(feats, quantize=False)
    return out, feats, mlp


def _rounding_price(feats: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]], pixels: torch.Tensor,
                    pix_w: torch.Tensor | None, lam: float, mse: float | None,
                    chunk: int) -> tuple[torch.Tensor | None, torch.Tensor, float]:
    """What rounding.optimise prices in: the fit's error weights as (H W, C) (CPU; None for plain MSE), the
    pixels' (H W,) errors of the MLP ``layers`` on ``feats``, and ``lam`` (plain MSE per bpp) as a price in those
    errors' units, a bit priced at the same share of the weighted error as of plain MSE ``mse`` (None: measured
    here). pix_w: (C, H W) or None; pixels: (H W, C)."""
    w_t = None if pix_w is None else pix_w.cpu().t().contiguous()
    errors = rounding.pixel_errors(feats, layers, pixels, w_t, chunk)
    if w_t is None:
        return None, errors, lam
    mse = _mlp_mse(feats, pixels, layers) if mse is None else mse
    return w_t, errors, lam * float(errors.mean()) / max(mse, 1e-12)


def choose_code(image: np.ndarray, pixels: torch.Tensor, latents: list[torch.Tensor], feats: torch.Tensor,
                weights: list[torch.Tensor], shape: GridShape, config: CodecConfig, lam: float,
                ceiling_bits: float = math.inf, seen: np.ndarray | None = None) -> GridCode:
    """The encoder's choices after the fit, at ``lam`` (MSE of colour in [0, 1] per bit per pixel): the MLP's
    bit depth and the loop filter. image: uint8 (H, W, C); pixels: the same as (H W, C) float32 in [0, 1]
    (CPU); latents: the rounded grids (CPU); feats: their (H W, levels) features; weights: the fit's MLP;
    ceiling_bits: a size the file with its filter may not pass (trim_to_ceiling's; an encode's first choice is
    not held to it, so that the trim, not the filter alone, pays for an excess); seen: bool (H, W), the pixels
    whose error counts (None: all). (eval/replay_fit.py replays it per lambda.)"""
    height, width, _ = image.shape
    n = height * width
    rows = _seen_rows(seen)
    _, mlp_q, steps = choose_mlp_bits(rows(feats), rows(pixels), [w.cpu() for w in weights], shape, config.grid,
                                      lam, n)
    symbols = [g.numpy().astype(np.int32) for g in latents]
    flt = None
    if config.filter.enabled:  # fitted to the pixels the decoder will render
        rendered = _render(latents, mlp_q, steps, shape, height, width)
        flt = loop_filter.fit_filter(rendered, image, lam, config.filter, seen=seen)
    if flt is not None:
        need = loop_filter.filter_bits(flt.coefs)
        # bits the file may take with its filter
        cap = min(config.rate.bpp * n * (1 + config.filter.max_overshoot), ceiling_bits)
        # what the file spends without a filter, first as estimated (the latents' code length, an over-estimate
        # of a few per cent on a small picture, the MLP's symbols and models, the header), then where that says
        # the filter may not fit, as packed
        if (context_state(latents).bits + mlp_code_length(mlp_q) + MODEL_BITS * len(mlp_q)
                + _overhead_bits(shape, height, width) + need > cap):
            spent = 8 * len(pack(GridCode(symbols, mlp_q, steps), shape, height, width))
            if spent + need > cap:
                # the filter's code length is its symbols' estimate: packed, a file can come out a few bytes over
                # (a grating 2.3 % over where 2 % was asked, ABLATIONS.md AZ5): checked, and refitted smaller
                room = cap - spent
                for _ in range(3):
                    flt = loop_filter.fit_filter(rendered, image, lam, config.filter, max_bits=room, seen=seen)
                    if flt is None:
                        break
                    excess = 8 * len(pack(GridCode(symbols, mlp_q, steps, flt), shape, height, width)) - cap
                    if excess <= 0:
                        break
                    room, flt = room - excess, None
    return GridCode(latents=symbols, mlp_q=mlp_q, mlp_steps=steps, loop_filter=flt)


def trim_to_ceiling(image: np.ndarray, pixels: torch.Tensor, latents: list[torch.Tensor], feats: torch.Tensor,
                    weights: list[torch.Tensor], shape: GridShape, config: CodecConfig, lam: float, first: int,
                    pix_w: torch.Tensor | None, data: bytes, progress=None, seen: np.ndarray | None = None,
                    filter_bits: float = 0.0) -> tuple[bytes, int]:
    """A file of at most ``config.rate.max_bytes`` bytes from the encode's rounded latents, where ``data`` (that
    encode's file) is over.

    Each try is one rounding sweep from those latents at lambda x f, railed (as the rounding's last sweep is)
    to a goal for the latents' code length of what they take now less the excess and half of ``trim_slack``
    of the ceiling, then the MLP's bits and the filter chosen at the encode's lambda, the filter made smaller
    or left out where the file would pass the ceiling, and the file packed; :func:`trim_search` picks the
    values of f. A low f spreads the cut over every level by price, where the rails alone would take it from
    the first (coarsest) latents coded; the rails stop a sweep from cutting far past the goal where the
    encode's own rails had held the latents above their price's choice. A file that fits with its latents
    short of their goal fits by a smaller filter or none, which can cost a small picture far more than
    cutting the latents (the grating's filter, 2-3 dB: ABLATIONS.md BJ1), so the search goes on to f that meet
    the goal. Of the files that fit, the one whose decoded pixels are nearest the picture's (MSE over the
    ``seen`` pixels) is kept: the MLP and the filter are few and coarse choices, so the larger file is not
    always the nearer.

    image: uint8 (H, W, C); pixels: (H W, C) float32 in [0, 1]; latents: rounded grids; feats: their
    (H W, levels) features; weights: the MLP after the rounding; lam: the encode's price of a bit (MSE per
    bpp); first: the first level coded; pix_w: the fit's (C, H W) error weights or None; seen: as
    :func:`choose_code`'s; filter_bits: the code length of the filter in ``data`` (0 for none). Returns the
    file and the tries it took. Raises LimitError when no try fits: the header, the MLP and the latents at
    their cheapest are over."""
    cap, rc = config.rate.max_bytes, config.rounding
    height, width, _ = image.shape
    mlp = [w.detach().cpu().float() for w in weights]
    layers = split_params(mlp, shape)
    rows = _seen_rows(seen)
    mse = None if seen is None else _mlp_mse(rows(feats), rows(pixels), layers)
    w_t, errors, price = _rounding_price(feats, layers, pixels, pix_w, lam, mse, rc.chunk)
    half = 0.5 * rc.trim_slack * 8 * cap  # bits
    goal = context_state(latents, first).bits - 8 * (len(data) - cap) - half
    cb = progress(f"trim to {cap} bytes", rc.trim_sweeps, "sweep") if progress else None

    best, best_mse, smallest = None, math.inf, len(data)

    def attempt(f: float) -> tuple[int, bool, float, bool]:
        """The file with the latents at lambda x f and the MLP and the filter at lambda (the encode's choices,
        the filter's made smaller or left out where it does not fit under the ceiling), kept where it fits and
        its decoded pixels are the nearest so far; returns its size (bytes), whether the latents met their goal,
        its filter's code length (bits) and whether it was kept."""
        nonlocal best, best_mse, smallest
        one = replace(rc, sweeps=1, rate_rail=half / max(goal, 1.0))
        if rc.trim_toward:
            one = replace(one, deltas=(), to_mean=False, toward_mean=True)
        lat, ft, _ = rounding.optimise(latents, feats, layers, pixels, w_t, price * f, first, height, width, one,
                                       target_bits=max(goal, 1.0), errors=errors)
        if cb is not None:
            cb(1, float("nan"))
        code = choose_code(image, pixels, lat, ft, mlp, shape, config, lam, ceiling_bits=8 * cap, seen=seen)
        out = pack(code, shape, height, width)
        smallest = min(smallest, len(out))
        nearest = False
        if len(out) <= cap:
            m = _file_mse(out, image, seen)
            if m < best_mse:
                best, best_mse, nearest = out, m, True
        return len(out), context_state(lat, first).bits <= goal + half, code_filter_bits(code), nearest

    def lower(size: int) -> None:
        """The latents met their goal and the rest of the file grew: a goal lower by the rest."""
        nonlocal goal
        goal -= 8 * (size - cap) + half

    sweeps = trim_search(attempt, lower, cap, rc, filter_bits)
    if best is None:
        raise LimitError(f"cannot fit this picture in {cap} bytes: the smallest file made was {smallest} bytes")
    return best, sweeps


def trim_search(attempt: Callable[[float], tuple[int, bool, float, bool]], lower: Callable[[int], None],
                cap: int, rc: RoundingConfig, filter_bits: float = 0.0) -> int:
    """The values of f that :func:`trim_to_ceiling` tries, and the tries it took (at most ``rc.trim_sweeps``).
    attempt(f) makes the file at f and returns (its size in bytes, whether its latents met their goal, its
    filter's code length in bits, whether it fits and is the nearest to the picture so far); lower(size)
    lowers the goal where a file met it and is still over ``cap`` bytes; filter_bits: the encode's filter's
    code length (0 for none).

    First the least f whose file fits: f from 1, ``rc.trim_growth``-fold while over, then bisected in log f.
    Where that file's latents missed their goal and its filter is smaller than the encode's, then the least f
    whose latents meet the goal and whose file fits, from there the same way, until such a file is no nearer
    the picture than one before (the filter it keeps is not worth the latents cut for it)."""

    def next_f(low: float, high: float) -> float:
        """The next f between ``low``, the largest f that did not do, and ``high``, the least that did (inf: none
        yet): ``trim_growth`` x low until one does, then bisected in log f."""
        return low * rc.trim_growth if math.isinf(high) else math.sqrt(low * high)

    def done(size: int, low: float, high: float) -> bool:
        """Whether a search may stop at a file of ``size`` bytes that fits at f = ``high``, with ``low`` the
        largest f that did not: within the slack, or fitting from the first try (a lower f only adds bits up to
        the rails), or bisected to within 5 %."""
        return size >= cap * (1 - rc.trim_slack) or not low or high < 1.05 * low

    # over: the largest f whose file is over, fits: the least that fits
    f, over, fits, squeezed, sweeps = 1.0, 0.0, math.inf, False, 0
    while sweeps < rc.trim_sweeps:
        sweeps += 1
        size, met, flt, _ = attempt(f)
        if size <= cap:
            fits, squeezed = f, not met and flt < filter_bits
            if done(size, over, fits):
                break
        elif met:
            lower(size)
            continue
        else:
            over = f
        f = next_f(over, fits)
    if squeezed:
        # That file fits by a smaller filter or none, the latents short of their goal: the least f whose latents
        # meet it and whose file fits, searched the same way from there.
        low, high = fits, math.inf
        f = next_f(low, high)
        while sweeps < rc.trim_sweeps:
            sweeps += 1
            size, met, _, nearest = attempt(f)
            if size <= cap and met:
                high = f
                if not nearest or done(size, low, high):
                    break
            else:
                low = f
            f = next_f(low, high)
    return sweeps
