"""The latent grid's decoder in numpy alone: a grid file decodes without loading torch.

Importing torch takes 1.4-2 s, six times a Kodak decode (0.24 s), and its libraries are most of the 0.7
GB a decode peaked at (eval/ABLATIONS.md AK5). Everything here is what FORMAT.md fixes, in the same
IEEE operations as the encoder's torch code:

- the context model's integer means and buckets (``context.py`` holds the torch twins the fit uses on
  its tensors; ``tests/test_context.py`` holds the two to the same integers);
- the float64 bilinear sampling and MLP (``latent._bilinear64`` and ``latent._mlp64`` are the per-pixel
  reference the tests hold :func:`render` to), with float32 BLAS for the pixels far from a rounding
  boundary, float64 BLAS with a proven error bound for most of the rest, and the fixed order itself only for
  pixels that bound cannot settle: numpy's BLAS is not torch's, which changes only which pixels take which path;
- the loop filter's integer sums (exact in float64).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import bitstream, entropy
from .bitstream import GridHeader
from .errors import FormatError, LimitError
from .shapes import CLIP, EDGES, MAX_COEF, NEIGHBOURS, PASS_OF, PASSES, SUBLATTICES, GridShape, offsets

# float32 BLAS evaluation differs from the float64 reference by < 1e-3 of an 8-bit level on Kodak
# (tests/test_grid.py measures it); pixels whose float32 value lies within this margin of a rounding
# boundary are re-evaluated in float64 (render: bounded, else in the fixed order).
EXACT_MARGIN = 0.02
# The fixed-order float64 MLP (mlp64) costs about 1.5 ns a multiply-add, some 30 times a BLAS product. A crafted
# file (142 bytes, found by bin/fuzz-decoder) whose MLP puts every output on a rounding boundary sent every pixel of
# an 8k-parameter network down it: 7.7 s for half a megapixel, some 25 minutes at the pixel limit. So a decode may
# spend at most this many of its multiply-adds a pixel there (any picture at least EXACT_MACS_FLOOR), else it is
# refused: a third of the pixels of a network of the encoder's shapes (at most 1,411 parameters) fits, where a file
# the encoder made sends none (the bounded float64 pass settles them, mlp64_bounded: ties too where nothing was
# rounded); at the pixel limit this bounds the exact pass to about a minute on one core.
EXACT_MACS_PER_PIXEL = 512
EXACT_MACS_FLOOR = 1 << 24
_U = 2.0 ** -53  # float64's unit roundoff
_UNDERFLOW = 2.0 ** -1000  # per term: a BLAS that flushes subnormal results to zero errs by less
_BOUND_SLACK = 1e-6  # relative: the bound's own rounding, and the reference's second-order terms
_FINITE = 1e300  # values within this: the reference's sums cannot overflow where the bound's do not
_ABSORBED = 2.0 ** -55  # |z| below it: z + 0.5 rounds to 0.5 exactly
_STRIP_PIXELS = 1 << 16  # pixels a strip: rendering and filtering work on whole rows, this many at most
# Strips rendered side by side at most: each holds about 30 MB of temporaries (a Kodak decode peaked at 86 MB
# with one thread, 115 MB with two), so a machine of many cores is not asked for gigabytes.
MAX_STRIP_THREADS = 8


@dataclass(frozen=True)
class LoopFilter:
    """A decoded or fitted filter: ``taps`` x ``taps``, point-symmetric or not, coefficients in 2^-shift units."""

    taps: int
    symmetric: bool
    shift: int
    coefs: np.ndarray  # int32 (C, num_features(C, taps, symmetric))


# --- the context model (context.py's integer functions, on numpy arrays) ---

def split(q: np.ndarray) -> list[np.ndarray]:
    """The four sublattices of a level (h, w): views q[r::2, c::2] in coding order."""
    return [q[r::2, c::2] for r, c in SUBLATTICES]


def contexts(subs: list[np.ndarray], parent: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and context of S_k's positions (int32, S_k's shape) from S0 .. S_{k-1} and the coarser level,
    as ``context.contexts``. In int32 (latents clipped to +-CLIP = 2^24: sums of four and twice them fit), each
    earlier sublattice clipped once however many of S_k's neighbours it holds, and each neighbour added over the
    positions that have it, without a padded copy: the finest level's contexts are most of a decode's memory
    beside the latents (ABLATIONS.md BT4)."""
    if k == 0:
        c = np.zeros(subs[0].shape, np.int32) if parent is None else np.abs(np.clip(parent, -CLIP, CLIP)).astype(
            np.int32)
        return np.zeros_like(c), c
    shape = subs[k].shape
    total, mags, count = (np.zeros(shape, np.int32) for _ in range(3))
    clipped: dict[int, np.ndarray] = {}
    for src, di, dj in NEIGHBOURS[k]:
        if src not in clipped:
            clipped[src] = np.clip(subs[src], -CLIP, CLIP).astype(np.int32)
        v = clipped[src]
        # S_k's position (i, j) has the neighbour v[i + di, j + dj] where that lies inside v
        r0, r1 = max(0, -di), min(shape[0], v.shape[0] - di)
        c0, c1 = max(0, -dj), min(shape[1], v.shape[1] - dj)
        if r0 < r1 and c0 < c1:
            nb = v[r0 + di: r1 + di, c0 + dj: c1 + dj]
            total[r0:r1, c0:c1] += nb
            mags[r0:r1, c0:c1] += np.abs(nb)
            count[r0:r1, c0:c1] += 1
    np.maximum(count, 1, out=count)
    total *= 2
    total += count
    count *= 2
    return np.floor_divide(total, count, out=total), mags  # round half up of total / count


# bucket of every context 0 .. EDGES[-1]: #edges <= c
_BUCKET_OF = np.searchsorted(np.array(EDGES), np.arange(EDGES[-1] + 1), side="right").astype(np.int64)


def buckets(c: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket of each context c >= 0: #edges <= c, capped at n_buckets - 1 (int64, c's shape)."""
    return np.minimum(_BUCKET_OF[np.minimum(c, EDGES[-1])], n_buckets - 1)


def coding_order(levels: int) -> list[tuple[int, int]]:
    """(level, sublattice) in the order the latents are coded: coarsest level first."""
    return [(l, k) for l in reversed(range(levels)) for k in range(len(SUBLATTICES))]


def model_offsets(bucket_counts: tuple[int, ...], levels: int) -> dict[tuple[int, int], int]:
    """Index of the first bucket model of each (level, pass) in the header's order (finest level first)."""
    starts = np.concatenate([[0], np.cumsum(bucket_counts)]).astype(np.int64).tolist()
    return {(l, p): starts[l * PASSES + p] for l in range(levels) for p in range(PASSES)}


# --- the payload ---

def segment_counts(group_sizes: list[int], a: int, b: int) -> list[int]:
    """Symbols of each group that fall in [a, b) of the concatenated sequence."""
    out, start = [], 0
    for n in group_sizes:
        out.append(max(0, min(b, start + n) - max(a, start)))
        start += n
    return out


def read_v4(header: GridHeader, segments: list[bytes]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Latents (int32 grids) and MLP symbols of a version-4 payload."""
    sizes = header.group_sizes()
    bounds = header.segment_bounds()
    models = list(header.level_models + header.mlp_models)
    symbols = np.empty(bounds[-1], dtype=np.int32)
    for seg, a, b in zip(segments, bounds, bounds[1:]):
        symbols[a:b] = entropy.decode(seg, segment_counts(sizes, a, b), models)
    parts = np.split(symbols, np.cumsum(sizes)[:-1])
    dims = header.shape.level_dims(header.height, header.width)
    return [q.reshape(h, w) for q, (h, w) in zip(parts, dims)], parts[len(dims):]


def read_v5(header: GridHeader, segments: list[bytes]) -> tuple[list[np.ndarray], list[np.ndarray],
                                                               LoopFilter | None]:
    """Latents (int64 grids), MLP symbols and loop filter of a version-5 to 8 payload, the latents decoded
    sublattice by sublattice."""
    shape = header.shape
    models = list(header.level_models + header.mlp_models)
    if header.filter_taps:
        models.append(header.filter_model)
    reader = entropy.SegmentReader(segments, header.segment_bounds(), models)
    starts = model_offsets(header.buckets, shape.levels)
    lat = [np.zeros(d, dtype=np.int64) for d in shape.level_dims(header.height, header.width)]
    for l, k in coding_order(shape.levels):
        subs = split(lat[l])  # views: writing S_k fills the level
        mu, ctx = contexts(subs, lat[l + 1] if l + 1 < shape.levels else None, k)
        p = PASS_OF[k]
        idx = starts[l, p] + buckets(ctx, header.buckets[l * PASSES + p]).reshape(-1)
        np.add(reader.read(idx).reshape(mu.shape), mu, out=subs[k], dtype=np.int64)  # int64: a symbol is any int32
    n_latent_models = len(header.level_models)
    mlp = [reader.read(np.full(n, n_latent_models + j)) for j, n in enumerate(shape.layer_sizes())]
    flt = None
    if header.filter_taps:
        q = reader.read(np.full(header.filter_coefs, len(models) - 1))
        if np.abs(q.astype(np.int64)).max() >= MAX_COEF:
            raise FormatError(f"loop filter coefficient beyond +-{MAX_COEF}")
        flt = LoopFilter(header.filter_taps, header.filter_symmetric, header.filter_shift,
                         q.astype(np.int32).reshape(header.channels, -1))
    return lat, mlp, flt


# --- the picture ---

def split_params(flat: list[np.ndarray], shape: GridShape) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-layer flat vectors (n_l,) -> (W (fan_out, fan_in), b (fan_out,))."""
    return [(v[: fi * fo].reshape(fo, fi), v[fi * fo: fi * fo + fo]) for v, (fi, fo) in zip(flat, shape.layer_dims())]


def bilinear_rows(grid: np.ndarray, level: int, r0: int, r1: int, width: int) -> np.ndarray:
    """Bilinear samples of one float64 grid (h, w) at every pixel of image rows [r0, r1), flat (row-major).

    Level l is read at (p + 0.5) / 2^l - 0.5, clamped to its border; the weights are dyadic fractions, exact
    in float64, and the blend is (a (1-fx) + b fx) (1-fy) + (c (1-fx) + d fx) fy, each product and sum
    rounded once (FORMAT.md "Version 4"). The horizontal blends depend only on a source row and an output
    column, so each is computed once for the source rows the strip reads."""
    h, w = grid.shape
    s = 2.0 ** level
    u = (np.arange(width, dtype=np.float64) + 0.5) / s - 0.5
    v = (np.arange(r0, r1, dtype=np.float64) + 0.5) / s - 0.5
    x0f, y0f = np.floor(u), np.floor(v)
    fx, fy = u - x0f, (v - y0f)[:, None]
    x0, y0 = x0f.astype(np.int64), y0f.astype(np.int64)
    x1, y1 = np.clip(x0 + 1, 0, w - 1), np.clip(y0 + 1, 0, h - 1)
    x0, y0 = np.clip(x0, 0, w - 1), np.clip(y0, 0, h - 1)
    lo, hi = int(y0[0]), int(y1[-1]) + 1  # the source rows this strip reads
    src = grid[lo:hi]
    horiz = src[:, x0] * (1 - fx) + src[:, x1] * fx  # (hi - lo, width)
    return (horiz[y0 - lo] * (1 - fy) + horiz[y1 - lo] * fy).reshape(-1)


def mlp64(feats: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The MLP in float64 with a fixed summation order (b + x_0 w_0 + x_1 w_1 + ..., each product and sum rounded
    once), no BLAS: (N, levels) -> colour (N, C). Feature-major inside, so every operation runs on contiguous rows;
    the operations per element are those of ``latent._mlp64``."""
    h = np.ascontiguousarray(feats.T)  # (fan_in, N)
    for i, (W, b) in enumerate(layers):
        acc = np.empty((W.shape[0], h.shape[1]))
        acc[:] = b[:, None]
        term = np.empty_like(acc)
        for j in range(W.shape[1]):
            acc += np.multiply(W[:, j, None], h[j], out=term)
        h = np.maximum(acc, 0.0, out=acc) if i < len(layers) - 1 else acc + 0.5
    return h.T


_BOUNDED_CHUNK = 4096  # pixels mlp64_bounded works on at a time: its dozen passes a layer then stay in cache


def mlp64_bounded(feats: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_mlp64_bounded` in chunks of ``_BOUNDED_CHUNK`` pixels (the same values: every pixel is on its own)."""
    if len(feats) <= _BOUNDED_CHUNK:
        return _mlp64_bounded(feats, layers)
    parts = [_mlp64_bounded(feats[i: i + _BOUNDED_CHUNK], layers) for i in range(0, len(feats), _BOUNDED_CHUNK)]
    return np.concatenate([v for v, _ in parts]), np.concatenate([s for _, s in parts])


def _mlp64_bounded(feats: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The MLP in float64 BLAS: (N, levels) -> (255 x colour (N, C) as ``mlp64(feats) * 255`` up to rounding,
    settled (N,) bool: the pixels proven to round (and clip) to the 8-bit values mlp64's would give).

    Any order of a dot product of n terms (FMA or not) is within gamma_n = n u / (1 - n u) of |W| |h| + |b| of the
    exact value (Higham, Accuracy and Stability of Numerical Algorithms, 3.1), and ReLU does not widen an error, so
    e_{l+1} = gamma (|W| |h_l| + |b|) + |W| e_l bounds this evaluation's distance from the exact network at the same
    float64 features; mlp64's lies within the same bound (to second order), so the two differ by at most 2 e, plus
    the last addition's and product's roundings in each. A hidden unit below zero by more than both errors is
    exactly zero in both, so its error stops there. A pixel is settled where every channel lies farther than that
    from a rounding boundary (or past 0 or 255 by as much), or is the same number in both, a tie included (both so
    near zero that adding 0.5 gives 0.5), and every value is far from overflow. The bound's own roundings and the
    reference's second-order terms are in ``_BOUND_SLACK``; a BLAS that flushes subnormals in ``_UNDERFLOW``."""
    h = feats
    e = np.zeros_like(feats)  # the features are the same float64 values in both
    small = np.ones(len(feats), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for i, (W, b) in enumerate(layers):
            n = W.shape[1] + 1
            gamma = n * _U / (1 - n * _U)
            aw = np.abs(W)
            z = h @ W.T
            z += b
            # gamma (|W| |h| + |b|) + |W| e in one product; after a ReLU, |h| is h
            g = np.multiply(np.abs(h) if i == 0 else h, gamma)
            g += e
            e = g @ aw.T
            e += gamma * np.abs(b) + n * _UNDERFLOW
            small &= (e < gamma * _FINITE).all(axis=1)  # e >= gamma s: every partial sum within _FINITE
            if i < len(layers) - 1:
                h = np.maximum(z, 0.0)
                # a unit negative by more than both evaluations' errors is exactly zero in both: no error passes
                reach = np.multiply(e, 2 * (1 + _BOUND_SLACK))
                reach += z
                e *= reach >= 0
            else:
                h = z
        v = (h + 0.5) * 255
        margin = 2 * e * (1 + _BOUND_SLACK)  # between this evaluation's z and mlp64's
        d = 255 * margin + 4 * _U * (np.abs(v) + 255)  # and the last addition's and product's roundings in each
        frac = v - np.floor(v)
        far = (np.abs(frac - 0.5) > d) | (v - d >= 255) | (v + d <= 0)
        # the same number in both, a tie included: both within 2^-55 of zero, which adding 0.5 rounds away (to
        # 127.5), as where every unit is dead and the bias zero, or the weights tiny
        same = np.abs(h) + margin < _ABSORBED
        settled = small & (np.isfinite(v) & np.isfinite(d) & (far | same)).all(axis=1)
    return v, settled


class _ExactBudget:
    """The multiply-adds a decode may still spend in mlp64 (``EXACT_MACS_PER_PIXEL``), shared by its strips."""

    def __init__(self, pixels: int):
        self.left = max(pixels * EXACT_MACS_PER_PIXEL, EXACT_MACS_FLOOR)
        self._lock = threading.Lock()

    def spend(self, macs: int) -> None:
        with self._lock:
            self.left -= macs
            if self.left < 0:
                raise LimitError("the picture's network needs more exact evaluation than the decoder allows "
                                 f"({EXACT_MACS_PER_PIXEL} multiply-adds a pixel): a crafted or corrupt file")


def mlp32(feats: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The MLP in float32 BLAS: (N, levels) -> colour (N, C), ~[0, 1]."""
    h = feats
    for W, b in layers[:-1]:
        h = h @ W.T
        h += b
        np.maximum(h, 0.0, out=h)
    W, b = layers[-1]
    h = h @ W.T
    h += b
    h += np.float32(0.5)
    return h


def render(latents: list[np.ndarray], weights: list[np.ndarray], shape: GridShape, height: int,
           width: int, threads: int = 1) -> np.ndarray:
    """uint8 pixels (height, width, C) of integer-valued latent grids (h_l, w_l) and float64 per-layer MLP
    weights: the float64 reference everywhere (:func:`mlp64`), computed in float32 but within
    ``EXACT_MARGIN`` of a rounding boundary, there in float64 BLAS where its error bound settles the pixel
    (:func:`mlp64_bounded`), and by mlp64 itself for the rest, within ``EXACT_MACS_PER_PIXEL`` (a LimitError
    past it). ``threads``: strips rendered side by side (the same pixels)."""
    grids = [np.asarray(g, dtype=np.float64) for g in latents]
    layers64 = split_params([np.asarray(w, dtype=np.float64) for w in weights], shape)
    layers32 = [(W.astype(np.float32), b.astype(np.float32)) for W, b in layers64]
    out = np.empty((height * width, shape.channels), dtype=np.uint8)
    budget = _ExactBudget(height * width)
    macs = sum(W.size for W, _ in layers64)  # mlp64's multiply-adds a pixel

    def strip(rows: tuple[int, int]) -> None:
        r0, r1 = rows
        with np.errstate(over="ignore", invalid="ignore"):  # a tampered file may drive the MLP to inf or NaN
            feats = np.stack([bilinear_rows(g, l, r0, r1, width) for l, g in enumerate(grids)], axis=1)
            v = (mlp32(feats.astype(np.float32), layers32) * np.float32(255)).astype(np.float64)
            near = np.flatnonzero((np.abs(v - np.floor(v) - 0.5) < EXACT_MARGIN).any(axis=1))
            if near.size:
                v64, settled = mlp64_bounded(feats[near], layers64)
                v[near] = v64
                rest = near[~settled]
                if rest.size:
                    budget.spend(rest.size * macs)
                    v[rest] = mlp64(feats[rest], layers64) * 255
            v = np.nan_to_num(v, nan=0.0)  # NaN has no defined uint8 value
            out[r0 * width: r1 * width] = np.rint(np.clip(v, 0, 255)).astype(np.uint8)

    for_strips(strip, filter_strips(height, width), threads)
    return out.reshape(height, width, shape.channels)


def for_strips(work: Callable[[tuple[int, int]], None], strips: list[tuple[int, int]], threads: int) -> None:
    """``work`` on every strip of rows, ``threads`` at a time (at most MAX_STRIP_THREADS). Each strip's pixels are
    computed alone and written to rows of their own, so the picture is the same with any number of threads;
    numpy leaves the interpreter lock in its array loops and BLAS calls, so threads run side by side (a
    12-megapixel decode on two cores: ABLATIONS.md AX)."""
    threads = min(threads, len(strips), MAX_STRIP_THREADS)
    if threads <= 1:
        for rows in strips:
            work(rows)
        return
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(work, strips):  # consumed, so that a strip's error is raised here
            pass


def filter_strips(height: int, width: int) -> list[tuple[int, int]]:
    """Row ranges of at most ``_STRIP_PIXELS`` pixels (one row at least)."""
    rows = max(1, _STRIP_PIXELS // width)
    return [(r, min(height, r + rows)) for r in range(0, height, rows)]


def padded_strip(image: np.ndarray, rows: tuple[int, int], r: int) -> np.ndarray:
    """uint8 (H, W, C) -> float64 (C, r1 - r0 + 2r, W + 2r): rows [r0 - r, r1 + r) and columns [-r, W + r) of
    the picture, borders replicated. A strip at a time: the whole picture in float64 held 24 bytes a pixel, and
    48 while it was padded (at 3072 x 2048 the decoder's peak was 1.22 GB with it, 0.86 GB without;
    ABLATIONS.md AC3). The loop filter's fit reads the same strips."""
    height, width = image.shape[:2]
    ys = np.clip(np.arange(rows[0] - r, rows[1] + r), 0, height - 1)
    xs = np.clip(np.arange(-r, width + r), 0, width - 1)
    return image[ys][:, xs].transpose(2, 0, 1).astype(np.float64)


def apply_filter(image: np.ndarray, flt: LoopFilter, threads: int = 1) -> np.ndarray:
    """Filter a decoded uint8 (H, W, C) picture, as FORMAT.md writes it, strip by strip of rows.

    Each feature plane (a shifted channel, or a symmetric pair's sum) is added into every output channel's
    accumulator times its coefficient. Every value is an integer below 2^53, so float64 is exact in any
    order. A strip is held flat, rows at the padded width W + 2r, so that a shifted plane is a contiguous
    slice (offset dy (W + 2r) + dx); the 2r extra columns a row are computed and dropped. ``threads``:
    strips filtered side by side (the same pixels).
    """
    height, width, channels = image.shape
    r = flt.taps // 2
    pw = width + 2 * r
    q = flt.coefs.astype(np.float64)  # (C, features)
    out = np.empty_like(image)
    half, div = float(1 << flt.shift >> 1), float(1 << flt.shift)

    def strip(span: tuple[int, int]) -> None:
        r0, r1 = span
        rows = r1 - r0
        n = rows * pw  # outputs at the padded width
        # (C, (rows + 2r) pw + 2r): the last row's shifted slices reach 2r values past the padded strip
        padded = np.pad(padded_strip(image, (r0, r1), r).reshape(channels, -1), ((0, 0), (0, 2 * r)))
        base = r * pw + r  # the first output pixel's position in the flat padded strip
        acc = np.empty((channels, n))
        acc[:] = q[:, -1:]
        pair = np.empty(n)
        term = np.empty(n)
        j = 0
        for ci in range(channels):
            for dy, dx in offsets(flt.taps, flt.symmetric):
                o = base + dy * pw + dx
                f = padded[ci, o: o + n]
                if flt.symmetric and (dy, dx) != (0, 0):
                    o2 = base - dy * pw - dx
                    f = np.add(f, padded[ci, o2: o2 + n], out=pair)
                for c in range(channels):
                    if q[c, j]:
                        acc[c] += np.multiply(f, q[c, j], out=term)
                j += 1
        corr = np.floor((acc + half) / div).reshape(channels, rows, pw)[:, :, :width]  # power-of-two: exact
        centre = padded[:, base: base + n].reshape(channels, rows, pw)[:, :, :width]
        out[r0: r1] = np.clip(centre + corr, 0, 255).astype(np.uint8).transpose(1, 2, 0)

    for_strips(strip, filter_strips(height, width), threads)
    return out


def dequantize_mlp(mlp_q: list[np.ndarray], steps: tuple[float, ...] | list[float]) -> list[np.ndarray]:
    """The MLP's float64 weights: one correctly rounded multiplication a weight, the same on every machine."""
    return [q.astype(np.float64) * float(step) for q, step in zip(mlp_q, steps)]


def decode(header: GridHeader, payload: bytes, threads: int = 1) -> np.ndarray:
    """Payload of a version-4 to 8 file -> uint8 (H, W, C); ``threads`` render and filter strips side by side."""
    segments = bitstream.split_segments(header, payload)
    latents, mlp_q, flt = read_v5(header, segments) if header.version >= 5 else (*read_v4(header, segments), None)
    pixels = render(latents, dequantize_mlp(mlp_q, header.mlp_steps), header.shape, header.height, header.width,
                    threads)
    return pixels if flt is None else apply_filter(pixels, flt, threads)
