"""Format version 11: a picture with transparency (a logo, an icon, a cut-out), as a file of its colour and a
one-channel version-9 file of its alpha, which is exact, as WebP's and PNG's are.

The colour under a fully transparent pixel is never seen, so the encoder replaces it with the colour of the
nearest pixel that is seen (:func:`fill_hidden`): that adds no colour a palette or lossless file would pay for,
and continues the visible edges outward, which a network draws more cheaply than the arbitrary colours an editor
leaves there. (A smoothed fill drew more of the fit's weight to the hidden pixels than it saved: ABLATIONS.md
AR1.) The colour file is made for the rate left after the alpha's, by the same encoder
as any opaque picture's (exact, palette, composite or network). The decoder decodes both and stacks them.
Torch-free, as the grid decoder is; only the encoder's fill imports scipy (which compressai brings).
"""
from __future__ import annotations

import numpy as np

from .bitstream import AlphaHeader


def split(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W, C + 1), C in {1, 3}, alpha last -> (colour uint8 (H, W, C), alpha uint8 (H, W, 1))."""
    return np.ascontiguousarray(image[:, :, :-1]), np.ascontiguousarray(image[:, :, -1:])


def fill_hidden(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``colour`` (uint8 (H, W, C)) with every pixel whose ``alpha`` (uint8 (H, W, 1)) is 0 given the colour of
    the nearest pixel whose alpha is not (Euclidean distance, ties as scipy breaks them); unchanged where every
    pixel is hidden or none is."""
    hidden = alpha[:, :, 0] == 0
    if not hidden.any() or hidden.all():
        return colour
    from scipy import ndimage  # the encoder's only use of scipy here

    iy, ix = ndimage.distance_transform_edt(hidden, return_distances=False, return_indices=True)
    return np.ascontiguousarray(colour[iy, ix])


def visible_mse(a: np.ndarray, b: np.ndarray, seen: np.ndarray) -> float:
    """Mean squared error (8-bit units^2) of two uint8 (H, W, C) colour pictures over the pixels where ``seen``
    (bool (H, W): alpha not 0, the only pixels whose colour is seen); 0 where none is."""
    if not seen.any():
        return 0.0
    d = a[seen].astype(np.float64) - b[seen].astype(np.float64)
    return float(np.mean(d * d))


def decode(header: AlphaHeader, device: str = "cpu") -> np.ndarray:
    """A version-11 file -> uint8 image (H, W, C + 1): its colour file's pixels, then its alpha."""
    from . import lossless
    from .decoder import decode_parsed

    colour = decode_parsed(header.colour, header.colour_payload, device=device)
    return np.concatenate([colour, lossless.decode(header.alpha, header.alpha_payload)], axis=2)
