"""The PRANC reparametrization: network weights from a seed and a coefficient vector.

For layer ``l`` with ``n_l`` parameters (weights then bias, row-major):

    theta_l = theta0_l + g_l * blockdiag(B_l,1 .. B_l,C) @ alpha_l

- the layer is cut into ``C_l`` chunks of ``m_l`` parameters (the last one padded);
- each chunk has its own ``m_l x d_l`` basis block with unit-variance entries
  drawn from the counter-based generator (``rng.py``), so the basis is produced
  chunk by chunk and never has to be in memory whole;
- ``g_l = s_l / sqrt(d_l)`` with ``s_l`` the std of the layer's SIREN init, so a
  unit-variance alpha moves the weights about as far as the initialisation spread;
- ``theta0_l`` is the SIREN initialisation drawn from the seed (random-subspace
  form) or zero (original PRANC form).

With T tiles (``tiling.py``) every tile has its own alpha and shares B and
theta0. Coefficients are ordered layer-major: group l holds layer l of tile 0,
then of tile 1, and so on.

The IDENTITY kind has no basis (``B = I``, ``g_l = s_l``): coefficients are the
(scaled) weights, which is the direct-weight INR baseline with the same coder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from . import rng
from .config import BasisKind
from .inr import SirenShape

EXPANSION_ONE = 256  # expansion is stored as a fixed-point integer: n/k * 256


@dataclass(frozen=True)
class LayerLayout:
    """Chunking of one layer: ``chunks`` blocks of ``rows`` parameters x ``dims`` coefficients."""

    size: int
    chunks: int
    rows: int
    dims: int

    @property
    def num_coefs(self) -> int:
        return self.chunks * self.dims


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

    def _compute_layouts(self) -> tuple[LayerLayout, ...]:
        out = []
        for n in self.shape.layer_sizes():
            if self.kind == BasisKind.IDENTITY:
                out.append(LayerLayout(n, 1, n, n))
                continue
            chunks = -(-n // self.chunk_size)
            rows = -(-n // chunks)
            # integer rounding so every machine derives the same d_l
            dims = max(1, (rows * EXPANSION_ONE + self.expansion_fp // 2) // self.expansion_fp)
            out.append(LayerLayout(n, chunks, rows, min(dims, rows)))
        return tuple(out)

    @property
    def num_coefs(self) -> int:
        return sum(self.group_sizes())

    @property
    def basis_entries(self) -> int:
        """Random numbers needed to build the whole basis (bounds decode work)."""
        if self.kind == BasisKind.IDENTITY:
            return 0
        return sum(lay.chunks * lay.rows * lay.dims for lay in self.layouts())

    def gains(self) -> list[float]:
        """g_l per layer (float64)."""
        out = []
        for bound, lay in zip(self.shape.init_bounds(), self.layouts()):
            s = bound / math.sqrt(3.0)
            out.append(s if self.kind == BasisKind.IDENTITY else s / math.sqrt(lay.dims))
        return out

    def basis_block(self, layer: int, c0: int, c1: int) -> np.ndarray:
        """Basis blocks of chunks [c0, c1) of ``layer``: float32 (c1 - c0, rows, dims)."""
        lay = self.layouts()[layer]
        per = lay.rows * lay.dims
        key = rng.stream_key(self.seed, rng.STREAM_BASIS, layer)
        count = (c1 - c0) * per
        if self.kind == BasisKind.GAUSSIAN:
            vals = rng.gaussian_like(key, c0 * per, count)
        elif self.kind == BasisKind.TERNARY:
            vals = rng.ternary(key, c0 * per, count, self.density_byte)
        else:
            raise ValueError("the identity kind has no basis blocks")
        return vals.reshape(c1 - c0, lay.rows, lay.dims)

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


class Subspace(torch.nn.Module):
    """Materialized basis for fitting: alpha (k,) -> per-layer weight vectors.

    Holds every basis block on ``device`` (float32); use :func:`reconstruct`
    for memory-bounded decoding.
    """

    def __init__(self, spec: SubspaceSpec, device: torch.device | str = "cpu"):
        super().__init__()
        self.spec = spec
        self.layouts = spec.layouts()
        self.gains = spec.gains()
        for i, lay in enumerate(self.layouts):
            self.register_buffer(f"theta0_{i}", torch.from_numpy(spec.theta0(i)).to(device))
            if spec.kind != BasisKind.IDENTITY:
                self.register_buffer(f"basis_{i}", torch.from_numpy(spec.basis_block(i, 0, lay.chunks)).to(device))

    def split(self, alpha: torch.Tensor) -> list[torch.Tensor]:
        """alpha (k,) -> per-layer views (tiles, chunks, dims)."""
        out, pos = [], 0
        T = self.spec.tiles
        for lay in self.layouts:
            out.append(alpha[pos: pos + T * lay.num_coefs].view(T, lay.chunks, lay.dims))
            pos += T * lay.num_coefs
        return out

    def forward(self, alpha: torch.Tensor) -> list[torch.Tensor]:
        """alpha (k,) float32 -> per-layer flat weights [(tiles, n_l)]."""
        thetas = []
        T = self.spec.tiles
        for i, (a, lay, g) in enumerate(zip(self.split(alpha), self.layouts, self.gains)):
            t0 = getattr(self, f"theta0_{i}")
            if self.spec.kind == BasisKind.IDENTITY:
                delta = a.reshape(T, -1)
            else:
                B = getattr(self, f"basis_{i}")
                delta = torch.einsum("cmd,tcd->tcm", B, a).reshape(T, -1)[:, : lay.size]
            thetas.append(t0 + g * delta)
        return thetas


def reconstruct(spec: SubspaceSpec, alpha: np.ndarray, max_entries: int = 1 << 22) -> list[torch.Tensor]:
    """Decoder-side weights in float64, generating the basis chunk by chunk.

    alpha: float64 (k,). Peak extra memory is about ``max_entries`` basis values;
    each block of the basis is generated once and applied to every tile.
    Returns per-layer flat float64 weights [(tiles, n_l)].
    """
    thetas, pos = [], 0
    T = spec.tiles
    for i, (lay, g) in enumerate(zip(spec.layouts(), spec.gains())):
        a = alpha[pos: pos + T * lay.num_coefs].reshape(T, lay.chunks, lay.dims)
        pos += T * lay.num_coefs
        if spec.kind == BasisKind.IDENTITY:
            delta = a.reshape(T, -1)
        else:
            delta = np.empty((T, lay.chunks, lay.rows), dtype=np.float64)
            step = max(1, max_entries // (lay.rows * lay.dims))
            for c0 in range(0, lay.chunks, step):
                c1 = min(lay.chunks, c0 + step)
                B = spec.basis_block(i, c0, c1).astype(np.float64)
                delta[:, c0:c1] = np.einsum("cmd,tcd->tcm", B, a[:, c0:c1])
            delta = delta.reshape(T, -1)[:, : lay.size]
        theta = spec.theta0(i).astype(np.float64)[None] + g * delta
        thetas.append(torch.from_numpy(theta))
    return thetas
