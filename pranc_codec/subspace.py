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

The layout and the blocks' values come from ``basis.py`` (numpy); this module
materializes them as torch tensors for fitting (:class:`Subspace`) and decoding
(:func:`reconstruct`).
"""
from __future__ import annotations

import numpy as np
import torch

from . import rng
from .basis import BlockGroup, SubspaceSpec
from .config import BasisKind

class Subspace(torch.nn.Module):
    """Materialized basis for fitting: alpha (k,) -> per-layer weight vectors.

    Holds every basis block on ``device`` (float32); use :func:`reconstruct`
    for memory-bounded decoding. Per layer, a group of several equal blocks is
    one batched product; the single blocks that follow it (the power-of-two
    remainder of an orthogonal layout) are merged, gains folded in, into one
    small dense block-diagonal matrix, so a step costs two products per layer
    rather than one per block.
    """

    def __init__(self, spec: SubspaceSpec, device: torch.device | str = "cpu"):
        super().__init__()
        self.spec = spec
        self.layouts = spec.layouts()
        # per layer, in parameter order: (op, buffer name, gain, coefficients), op one of
        # "identity" (scaled coefficients), "fast" (orthogonal blocks as Hadamard
        # transforms), "blocks" (materialized blocks) or "dense" (merged single blocks,
        # gains folded in)
        self.ops: list[list[tuple[str, str, float, int]]] = []
        for i, (lay, gains) in enumerate(zip(self.layouts, spec.gains())):
            self.register_buffer(f"theta0_{i}", torch.from_numpy(spec.theta0(i)).to(device))
            ops: list[tuple[str, str, float, int]] = []
            if spec.kind == BasisKind.IDENTITY:
                ops.append(("identity", "", gains[0], lay.num_coefs))
            else:
                singles = [(j, g) for j, g in enumerate(lay.groups) if g.count == 1]
                for j, g in enumerate(lay.groups):
                    if spec.kind == BasisKind.ORTHOGONAL and g.count > 1:
                        name = f"fwht_{i}_{j}"
                        self._register_factors(name, spec, i, g, device)
                        ops.append(("fast", name, gains[j], g.count * g.dims))
                    elif g.count > 1 or len(singles) == 1:
                        name = f"basis_{i}_{j}"
                        self.register_buffer(name, torch.from_numpy(spec.basis_block(i, j, 0, g.count)).to(device))
                        ops.append(("blocks", name, gains[j], g.count * g.dims))
                    elif j == singles[0][0]:  # first of several single blocks: build the merged one
                        name = f"dense_{i}"
                        self.register_buffer(name, torch.from_numpy(_merged_singles(spec, i, singles, gains)).to(device))
                        ops.append(("dense", name, 1.0, sum(h.dims for _, h in singles)))
            self.ops.append(ops)

    def _register_factors(self, name: str, spec: SubspaceSpec, layer: int, g: BlockGroup,
                          device: torch.device | str) -> None:
        """Signs and permutations of ``g.count`` orthogonal blocks, for :meth:`_orthogonal`."""
        key = rng.stream_key(spec.seed, rng.STREAM_BASIS, layer)
        f = [rng.orthogonal_factors(key, spec.orthogonal_start(g, c), g.rows) for c in range(g.count)]
        for n, idx in (("d1", 0), ("d2", 1), ("perm", 2)):
            t = torch.from_numpy(np.stack([x[idx] for x in f]))
            self.register_buffer(f"{name}_{n}", (t if n == "perm" else t.float()).to(device))
        a = 1 << ((g.rows.bit_length() - 1 + 1) // 2)  # H_m = H_a (x) H_b, a * b = m
        for n, size in (("ha", a), ("hb", g.rows // a)):
            h = rng.hadamard_matrix(size).astype(np.float32)
            self.register_buffer(f"{name}_{n}", torch.from_numpy(h).to(device))

    def _hadamard(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """H_m x over the last axis of x (..., m), as H_a X H_b on x viewed (..., a, b)."""
        ha, hb = getattr(self, f"{name}_ha"), getattr(self, f"{name}_hb")
        y = ha @ x.reshape(*x.shape[:-1], ha.shape[0], hb.shape[0]) @ hb
        return y.reshape(x.shape)

    def _orthogonal(self, name: str, a: torch.Tensor) -> torch.Tensor:
        """Q a for every block without forming Q: a (T, c, d) -> (T, c, m), Q = H D2 P H D1 / m.

        O(m sqrt(m)) per block instead of O(m^2) for a dense product, which at
        1 bpp was half of every fitting step. The decoder uses the exact
        materialized blocks (``reconstruct``); the two agree to float32 rounding.
        """
        d1, d2, perm = (getattr(self, f"{name}_{n}") for n in ("d1", "d2", "perm"))
        m = d1.shape[1]
        if a.shape[-1] < m:  # expansion > 1: the first d columns of Q
            a = torch.nn.functional.pad(a, (0, m - a.shape[-1]))
        x = self._hadamard(name, a * d1)
        x = torch.gather(x, 2, perm.expand(x.shape[0], -1, -1)) * d2
        return self._hadamard(name, x) / m

    def forward(self, alpha: torch.Tensor) -> list[torch.Tensor]:
        """alpha (k,) float32 -> per-layer flat weights [(tiles, n_l)]."""
        thetas, pos = [], 0
        T = self.spec.tiles
        for i, lay in enumerate(self.layouts):
            a = alpha[pos: pos + T * lay.num_coefs].view(T, lay.num_coefs)
            pos += T * lay.num_coefs
            parts, c = [], 0
            for op, name, gain, k in self.ops[i]:
                ak = a[:, c: c + k]
                c += k
                if op == "identity":
                    parts.append(gain * ak)
                elif op == "dense":
                    parts.append(ak @ getattr(self, name).t())
                elif op == "fast":
                    count = getattr(self, f"{name}_d1").shape[0]
                    parts.append(gain * self._orthogonal(name, ak.reshape(T, count, -1)).reshape(T, -1))
                else:
                    B = getattr(self, name)
                    ag = ak.reshape(T, B.shape[0], B.shape[2])
                    parts.append(gain * torch.einsum("cmd,tcd->tcm", B, ag).reshape(T, -1))
            delta = (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))[:, : lay.size]
            thetas.append(getattr(self, f"theta0_{i}") + delta)
        return thetas


def _merged_singles(spec: SubspaceSpec, layer: int, singles: list[tuple[int, BlockGroup]],
                    gains: list[float]) -> np.ndarray:
    """Single blocks ``singles`` of ``layer`` as one block-diagonal float32 matrix, gains folded in."""
    dense = np.zeros((sum(g.rows for _, g in singles), sum(g.dims for _, g in singles)), dtype=np.float64)
    r = c = 0
    for j, g in singles:
        dense[r: r + g.rows, c: c + g.dims] = gains[j] * spec.basis_block(layer, j, 0, 1)[0]
        r, c = r + g.rows, c + g.dims
    return dense.astype(np.float32)


def reconstruct(spec: SubspaceSpec, alpha: np.ndarray, max_entries: int = 1 << 22) -> list[torch.Tensor]:
    """Decoder-side weights in float64, generating the basis block by block.

    alpha: float64 (k,). Peak extra memory is about ``max_entries`` basis values;
    each block of the basis is generated once and applied to every tile.
    Returns per-layer flat float64 weights [(tiles, n_l)].
    """
    thetas, pos = [], 0
    T = spec.tiles
    for i, (lay, gains) in enumerate(zip(spec.layouts(), spec.gains())):
        a = alpha[pos: pos + T * lay.num_coefs].reshape(T, lay.num_coefs)
        pos += T * lay.num_coefs
        if spec.kind == BasisKind.IDENTITY:
            delta = gains[0] * a
        else:
            parts, c = [], 0
            for j, (g, gain) in enumerate(zip(lay.groups, gains)):
                ag = a[:, c: c + g.count * g.dims].reshape(T, g.count, g.dims)
                c += g.count * g.dims
                d = np.empty((T, g.count, g.rows), dtype=np.float64)
                step = max(1, max_entries // (g.rows * g.dims))
                for c0 in range(0, g.count, step):
                    c1 = min(g.count, c0 + step)
                    B = spec.basis_block(i, j, c0, c1).astype(np.float64)
                    d[:, c0:c1] = np.einsum("cmd,tcd->tcm", B, ag[:, c0:c1])
                parts.append(gain * d.reshape(T, -1))
            delta = np.concatenate(parts, axis=1)[:, : lay.size]
        theta = spec.theta0(i).astype(np.float64)[None] + delta
        thetas.append(torch.from_numpy(theta))
    return thetas
