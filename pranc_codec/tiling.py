"""Splitting an image into a grid of tiles, each fitted by its own coefficient vector.

All tiles share the network shape, the basis and theta0 (one seed); only their
coefficients differ. A pixel is evaluated by its tile's network alone, so a
step costs (pixels x parameters per tile) instead of (pixels x all parameters):
the encoder gets as many fitting steps for a fraction of the time.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TileGrid:
    """rows x cols tiles over a height x width image; tiles are at most ``side`` a side.

    Boundaries are ``i * extent // n``, so tiles differ in size by at most one pixel.
    """

    height: int
    width: int
    side: int

    @property
    def rows(self) -> int:
        return -(-self.height // self.side)

    @property
    def cols(self) -> int:
        return -(-self.width // self.side)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """(y0, y1, x0, x1) of every tile, row-major."""
        ys = [i * self.height // self.rows for i in range(self.rows + 1)]
        xs = [j * self.width // self.cols for j in range(self.cols + 1)]
        return [(ys[i], ys[i + 1], xs[j], xs[j + 1]) for i in range(self.rows) for j in range(self.cols)]

    @property
    def max_tile_pixels(self) -> int:
        return (-(-self.height // self.rows)) * (-(-self.width // self.cols))
