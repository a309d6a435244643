"""Context model of the latent grids: the order they are coded in and each symbol's context (format version 5).

The grids are coded coarsest level first, each level in three passes over
its positions (row i, column j):

- pass 0: i and j even. Context: |parent|, the magnitude of the latent of
  the next coarser level at (i // 2, j // 2) (0 on the coarsest level);
  mean 0.
- pass 1: i and j odd. Neighbours: the four diagonal ones, all of pass 0.
- pass 2: i + j odd. Neighbours: the four direct ones, all of passes 0-1.

In passes 1-2 the predicted mean is mu = round half up of the mean of the
in-bounds neighbours, the coded symbol is q - mu, and the context is the sum
of the neighbours' magnitudes. A context c selects bucket
min(#{e in EDGES : e <= c}, B - 1), where B (1..MAX_BUCKETS) is chosen by the
encoder per level and pass and stored in the header; each bucket has its own
Laplace model (entropy.py).

Everything is integer arithmetic on int64 tensors (values clipped to
+-CLIP first), so encoder and decoder compute the same contexts on any
machine or device. On four Kodak fits this coded the same latents in 5-28 %
fewer bits than one model per level (eval/ABLATIONS.md, section M).
"""
from __future__ import annotations

import torch

PASSES = 3
EDGES = (1, 2, 3, 4, 6, 8, 12, 16, 24)  # bucket edges on the context (sum of neighbour magnitudes)
MAX_BUCKETS = len(EDGES) + 1
CLIP = 1 << 24  # latents are clipped to +-CLIP for contexts: sums of four stay far inside int64

_DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))
_DIRECT = ((-1, 0), (1, 0), (0, -1), (0, 1))


def pass_mask(height: int, width: int, p: int) -> torch.Tensor:
    """Bool (height, width): the positions coded in pass ``p``."""
    i = torch.arange(height).view(-1, 1) % 2
    j = torch.arange(width).view(1, -1) % 2
    if p == 0:
        return (i == 0) & (j == 0)
    if p == 1:
        return (i == 1) & (j == 1)
    return (i + j) == 1


def neighbour_sums(values: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum, sum of magnitudes and count of the in-bounds neighbours of pass ``p`` (1 or 2), at every position.

    values: (h, w), any dtype; positions outside the grid contribute nothing.
    Returns three (h, w) tensors (count as values' dtype).
    """
    h, w = values.shape
    padded = torch.nn.functional.pad(values.unsqueeze(0), (1, 1, 1, 1)).squeeze(0)
    ones = torch.nn.functional.pad(torch.ones_like(values).unsqueeze(0), (1, 1, 1, 1)).squeeze(0)
    total = torch.zeros_like(values)
    mags = torch.zeros_like(values)
    count = torch.zeros_like(values)
    for di, dj in (_DIAGONAL if p == 1 else _DIRECT):
        window = (slice(1 + di, 1 + di + h), slice(1 + dj, 1 + dj + w))
        total += padded[window]
        mags += padded[window].abs()
        count += ones[window]
    return total, mags, count


def contexts(known: torch.Tensor, parent: torch.Tensor | None, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and context of pass ``p``'s positions (row-major), from the values already known.

    known: int64 (h, w), the level's latents of earlier passes (others are ignored);
    parent: int64 (ceil(h / 2), ceil(w / 2)) or larger, the next coarser level, or None.
    Returns (mu, c), int64 (n_p,) each.
    """
    h, w = known.shape
    mask = pass_mask(h, w, p)
    if p == 0:
        if parent is None:
            c = torch.zeros(h, w, dtype=torch.int64)
        else:
            c = parent.clamp(-CLIP, CLIP).abs().repeat_interleave(2, 0).repeat_interleave(2, 1)[:h, :w]
        c = c[mask]
        return torch.zeros_like(c), c
    earlier = pass_mask(h, w, 0) | (pass_mask(h, w, 1) if p == 2 else torch.zeros_like(mask))
    vals = torch.where(earlier, known.clamp(-CLIP, CLIP), torch.zeros_like(known))
    total, mags, count = neighbour_sums(vals, p)
    total, mags, count = total[mask], mags[mask], count[mask].clamp_min(1)
    mu = torch.div(2 * total + count, 2 * count, rounding_mode="floor")  # round half up of total / count
    return mu, mags


def buckets(c: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Bucket of each context: #edges <= c, capped at n_buckets - 1 (int64)."""
    edges = torch.tensor(EDGES, dtype=c.dtype)
    return torch.bucketize(c, edges, right=True).clamp_max(n_buckets - 1)
