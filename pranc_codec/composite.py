"""Format version 10: a screen with photographs in it, as the screen's exact pixels (a version-9 file, each
photograph's rectangle filled with one colour) and each photograph as a version-8 network file pasted over it.

A coordinate network draws a photograph well and text badly; a lossless coder the reverse. A web page, a slide
or a document with a photograph in it is both: as a whole, its exact file is several times the rate a user asks
for, its palette file posterizes the photograph, and the network blurs the text. Split along the photograph's
edges, the screen codes exactly in a few kB and every other bit goes to the photograph (ABLATIONS.md AQ3).

The encoder finds photographs as groups of busy blocks (:func:`find_regions`); the decoder decodes the base,
then each region, and pastes them: the same pixels on every machine, as its two kinds of nested file are.
Torch-free, as the grid decoder is; only the encoder's search imports scipy (which compressai brings).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Callable

import numpy as np

from . import grid_decode, lossless, seam
from .bitstream import CompositeHeader, composite_overhead, pack_composite
from .config import CompositeConfig, LosslessConfig


@dataclass(frozen=True)
class Box:
    """A rectangle of pixels: top-left (x, y), w x h."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    def overlaps(self, o: "Box") -> bool:
        return self.x < o.x + o.w and o.x < self.x + self.w and self.y < o.y + o.h and o.y < self.y + self.h

    def union(self, o: "Box") -> "Box":
        x, y = min(self.x, o.x), min(self.y, o.y)
        return Box(x, y, max(self.x + self.w, o.x + o.w) - x, max(self.y + self.h, o.y + o.h) - y)


def _distinct(lines: np.ndarray) -> np.ndarray:
    """Distinct values along the last axis of an int array."""
    s = np.sort(lines, axis=-1)
    return 1 + (np.diff(s, axis=-1) != 0).sum(axis=-1)


def busy_blocks(codes: np.ndarray, cfg: CompositeConfig) -> np.ndarray:
    """bool (H // block, W // block): the blocks with more than ``cfg.busy_colours`` distinct colours."""
    b = cfg.block
    h, w = codes.shape[0] // b, codes.shape[1] // b
    blocks = codes[: h * b, : w * b].reshape(h, b, w, b).transpose(0, 2, 1, 3).reshape(h, w, b * b)
    return _distinct(blocks) > cfg.busy_colours


def _merged(boxes: list[Box]) -> list[Box]:
    """``boxes`` with every two that overlap replaced by their union, until none do (grown boxes may overlap:
    their union is one region)."""
    done: list[Box] = []
    for bx in boxes:
        while (hit := next((o for o in done if o.overlaps(bx)), None)) is not None:
            done.remove(hit)
            bx = bx.union(hit)
        done.append(bx)
    return done


def _trim(codes: np.ndarray, box: Box, screen: np.ndarray, cfg: CompositeConfig) -> Box:
    """``box`` without its outer rows and columns that are screen, not photograph, repeatedly: lines at least
    ``cfg.screen_share`` of whose pixels have colours found outside the boxes (``screen``, sorted), such as the
    background and the text beside a photograph, whose colours recur all over the page, which the base codes
    exactly (ABLATIONS.md AQ5)."""
    x0, y0, x1, y1 = box.x, box.y, box.x + box.w, box.y + box.h

    def of_screen(line: np.ndarray) -> bool:
        return np.isin(line, screen).mean() >= cfg.screen_share

    while x1 - x0 > 0 and y1 - y0 > 0:
        if of_screen(codes[y0, x0:x1]):
            y0 += 1
        elif of_screen(codes[y1 - 1, x0:x1]):
            y1 -= 1
        elif of_screen(codes[y0:y1, x0]):
            x0 += 1
        elif of_screen(codes[y0:y1, x1 - 1]):
            x1 -= 1
        else:
            break
    return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def find_regions(image: np.ndarray, cfg: CompositeConfig) -> list[Box]:
    """The photographs of a uint8 (H, W, C) screen, as at most ``cfg.max_regions`` boxes that do not overlap; none
    where there are none, where more than ``cfg.max_busy_outside`` of the blocks outside them are busy (not a
    screen), or where they would cover more than ``cfg.max_share`` of it (a photograph: coded whole).

    Busy blocks 8-connected (across a gap of one block) make a group; a group whose busy blocks' bounding box is
    at least ``cfg.min_side`` pixels a side and ``cfg.min_density`` busy is a photograph. Its box, grown by one
    block (the photograph's edge need not fall on the block grid), is trimmed of lines of the screen's colours."""
    from scipy import ndimage  # the encoder's only use of scipy

    height, width = image.shape[:2]
    codes = lossless.colour_codes(image)
    busy = busy_blocks(codes, cfg)
    if not busy.any():
        return []
    b, eight = cfg.block, np.ones((3, 3), bool)
    labels, _ = ndimage.label(ndimage.binary_dilation(busy, structure=eight), structure=eight)
    boxes: list[Box] = []
    for i, where in enumerate(ndimage.find_objects(labels), start=1):
        ys, xs = np.nonzero(busy[where] & (labels[where] == i))
        if len(ys) == 0:
            continue
        by0, bx0 = where[0].start + ys.min(), where[1].start + xs.min()
        bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        if min(bh, bw) * b < cfg.min_side or len(ys) < cfg.min_density * bh * bw:
            continue
        x0, y0 = max(0, (bx0 - 1) * b), max(0, (by0 - 1) * b)
        boxes.append(Box(x0, y0, min(width, (bx0 + bw + 1) * b) - x0, min(height, (by0 + bh + 1) * b) - y0))
    boxes = _merged(boxes)
    if len(boxes) > cfg.max_regions:
        boxes = [reduce(Box.union, boxes)]
    if not boxes:
        return []
    outside = np.ones_like(busy)
    for bx in boxes:  # the blocks in a grown box, which starts and ends on the block grid or the picture's edge
        outside[bx.y // b: -(-(bx.y + bx.h) // b), bx.x // b: -(-(bx.x + bx.w) // b)] = False
    if busy[outside].sum() > cfg.max_busy_outside * max(1, outside.sum()):  # not a screen around them
        return []
    screen = np.ones(codes.shape, bool)
    for bx in boxes:
        screen[bx.y: bx.y + bx.h, bx.x: bx.x + bx.w] = False
    colours = np.unique(codes[screen])
    boxes = [t for t in (_trim(codes, bx, colours, cfg) for bx in boxes) if min(t.w, t.h) >= cfg.min_side]
    if not boxes or sum(bx.area for bx in boxes) > cfg.max_share * height * width:
        return []
    return sorted(boxes, key=lambda bx: (bx.y, bx.x))


def attempt(image: np.ndarray, budget_bytes: float, cfg: CompositeConfig, lcfg: LosslessConfig,
            encode_region: Callable[[np.ndarray, float], bytes], seen: np.ndarray | None = None) -> bytes | None:
    """A composite file of the picture within about ``budget_bytes`` (its regions land within their own rate's
    tolerance), or None where it has no photographs, where WebP cannot hold it, where the regions would get less
    than ``cfg.min_region_bpp``, or where less than ``cfg.min_screen_seen`` of the pixels outside them are
    ``seen`` (bool (H, W), of a picture with transparency; None: all). ``encode_region(crop, budget_bytes)`` makes
    each region's version-8 file."""
    height, width, channels = image.shape
    if not (cfg.enabled and lossless.available() and lossless.fits(width, height)):
        return None
    boxes = find_regions(image, cfg)
    if not boxes:
        return None
    if seen is not None:
        outside = np.ones(seen.shape, bool)
        for bx in boxes:
            outside[bx.y: bx.y + bx.h, bx.x: bx.x + bx.w] = False
        if seen[outside].mean() < cfg.min_screen_seen:  # a photograph on nothing: no screen to code exactly
            return None
    base = image.copy()
    for bx in boxes:  # one colour: a flat rectangle costs the lossless coder next to nothing, whatever its colour
        base[bx.y: bx.y + bx.h, bx.x: bx.x + bx.w] = image[bx.y, bx.x]
    base_file = lossless.encode(base, lcfg)
    area = sum(bx.area for bx in boxes)
    left = budget_bytes - len(base_file) - composite_overhead(len(boxes))
    if 8 * left / area < cfg.min_region_bpp:
        return None
    files = [encode_region(np.ascontiguousarray(image[bx.y: bx.y + bx.h, bx.x: bx.x + bx.w]), left * bx.area / area)
             for bx in boxes]
    return pack_composite(width, height, channels, base_file, [(bx.x, bx.y, f) for bx, f in zip(boxes, files)])


def decode(header: CompositeHeader, threads: int = 1) -> np.ndarray:
    """A version-10 file -> uint8 image (H, W, C): the base's pixels with each region's pasted over them (each
    rendered ``threads`` strips at a time), then the seams between regions side by side filtered at the header's
    strength (seam.py; 0, none, in a screen's composite)."""
    out = np.array(lossless.decode(header.base, header.base_payload))
    for r in header.regions:
        out[r.y: r.y + r.header.height, r.x: r.x + r.header.width] = grid_decode.decode(r.header, r.payload, threads)
    if header.seam:
        out = seam.apply(out, seam.vertical_seams(region_boxes(header)), header.seam)
    return out


def region_boxes(header: CompositeHeader) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of each region of a composite file."""
    return [(r.x, r.y, r.header.width, r.header.height) for r in header.regions]
