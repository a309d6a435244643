"""Context model of the latent grids: the order they are coded in and each symbol's context (format version 5).

A level's positions (row i, column j) fall into four sublattices, coded in
this order, each row-major over its own positions, coarsest level first:

- S0, i and j even. Context: |parent|, the magnitude of the latent of the
  next coarser level at (i // 2, j // 2) (0 on the coarsest level); mean 0.
- S1, i and j odd. Neighbours: the four diagonal ones, all in S0.
- S2, i even and j odd, then S3, i odd and j even. Neighbours: the four
  direct ones, all in S0 and S1.

In S1-S3 the predicted mean is mu = round half up of the mean of the
in-bounds neighbours, the coded symbol is q - mu, and the context is the sum
of the neighbours' magnitudes. The symbols form three passes with their own
models: S0, S1, and S2 with S3. A context c selects bucket
min(#{e in EDGES : e <= c}, B - 1), where B (1..MAX_BUCKETS) is chosen by the
encoder per level and pass and stored in the header; each bucket has its own
Laplace model (entropy.py).

Everything is integer arithmetic on integer tensors (values clipped to
+-CLIP first), so encoder and decoder compute the same contexts on any
machine or device. On four Kodak fits this coded the same latents in 5-28 %
fewer bits than one model per level (eval/ABLATIONS.md, section M).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .grid_decode import split  # noqa: F401 (views by slicing: the same for tensors)
from .shapes import CLIP, EDGES, MAX_BUCKETS, NEIGHBOURS, PASS_OF, PASSES, SUBLATTICES  # noqa: F401 (re-exported)


def sublattice_dims(height: int, width: int) -> list[tuple[int, int]]:
    """(rows, cols) of S0 .. S3 of an h x w level."""
    return [((height - r + 1) // 2, (width - c + 1) // 2) for r, c in SUBLATTICES]


def _padded(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x.unsqueeze(0), (1, 1, 1, 1)).squeeze(0)


def neighbours(subs: list[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum, sum of magnitudes and count of the in-bounds neighbours of every position of S_k (k = 1..3).

    subs: the level's sublattices S0 .. S3, any dtype (only S_k's shape and the
    neighbours' values are read). Returns three tensors of S_k's shape (count in subs' dtype).
    Neighbour (src, di, dj) of S_k[a, b] is S_src[a + di, b + dj], or nothing outside S_src.
    """
    rows, cols = subs[k].shape
    sources = {src for src, _, _ in NEIGHBOURS[k]}
    padded = {src: _padded(subs[src]) for src in sources}
    inside = {src: _padded(torch.ones_like(subs[src])) for src in sources}
    total = mags = count = 0
    for src, di, dj in NEIGHBOURS[k]:
        window = (slice(1 + di, 1 + di + rows), slice(1 + dj, 1 + dj + cols))
        v = padded[src][window]
        total = total + v
        mags = mags + v.abs()
        count = count + inside[src][window]
    return total, mags, count


def contexts(subs: list[torch.Tensor], parent: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and context of S_k's positions, from the sublattices already known (S0 .. S_{k-1}).

    subs: int64 sublattices S0 .. S3 of the level (:func:`split`; the values of S_k and
    later are not read); parent: int64 grid of the next coarser level (S0's shape), or
    None. Returns (mu, c), int64 of S_k's shape.
    """
    if k == 0:
        c = torch.zeros_like(subs[0]) if parent is None else parent.clamp(-CLIP, CLIP).abs()
        return torch.zeros_like(c), c
    # int32 halves the memory of the big levels; with |values| <= 2^24, every sum below fits
    known = [s.clamp(-CLIP, CLIP).to(torch.int32) if i < k else s for i, s in enumerate(subs)]
    total, mags, count = neighbours(known, k)
    total, count = total.long(), count.long().clamp_min(1)
    mu = torch.div(2 * total + count, 2 * count, rounding_mode="floor")  # round half up of total / count
    return mu, mags.long()


# bucket of every context 0 .. EDGES[-1] (a table lookup is 5x faster than bucketize;
# torch.take 1.4x faster than indexing)
_BUCKET_OF = torch.bucketize(torch.arange(EDGES[-1] + 1), torch.tensor(EDGES), right=True)


def buckets(c: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Bucket of each context c >= 0: #edges <= c, capped at n_buckets - 1 (int64, c's shape)."""
    return torch.take(_BUCKET_OF, c.clamp_max(EDGES[-1])).clamp_max(n_buckets - 1)
