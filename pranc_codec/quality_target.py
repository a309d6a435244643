"""A PSNR target instead of a rate (``pranc encode --psnr``): the rate that reaches it, found by whole encodes.

The codec controls its rate, not its quality, and a picture's PSNR at a given rate is known only once it is
encoded. So, as cwebp's ``-psnr`` does, this searches: each pass is an ordinary encode at a rate, and the
next rate steps along the codec's rate-distortion curve from the passes made so far.

The first rate comes from the picture itself. How many bits a picture needs for a PSNR varies tenfold
between pictures, but JPEG's needs and this codec's go together: on Kodak's 24, this codec's rate over
Pillow JPEG's at equal PSNR is 0.40 / 0.56 / 0.67 / 0.72 at 0.125 / 0.25 / 0.5 / 1 bpp, and a picture's
log2 ratio scatters by only 0.16 about that (``config.QualityConfig``). JPEG's rate for the target is found by
bisecting its quality setting, a few encodes of a few milliseconds each.
"""
from __future__ import annotations

import io
import math
import time
from dataclasses import replace
from typing import Callable

import numpy as np
from PIL import Image

from . import alpha as transparency
from . import bitstream, lossless
from .codec import (EncodeResult, ProgressFactory, aim_bpp, encode, exact_with_alpha, metadata_room, time_checked,
                    time_share, with_metadata)
from .config import CodecConfig, QualityConfig
from .errors import require_positive
from .grid_codec import curve_slope
from .metadata import Metadata
from .metrics import psnr

Encoder = Callable[[np.ndarray, CodecConfig, "ProgressFactory | None"], EncodeResult]  # as codec.encode


def jpeg_file(image: np.ndarray, quality: int) -> bytes:
    """``image`` (uint8 (H, W, C), C 1 or 3) as a JPEG file: Pillow at ``quality``, default settings (4:2:0), as the
    evaluation's ``jpeg`` codec encodes."""
    buf = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def jpeg_decoded(data: bytes, like: np.ndarray) -> np.ndarray:
    """A :func:`jpeg_file` decoded to uint8 pixels of ``like``'s shape."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("L" if like.shape[2] == 1 else "RGB")).reshape(like.shape)


def jpeg_point(image: np.ndarray, quality: int) -> tuple[float, float]:
    """(bpp, PSNR dB) of ``image`` through :func:`jpeg_file` at ``quality``."""
    data = jpeg_file(image, quality)
    return 8.0 * len(data) / (image.shape[0] * image.shape[1]), psnr(image, jpeg_decoded(data, image))


def jpeg_within(image: np.ndarray, max_bytes: int, qualities: tuple[int, int] = QualityConfig.jpeg_quality_range
                ) -> tuple[int, bytes] | None:
    """The highest quality in ``qualities`` whose :func:`jpeg_file` of ``image`` is at most ``max_bytes`` long, and
    that file (None: not even the lowest's). Bisection: a JPEG's size grows with its quality (the pranc demo's
    comparison at equal size)."""
    lo, hi = qualities
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = jpeg_file(image, mid)
        if len(data) <= max_bytes:
            best, lo = (mid, data), mid + 1
        else:
            hi = mid - 1
    return best


def jpeg_rate_for(image: np.ndarray, target_db: float, cfg: QualityConfig) -> tuple[float, float]:
    """(bpp, PSNR) of JPEG at ``target_db`` on ``image``: interpolated in log bpp between the two qualities that
    bracket the target (bisection), or JPEG's own point at the end of its quality range that the target is past."""
    lo, hi = cfg.jpeg_quality_range
    p_lo, p_hi = jpeg_point(image, lo), jpeg_point(image, hi)
    if target_db <= p_lo[1]:
        return p_lo
    if target_db >= p_hi[1]:
        return p_hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        p_mid = jpeg_point(image, mid)
        if p_mid[1] < target_db:
            lo, p_lo = mid, p_mid
        else:
            hi, p_hi = mid, p_mid
    t = (target_db - p_lo[1]) / max(p_hi[1] - p_lo[1], 1e-9)
    return 2.0 ** ((1 - t) * math.log2(p_lo[0]) + t * math.log2(p_hi[0])), target_db


def rate_from_jpeg(jpeg_bpp: float, cfg: QualityConfig) -> float:
    """This codec's rate (bpp) for the PSNR that JPEG reaches at ``jpeg_bpp``: the rate b with b = jpeg_bpp x
    ratio(b), the ratio interpolated in log2 bpp (a fixed point: the ratio changes slowly with the rate)."""
    xs, ys = np.log2(cfg.jpeg_ratio_bpp), np.log2(cfg.jpeg_ratio)
    x = math.log2(jpeg_bpp)
    y = x + float(ys[0])
    for _ in range(60):  # |d log ratio / d log b| <= 0.5 on the table: converges to 1e-18
        y = x + float(np.interp(y, xs, ys))
    return 2.0 ** y


def first_rate(image: np.ndarray, target_db: float, config: CodecConfig) -> float:
    """The rate (bpp) of the first pass: JPEG's rate for the target scaled by this codec's ratio to it; a
    target past JPEG's range is reached from its end along this codec's mean curve."""
    cfg = config.quality
    jpeg_bpp, jpeg_db = jpeg_rate_for(image, target_db, cfg)
    bpp = rate_from_jpeg(jpeg_bpp, cfg)
    return _clamp(bpp * 2.0 ** ((target_db - jpeg_db) / curve_slope(bpp, config.grid)), cfg)


def _clamp(bpp: float, cfg: QualityConfig) -> float:
    return min(max(bpp, cfg.bpp_range[0]), cfg.bpp_range[1])


def _slope(passes: list[tuple[float, float]], config: CodecConfig) -> float:
    """dB per doubling of the rate for the next step: the secant through the last two passes (bpp, PSNR) where
    it is within ``quality.secant_range`` x of the mean curve's slope there (two passes that nearly agree in
    rate make a noisy secant), else the mean curve's."""
    curve = curve_slope(passes[-1][0], config.grid)
    k = config.quality.secant_range
    if len(passes) >= 2:
        (b0, p0), (b1, p1) = passes[-2], passes[-1]
        if b0 != b1 and math.isfinite(p0) and math.isfinite(p1):
            secant = (p1 - p0) / (math.log2(b1) - math.log2(b0))
            if curve / k <= secant <= curve * k:
                return secant
    return curve


def _exact_fits(image: np.ndarray, size: int, config: CodecConfig) -> bool:
    """Whether the picture's lossless file takes at most ``size`` bytes; of a picture with transparency (uint8
    (H, W, C + 1)), its colour's lossless file and its alpha's, as the encoder makes them."""
    if image.shape[2] in (2, 4):
        colour, alpha = transparency.split(image)
        if alpha.min() < 255:
            return exact_with_alpha(colour, alpha, size, config)[2] is not None
        image = colour
    return lossless.attempt(image, size, config.lossless) is not None


def _labelled(progress: ProgressFactory | None, done: int) -> ProgressFactory | None:
    """The progress bars of one pass, named for it."""
    if progress is None:
        return None
    return lambda name, total, unit="step": progress(f"{name} (encode {done + 1})", total, unit)


def encode_to_psnr(image: np.ndarray, target_db: float, config: CodecConfig = CodecConfig(),
                   progress: ProgressFactory | None = None, encoder: Encoder = encode,
                   metadata: Metadata | None = None) -> EncodeResult:
    """Encode ``image`` (uint8 (H, W, C)) at the rate whose decoded PSNR is ``target_db`` (within
    ``config.quality.tolerance_db``), by at most ``config.quality.max_passes`` calls of ``encoder``
    (codec.encode; a test's stand-in). Returns the first encode within the tolerance, else the one nearest the
    target, with a warning; its stats give the target, the passes and the time of them all. Where the
    picture's lossless file is no larger than that encode (``config.lossless.mode`` "auto"), the lossless file
    instead, from one more call of ``encoder``. With ``metadata``, the file found for the picture (under the
    ceiling the metadata leaves) in a version-12 file with it."""
    require_positive(target_db, "--psnr", " of dB")
    cfg = config.quality
    t0 = time.perf_counter()
    if metadata:
        block = bitstream.metadata_block(metadata)
        inner = encode_to_psnr(image, target_db, time_share(metadata_room(config, block, *image.shape[:2]), t0),
                               progress, encoder)
        return time_checked(with_metadata(inner, metadata, block, config, t0, rate_target=False), config)

    def miss(r: EncodeResult) -> float:  # dB from the target; a lossless file (inf dB) is past any target
        return 0.0 if r.stats.psnr == math.inf else abs(target_db - r.stats.psnr)

    # under a ceiling (--max-size), no pass asks for more than the rate an encode aims at under it
    ceiling = aim_bpp(replace(config.rate, bpp=math.inf), *image.shape[:2])
    colour = transparency.split(image)[0] if image.shape[2] in (2, 4) else image  # JPEG knows no alpha
    bpp = min(first_rate(colour, target_db, config), ceiling)
    results: list[tuple[float, EncodeResult]] = []  # (asked bpp, its encode)
    stop = ""
    while True:
        # under a time budget, an equal share of what is left for each pass that may still come
        asked = time_share(replace(config, rate=replace(config.rate, bpp=bpp)), t0, cfg.max_passes - len(results))
        result = encoder(image, asked, _labelled(progress, len(results)))
        results.append((bpp, result))
        if miss(result) <= cfg.tolerance_db or len(results) >= cfg.max_passes:
            break
        landed = result.stats.bpp
        short = target_db - result.stats.psnr  # dB still wanted (negative: over the target)
        if short > 0 and bpp >= ceiling:
            stop = f"; --max-size ({config.rate.max_bytes} bytes) holds it there"
            break
        # a rate the codec could not spend, or could not go under: asking further past it changes nothing
        if short > 0 and landed < bpp * (1 - config.rate.tolerance):
            stop = f"; this picture's files stop growing at about {landed:.3g} bpp"
            break
        if short < 0 and landed > bpp * (1 + config.rate.tolerance):
            stop = f"; this picture's files go no smaller than about {landed:.3g} bpp"
            break
        passes = [(r.stats.bpp, r.stats.psnr) for _, r in results]
        step = max(-cfg.max_doublings, min(cfg.max_doublings, short / _slope(passes, config)))
        nxt = min(_clamp(landed * 2.0 ** step, cfg), ceiling)
        if any(abs(math.log2(nxt / b)) < 1e-3 for b, _ in results):  # the same rate again (at a bound): no news
            break
        bpp = nxt

    reached = miss(results[-1][1]) <= cfg.tolerance_db  # the search stops at the first pass that does
    best = results[-1][1] if reached else min((r for _, r in results), key=miss)
    if config.lossless.mode == "auto" and not best.stats.lossless:
        # each pass tried the lossless file at the rate it asked for; the rate the search ends at may be over it
        if _exact_fits(image, best.stats.bytes, config):
            best = encoder(image, replace(config, lossless=replace(config.lossless, mode="always")), None)
            reached = True
    notes = [] if reached else [f"reached {best.stats.psnr:.2f} dB of the {target_db:g} dB asked in "
                               f"{len(results)} encode{'s' * (len(results) > 1)}{stop}"]
    stats = replace(best.stats, target_psnr=target_db, passes=len(results), warnings=notes,
                    search=[(asked, r.stats.bpp, r.stats.psnr) for asked, r in results],
                    encode_seconds=time.perf_counter() - t0)
    return time_checked(replace(best, stats=stats), config)
