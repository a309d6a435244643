"""Format version 9: a WebP lossless (VP8L) bitstream instead of a network, coded and decoded by libwebp through
Pillow; the encoder's two trials that make one, and the decoder.

A coordinate network draws smooth fields; a screenshot's few hundred colours, long runs and repeated glyphs are
what LZ77, a colour cache and a palette code. On four of seven screens of the content set, lossless WebP is
smaller than this codec's lossy 0.25 bpp file (eval/RESULTS.md "synthetic"), so the encoder tries it first and
stores it wherever it fits the rate asked for (:func:`attempt`). Where it does not, a picture of few colours is
also coded reduced to a palette (:func:`palette_attempt`), which often beats the network by far (RESULTS.md
"Palette files"). The file holds the VP8L chunk alone, without the 20 bytes of its RIFF wrapping, which the
decoder rebuilds. Decoding is exact on any conformant decoder: no pixel depends on the machine. Torch-free, as
the grid decoder is.
"""
from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, features

from .bitstream import LOSSLESS_OVERHEAD, LOSSLESS_WEBP, LosslessHeader, pack_lossless
from .config import LosslessConfig
from .errors import FormatError, InputError, LimitError

VP8L_SIGNATURE = 0x2F
VP8L_HEADER = 5  # bytes: the signature, then 14 bits width - 1, 14 bits height - 1, 1 bit alpha, 3 bits version
WEBP_MAX_SIDE = 16383  # libwebp's WEBP_MAX_DIMENSION
_U32 = struct.Struct("<I")


def available() -> bool:
    """Whether this Pillow was built with WebP (every wheel on PyPI is)."""
    return bool(features.check("webp"))


def fits(width: int, height: int) -> bool:
    """Whether WebP can hold a picture of this size."""
    return max(width, height) <= WEBP_MAX_SIDE


def webp_lossless(image: np.ndarray, method: int, quality: int) -> bytes:
    """uint8 (H, W, C) -> the VP8L bitstream of its lossless WebP (``method`` 0-6 and ``quality`` 0-100: libwebp's
    effort). A grey picture is coded as RGB with R = G = B (WebP has no grey), which its subtract-green transform
    makes nearly free."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "WEBP", lossless=True, quality=quality, method=method,
                                                   exact=True)
    riff = buf.getvalue()
    # a picture without alpha, ICC or metadata is a "simple lossless" file: RIFF, WEBP, then one VP8L chunk
    if riff[:4] != b"RIFF" or riff[8:16] != b"WEBPVP8L":
        raise RuntimeError(f"libwebp wrote an extended WebP file ({riff[12:16]!r} chunk), not plain VP8L")
    (n,) = _U32.unpack_from(riff, 16)
    return riff[20: 20 + n]


def attempt(image: np.ndarray, budget_bytes: float, cfg: LosslessConfig) -> bytes | None:
    """The picture's lossless ``.prc`` file where it takes at most ``budget_bytes``, else None.

    A fast low-effort code screens the picture first (0.01-0.12 s on any 768x512 picture; the full effort takes
    0.4-0.8 s on a photograph, whose lossless code is 30-50 times a typical budget), then the full effort is
    tried where the screen's size is within ``cfg.screen_ratio`` of the budget."""
    height, width, _ = image.shape
    if not (available() and fits(width, height)):
        return None
    screen = webp_lossless(image, cfg.screen_method, cfg.screen_quality)
    if LOSSLESS_OVERHEAD + len(screen) > cfg.screen_ratio * budget_bytes:
        return None
    data = _file(image, cfg)
    return data if len(data) <= budget_bytes else None


def encode(image: np.ndarray, cfg: LosslessConfig, palette: bool = False) -> bytes:
    """The picture's lossless ``.prc`` file, whatever its size (``--lossless always``; ``palette``: flagged as a
    picture reduced to a palette)."""
    height, width, _ = image.shape
    if not available():
        raise InputError("lossless coding needs Pillow with WebP support, which this one lacks")
    if not fits(width, height):
        raise LimitError(f"a lossless file holds at most {WEBP_MAX_SIDE} pixels a side, not {width}x{height}")
    return _file(image, cfg, palette)


def _file(image: np.ndarray, cfg: LosslessConfig, palette: bool = False) -> bytes:
    """The ``.prc`` file of ``image``'s lossless code at the full effort (``palette``: flagged as the picture
    reduced to a palette)."""
    height, width, channels = image.shape
    header = LosslessHeader(width=width, height=height, channels=channels, kind=LOSSLESS_WEBP, palette=palette)
    return pack_lossless(header, webp_lossless(image, cfg.method, cfg.quality))


def colour_codes(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) -> int32 (H, W): one number per colour (the grey level where C = 1, else 0xRRGGBB)."""
    a = image.astype(np.int32)
    return a[..., 0] if image.shape[2] == 1 else (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]


def colour_share(image: np.ndarray, colours: int) -> float:
    """The share of the pixels of uint8 (H, W, C) ``image`` (C = 1 or 3) that its ``colours`` most common colours
    (grey levels, where C = 1) cover."""
    counts = np.unique(colour_codes(image), return_counts=True)[1]
    return float(np.sort(counts)[::-1][:colours].sum() / counts.sum())


def reduce_colours(image: np.ndarray, colours: int, kmeans: int) -> np.ndarray:
    """uint8 (H, W, C) ``image`` (C = 1 or 3) with at most ``colours`` colours: Pillow's median cut without
    dithering (which would cost the lossless coder its runs), its palette refined by ``kmeans`` k-means passes. A
    grey picture goes through as R = G = B, which both keep (their colours are means of grey pixels)."""
    channels = image.shape[2]
    rgb = np.repeat(image, 3, axis=2) if channels == 1 else image
    quantized = Image.fromarray(rgb).quantize(colors=colours, method=Image.Quantize.MEDIANCUT,
                                              dither=Image.Dither.NONE, kmeans=kmeans)
    return np.ascontiguousarray(np.asarray(quantized.convert("RGB"))[:, :, :channels])


def palette_attempt(image: np.ndarray, budget_bytes: float, cfg: LosslessConfig) -> bytes | None:
    """A palette file of the picture within ``budget_bytes``: the picture reduced to the most colours (up to
    ``cfg.palette_colours``) whose lossless file fits, or None where the picture is not one of few colours (an
    RGB picture whose ``cfg.palette_colours`` most common colours cover less than ``cfg.palette_min_share`` of
    it: Kodak's cover 0.105-0.601; a grey one whose ``cfg.palette_grey_levels`` most common levels do: Kodak's in
    grey 0.09-0.66) or where two colours do not fit.

    The number of colours is bisected with the plain median cut (0.03-0.07 s a try on a 768x512 screen), then
    refined by k-means, which gains 3-14 dB at the same number on screens (RESULTS.md "Palette files") but may
    take more bytes: the count steps down by a tenth, ``cfg.palette_refine_tries`` times at most, until the
    refined file fits. Of the two, the one nearer the picture."""
    height, width, channels = image.shape
    if not (cfg.palette and available() and fits(width, height)):
        return None
    if colour_share(image, cfg.palette_grey_levels if channels == 1 else cfg.palette_colours) < cfg.palette_min_share:
        return None
    lo, hi, found = 2, cfg.palette_colours, None
    while lo <= hi:
        k = (lo + hi) // 2
        reduced = reduce_colours(image, k, 0)
        data = _file(reduced, cfg, palette=True)
        if len(data) <= budget_bytes:
            found, lo = (k, reduced, data), k + 1
        else:
            hi = k - 1
    if found is None:
        return None
    k, plain, data = found
    best, best_err = data, _sq_error(image, plain)
    for _ in range(cfg.palette_refine_tries if cfg.palette_kmeans else 0):
        refined = reduce_colours(image, k, cfg.palette_kmeans)
        fine = _file(refined, cfg, palette=True)
        if len(fine) <= budget_bytes:
            if _sq_error(image, refined) < best_err:
                best = fine
            break
        k = min(k - 1, int(k * 0.9))
        if k < 2:
            break
    return best


def _sq_error(a: np.ndarray, b: np.ndarray) -> int:
    """Sum of squared differences of two uint8 arrays (metrics.mse would load torch, which a decode needs not)."""
    d = a.astype(np.int32) - b.astype(np.int32)
    return int(np.einsum("ijk,ijk->", d, d, dtype=np.int64))


def check_payload(header: LosslessHeader, payload: bytes) -> None:
    """The VP8L header's fields against the file's, before libwebp sees a byte (FORMAT.md "Version 9")."""
    if len(payload) < VP8L_HEADER or payload[0] != VP8L_SIGNATURE:
        raise FormatError("corrupt lossless payload (not a VP8L bitstream)")
    (bits,) = _U32.unpack_from(payload, 1)
    w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if (w, h) != (header.width, header.height):
        raise FormatError(f"lossless payload of {w}x{h} pixels in a {header.width}x{header.height} file")
    if bits >> 28 & 1:
        raise FormatError("lossless payload with an alpha channel")
    if bits >> 29:
        raise FormatError(f"lossless payload of VP8L version {bits >> 29} (only 0 exists)")


def decode(header: LosslessHeader, payload: bytes) -> np.ndarray:
    """A version-9 file's payload -> uint8 image (H, W, C). Raises FormatError where libwebp refuses it."""
    check_payload(header, payload)
    if not available():
        raise FormatError("this Pillow cannot decode WebP, which this lossless file holds")
    chunk = b"VP8L" + _U32.pack(len(payload)) + payload + b"\0" * (len(payload) & 1)  # RIFF pads chunks to even
    riff = b"RIFF" + _U32.pack(4 + len(chunk)) + b"WEBP" + chunk
    try:
        with warnings.catch_warnings():  # the size is checked and bounded: no decompression-bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(riff), formats=["WEBP"]) as im:
                rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise FormatError(f"corrupt lossless payload ({e})") from None
    if rgb.shape != (header.height, header.width, 3):  # the VP8L header was checked: this is libwebp disagreeing
        raise FormatError(f"lossless payload decoded to {rgb.shape[1]}x{rgb.shape[0]} pixels")
    return np.ascontiguousarray(rgb[:, :, :1] if header.channels == 1 else rgb)

