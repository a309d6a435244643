"""The seeded random basis of the PRANC SIREN: how a layer's parameters are cut into blocks, and the blocks.

:class:`SubspaceSpec` is what a header fixes (seed, kind, chunking, expansion,
the network's shape); from it every machine derives the same block layout and,
with the counter-based generator (``rng.py``), the same basis values and
offset theta0, in integer arithmetic. numpy only, no torch: the container
(``bitstream.py``) validates a header's spec without loading torch, and
``subspace.py`` turns the blocks into the torch module that fits alpha.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import rng
from .config import BasisKind
from .shapes import SirenShape

EXPANSION_ONE = 256  # expansion is stored as a fixed-point integer: n/k * 256


@dataclass(frozen=True)
class BlockGroup:
    """``count`` basis blocks of ``rows`` parameters x ``dims`` coefficients each.

    ``first`` is the index of the group's first block within its layer (it picks
    the blocks' random numbers).
    """

    count: int
    rows: int
    dims: int
    first: int = 0


@dataclass(frozen=True)
class LayerLayout:
    """Cutting of one layer's ``size`` parameters into basis blocks, in parameter order.

    Gaussian and ternary: one group of equal chunks (the last one padded, the
    padding discarded). Orthogonal: full blocks of ``chunk_size`` (a power of two),
    then one block per set bit of the remainder (243 = 128 + 64 + 32 + 16 + 2 + 1),
    so every block is square-orthogonal and nothing is padded. Identity: one block.
    """

    size: int
    groups: tuple[BlockGroup, ...]

    @property
    def num_coefs(self) -> int:
        return sum(g.count * g.dims for g in self.groups)


@dataclass(frozen=True)
class SubspaceSpec:
    """Everything that determines the basis and theta0; all of it is in the header."""

    seed: int
    kind: BasisKind
    chunk_size: int
    expansion_fp: int  # n/k * 256
    density_byte: int  # ternary density * 256
    offset: bool
    shape: SirenShape
    tiles: int = 1  # networks sharing this basis, one per image tile

    def layouts(self) -> list[LayerLayout]:
        """Chunking of every layer (cached: the spec is immutable)."""
        return list(_layouts(self))

    def group_sizes(self) -> list[int]:
        """Coefficients per layer over all tiles, i.e. per entropy-coding group."""
        return [self.tiles * lay.num_coefs for lay in _layouts(self)]

    def _dims(self, rows: int) -> int:
        # integer rounding so every machine derives the same d
        return min(rows, max(1, (rows * EXPANSION_ONE + self.expansion_fp // 2) // self.expansion_fp))

    def _compute_layouts(self) -> tuple[LayerLayout, ...]:
        out = []
        for n in self.shape.layer_sizes():
            if self.kind == BasisKind.IDENTITY:
                out.append(LayerLayout(n, (BlockGroup(1, n, n),)))
            elif self.kind == BasisKind.ORTHOGONAL:
                full, rest = divmod(n, self.chunk_size)
                groups = [BlockGroup(full, self.chunk_size, self._dims(self.chunk_size))] if full else []
                block = full  # index of the next block in the layer
                for bit in reversed(range(rest.bit_length())):
                    if rest >> bit & 1:
                        groups.append(BlockGroup(1, 1 << bit, self._dims(1 << bit), block))
                        block += 1
                out.append(LayerLayout(n, tuple(groups)))
            else:
                chunks = -(-n // self.chunk_size)
                rows = -(-n // chunks)
                out.append(LayerLayout(n, (BlockGroup(chunks, rows, self._dims(rows)),)))
        return tuple(out)

    @property
    def num_coefs(self) -> int:
        return sum(self.group_sizes())

    @property
    def basis_entries(self) -> int:
        """Random-basis values to generate (bounds decode work; an orthogonal block costs m^2)."""
        if self.kind == BasisKind.IDENTITY:
            return 0
        per = (lambda g: g.rows * g.rows) if self.kind == BasisKind.ORTHOGONAL else (lambda g: g.rows * g.dims)
        return sum(g.count * per(g) for lay in self.layouts() for g in lay.groups)

    def gains(self) -> list[list[float]]:
        """g per layer and block group (float64): a unit-variance alpha moves each
        weight about as far as the SIREN initialisation spread s_l."""
        out = []
        for bound, lay in zip(self.shape.init_bounds(), self.layouts()):
            s = bound / math.sqrt(3.0)
            if self.kind == BasisKind.IDENTITY:
                out.append([s for _ in lay.groups])
            elif self.kind == BasisKind.ORTHOGONAL:  # rows of d orthonormal columns have norm^2 d/m
                out.append([s * math.sqrt(g.rows / g.dims) for g in lay.groups])
            else:  # unit-variance entries: a row has norm^2 ~ d
                out.append([s / math.sqrt(g.dims) for g in lay.groups])
        return out

    def basis_block(self, layer: int, group: int, c0: int, c1: int) -> np.ndarray:
        """Blocks [c0, c1) of block group ``group`` of ``layer``: float32 (c1 - c0, rows, dims)."""
        g = self.layouts()[layer].groups[group]
        key = rng.stream_key(self.seed, rng.STREAM_BASIS, layer)
        if self.kind == BasisKind.ORTHOGONAL:
            return np.stack([rng.orthogonal(key, self.orthogonal_start(g, c), g.rows)[:, : g.dims]
                             for c in range(c0, c1)])
        per = g.rows * g.dims
        count = (c1 - c0) * per
        if self.kind == BasisKind.GAUSSIAN:
            vals = rng.gaussian_like(key, c0 * per, count)
        elif self.kind == BasisKind.TERNARY:
            vals = rng.ternary(key, c0 * per, count, self.density_byte)
        else:
            raise ValueError("the identity kind has no basis blocks")
        return vals.reshape(c1 - c0, g.rows, g.dims)

    def orthogonal_start(self, g: BlockGroup, c: int) -> int:
        """First word, in its layer's basis stream, of block ``c`` of group ``g`` (orthogonal kind).

        Block b of a layer uses words 3 * chunk_size * b onwards (3 m <= 3 chunk_size words).
        """
        return 3 * self.chunk_size * (g.first + c)

    def theta0(self, layer: int) -> np.ndarray:
        """Offset of ``layer``: float32 (size,); zeros in the original PRANC form."""
        lay = self.layouts()[layer]
        if not self.offset:
            return np.zeros(lay.size, dtype=np.float32)
        key = rng.stream_key(self.seed, rng.STREAM_INIT, layer)
        bound = np.float32(self.shape.init_bounds()[layer])
        return rng.uniform_pm1(key, 0, lay.size) * bound


@lru_cache(maxsize=64)
def _layouts(spec: SubspaceSpec) -> tuple[LayerLayout, ...]:
    return spec._compute_layouts()
