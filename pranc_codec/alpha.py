"""Format version 11: a picture with transparency (a logo, an icon, a cut-out), as a file of its colour and a
one-channel version-9 file of its alpha: exact where the colour is, else at the fewest levels that keep it
within 50 dB (:func:`reduced_alpha`, ABLATIONS.md AR3).

The colour under a fully transparent pixel is never seen, so the encoder replaces it with the colour of the
nearest pixel that is seen (:func:`fill_hidden`), which adds no colour a palette or lossless file would pay for
(a smoothed fill lost, ABLATIONS.md AR1), and the network is fitted and every file judged on the seen pixels
alone (AR2). The colour file is made for the rate left after the alpha's, by the same encoder as any opaque
picture's (exact, palette, composite or network). The decoder decodes both and stacks them. Torch-free, as the
grid decoder is; only the encoder's fill imports scipy (which compressai brings).
"""
from __future__ import annotations

import math

import numpy as np

from . import lossless
from .bitstream import AlphaHeader
from .config import AlphaConfig, LosslessConfig


def split(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W, C + 1), C in {1, 3}, alpha last -> (colour uint8 (H, W, C), alpha uint8 (H, W, 1))."""
    return np.ascontiguousarray(image[:, :, :-1]), np.ascontiguousarray(image[:, :, -1:])


def fill_hidden(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``colour`` (uint8 (H, W, C)) with every pixel whose ``alpha`` (uint8 (H, W, 1)) is 0 given the colour of
    the nearest pixel whose alpha is not (Euclidean distance, ties as scipy breaks them); unchanged where none is
    hidden, black where all are (nothing is seen: the cheapest picture)."""
    hidden = alpha[:, :, 0] == 0
    if not hidden.any():
        return colour
    if hidden.all():
        return np.zeros_like(colour)
    from scipy import ndimage  # the encoder's only use of scipy here

    iy, ix = ndimage.distance_transform_edt(hidden, return_distances=False, return_indices=True)
    return np.ascontiguousarray(colour[iy, ix])


def reduced_alpha(alpha: np.ndarray, exact: bytes, cfg: AlphaConfig, lcfg: LosslessConfig) -> tuple[bytes, float]:
    """The alpha's one-channel version-9 file and its PSNR: reduced to the fewest grey levels of ``cfg.levels``
    whose PSNR is at least ``cfg.min_db`` (levels 0 and 255 kept, so that no hidden pixel shows and no opaque one
    lets the background through), where that file is smaller than ``exact`` (the alpha's exact file); else
    ``exact`` and inf. alpha: uint8 (H, W, 1). (The encoder's alone: metrics loads torch, which a decode needs
    not.)"""
    from .metrics import psnr

    if math.isfinite(cfg.min_db):
        for k in cfg.levels:
            reduced = lossless.reduce_colours(alpha, k, lcfg.palette_kmeans)
            reduced[alpha == 0], reduced[alpha == 255] = 0, 255
            quality = psnr(alpha, reduced)
            if quality >= cfg.min_db:
                data = lossless.encode(reduced, lcfg, palette=True)
                if len(data) < len(exact):
                    return data, quality
                break
    return exact, math.inf


def decode(header: AlphaHeader, device: str = "cpu", threads: int = 1) -> np.ndarray:
    """A version-11 file -> uint8 image (H, W, C + 1): its colour file's pixels (``threads`` as
    ``decoder.decode``'s), then its alpha."""
    from .decoder import decode_parsed

    colour = decode_parsed(header.colour, header.colour_payload, device=device, threads=threads)
    return np.concatenate([colour, lossless.decode(header.alpha, header.alpha_payload)], axis=2)
