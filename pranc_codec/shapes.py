"""The shapes a ``.prc`` header fixes: the networks, the context model's passes and buckets, the loop filter's taps.

Plain Python, no torch, so that the container (``bitstream.py``) reads and
checks a header, and ``pranc info`` prints one, without loading torch (about
2 s). The modules that compute with these shapes re-export them: ``inr``
(:class:`SirenShape`), ``latent`` (:class:`GridShape`), ``context`` (the
coding order and buckets) and ``loop_filter`` (taps, shift and counts).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class SirenShape:
    """Geometry of the network; fully determined by header fields."""

    width: int
    hidden_layers: int
    channels: int
    omega0: float

    def layer_dims(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of each linear layer, input first."""
        dims = [(2, self.width)]
        dims += [(self.width, self.width)] * (self.hidden_layers - 1)
        dims.append((self.width, self.channels))
        return dims

    def layer_sizes(self) -> list[int]:
        """Parameters per layer (weight matrix + bias)."""
        return [fi * fo + fo for fi, fo in self.layer_dims()]

    @property
    def num_params(self) -> int:
        return sum(self.layer_sizes())

    def init_bounds(self) -> list[float]:
        """Half-width of SIREN's uniform initialisation, per layer."""
        bounds = []
        for i, (fan_in, _) in enumerate(self.layer_dims()):
            if i == 0:
                bounds.append(1.0 / fan_in)
            else:
                bounds.append(math.sqrt(6.0 / fan_in) / self.omega0)
        return bounds


@dataclass(frozen=True)
class GridShape:
    """Geometry of the latent-grid network; fully determined by header fields."""

    levels: int  # latent grids, finest (full resolution) first
    hidden: int  # MLP width
    hidden_layers: int  # ReLU layers of the MLP
    channels: int

    def level_dims(self, height: int, width: int) -> list[tuple[int, int]]:
        """(rows, cols) of every latent grid."""
        return [(-(-height // 2 ** l), -(-width // 2 ** l)) for l in range(self.levels)]

    def num_latents(self, height: int, width: int) -> int:
        return sum(h * w for h, w in self.level_dims(height, width))

    def layer_dims(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of each linear layer of the MLP, input first."""
        dims = [(self.levels, self.hidden)] + [(self.hidden, self.hidden)] * (self.hidden_layers - 1)
        return dims + [(self.hidden, self.channels)]

    def layer_sizes(self) -> list[int]:
        """Parameters per layer: weight matrix (fan_out x fan_in, row-major), then bias."""
        return [fi * fo + fo for fi, fo in self.layer_dims()]

    @property
    def num_params(self) -> int:
        return sum(self.layer_sizes())


# The context model (context.py): the order a level's latents are coded in, and the buckets of their contexts.
PASSES = 3  # model groups per level: S0, S1, S2 + S3
SUBLATTICES = ((0, 0), (1, 1), (0, 1), (1, 0))  # (row, column) offset of S0 .. S3
PASS_OF = (0, 1, 2, 2)
EDGES = (1, 2, 3, 4, 6, 8, 12, 16, 24)  # bucket edges on the context (sum of neighbour magnitudes)
MAX_BUCKETS = len(EDGES) + 1
CLIP = 1 << 24  # latents are clipped to +-CLIP for contexts: sums of four fit in int32

# Neighbours of S1 .. S3 as (sublattice, row shift, column shift) in sublattice
# coordinates: S1[a, b] = q[2a+1, 2b+1] has diagonal neighbours S0[a, b], S0[a, b+1],
# S0[a+1, b], S0[a+1, b+1], and so on.
NEIGHBOURS = {
    1: ((0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)),
    2: ((1, -1, 0), (1, 0, 0), (0, 0, 0), (0, 0, 1)),
    3: ((0, 0, 0), (0, 1, 0), (1, 0, -1), (1, 0, 0)),
}


# The loop filter (loop_filter.py): the shapes a file may declare and the number of coefficients they take.
TAPS = (3, 5, 7)  # filter sides a file may declare (0: no filter)
MAX_SHIFT = 16
MAX_COEF = 1 << 24  # |q| of a valid file; keeps every sum far below 2^53
HEADER_BITS = 8 * 7  # the filter's header fields: taps, symmetric, shift, its model (bitstream._FILTER)


@lru_cache(maxsize=None)
def offsets(taps: int, symmetric: bool) -> tuple[tuple[int, int], ...]:
    """(dy, dx) of one channel's features: all taps^2 offsets row-major, or for a symmetric filter the
    centre then one offset of each pair (d, -d), the one that comes later in row-major order."""
    r = taps // 2
    every = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    return tuple(every) if not symmetric else ((0, 0),) + tuple(d for d in every if d > (0, 0))


def num_features(channels: int, taps: int, symmetric: bool) -> int:
    """Coefficients of one output channel: the offsets of every input channel, then the constant."""
    return channels * len(offsets(taps, symmetric)) + 1


def num_coefs(channels: int, taps: int, symmetric: bool) -> int:
    return 0 if taps == 0 else channels * num_features(channels, taps, symmetric)
