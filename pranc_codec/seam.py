"""The seam filter between a composite file's strips (format version 10, the header's flags 1-3).

Each strip of a large picture (split.py) is fitted by its own network, so the two pixels either side of a seam
carry independent errors, and a strip's outermost columns are fitted worst (on kodim05 scaled to 3840 x 2560 in
eight strips at 0.25 bpp, a seam column's squared error was 2-5 x its strip's mean): a step across the seam,
the worst column of the picture by its excess of horizontal gradient, and visible on smooth content
(ABLATIONS.md BB5). The decoder tapers that step. At a vertical seam x (column x - 1 the end of one region,
column x the start of another that shares rows with it), per row and channel, with p_k = the pixel at column
x - 1 - k and q_k = the one at column x + k, all integers:

    D = 2 (q0 - p0) - (q1 - q0) - (p0 - p1)      (twice the step beyond the slope either side of it)
    c_k = floor((3 D (h - k) + 8 h) / (16 h))    for k = 0 .. h - 1
    p_k += c_k, q_k -= c_k, each clamped to 0..255

that is three quarters of the step removed at the seam and less further out, over h = ``HALF_WIDTH[s]`` pixels
a side, s the header's seam strength (0: none). Seams are filtered left to right, each from the picture as the
ones before left it; columns outside the picture are read as the nearest inside and never written. Integer
arithmetic (numpy int64): the same pixels everywhere. The encoder picks s by the squared error of the result
(:func:`choose`).
"""
from __future__ import annotations

import numpy as np

HALF_WIDTH = (0, 1, 2, 3)  # pixels a side by seam strength (the header's flags & 3)
# the share of the step taken out at the seam: 3/4 (+0.054 dB on ABLATIONS.md BB5's file at h = 1; 1/2: +0.049,
# all of it: +0.045)
SCALE_NUM, SCALE_DEN = 3, 4


def vertical_seams(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int]]:
    """(x, y0, y1) of every vertical seam between two of the regions ``boxes`` ((x, y, w, h) each): where one ends
    at column x and another starts there, over the rows both cover; sorted left to right, then top to bottom."""
    out = []
    for ax, ay, aw, ah in boxes:
        for bx, by, bw, bh in boxes:
            y0, y1 = max(ay, by), min(ay + ah, by + bh)
            if ax + aw == bx and y0 < y1:
                out.append((bx, y0, y1))
    return sorted(out)


def apply(image: np.ndarray, seams: list[tuple[int, int, int]], strength: int) -> np.ndarray:
    """``image`` (uint8 (H, W, C)) with the step across each seam (x, y0, y1) tapered (the module's definition);
    a new array. strength 0: a copy."""
    out = image.copy()
    h = HALF_WIDTH[strength]
    if h == 0:
        return out
    width = out.shape[1]
    for x, y0, y1 in seams:
        # the columns this seam reads and writes, as int64 (the rest of the picture is not touched)
        lo, hi = max(x - h - 1, 0), min(x + h + 1, width)
        band = out[y0:y1, lo:hi].astype(np.int64)

        def at(c: int) -> np.ndarray:
            return band[:, min(max(c, 0), width - 1) - lo]

        p0, p1, q0, q1 = at(x - 1), at(x - 2), at(x), at(x + 1)
        d = 2 * (q0 - p0) - (q1 - q0) - (p0 - p1)
        steps = [(SCALE_NUM * d * (h - k) + 2 * SCALE_DEN * h) // (4 * SCALE_DEN * h) for k in range(h)]
        for k, c in enumerate(steps):
            if 0 <= x - 1 - k < width:
                band[:, x - 1 - k - lo] += c
            if 0 <= x + k < width:
                band[:, x + k - lo] -= c
        out[y0:y1, lo:hi] = np.clip(band, 0, 255).astype(np.uint8)
    return out


def choose(decoded: np.ndarray, original: np.ndarray, seams: list[tuple[int, int, int]]) -> int:
    """The seam strength (0 .. len(HALF_WIDTH) - 1) whose filtered picture is nearest ``original`` in squared
    error (both uint8 (H, W, C)), judged on the columns a filter may change; 0 where there is no seam."""
    if not seams:
        return 0
    reach = max(HALF_WIDTH)
    cols = sorted({c for x, _, _ in seams for c in range(x - reach, x + reach) if 0 <= c < decoded.shape[1]})
    ref = original[:, cols].astype(np.int64)

    def error(strength: int) -> int:
        return int(((apply(decoded, seams, strength)[:, cols].astype(np.int64) - ref) ** 2).sum())

    return min(range(len(HALF_WIDTH)), key=lambda s: (error(s), s))
