"""The machine's speed, measured by a fixed reference workload, so that encode times compare between runs.

A shared virtual machine's speed drifts: on the project's 2-core AMD EPYC the same encode (the same bytes) took
58.4 s in one hour and 33.8 s half an hour later (ABLATIONS.md BM). A raw time therefore says as much about the
hour as about the codec. The harness times this workload just before and just after each neural task, in the
same worker process, and records, for a task that ran on the CPU (the workload times the CPU; a CUDA task keeps
its raw times only):

- ``ref_s``: the workload's mean seconds around the task;
- ``speed``: :data:`REFERENCE_SECONDS` / ``ref_s``, the machine's speed during the task relative to the
  reference machine in a quiet hour (1: as fast; 0.5: a task takes twice as long);
- the task's times multiplied by ``speed``: what they would have been at the reference speed.

The workload is a fitting step in miniature (a bilinear latent sample, a 7-32-32-3 ReLU MLP over 16,384 pixels in
the fit's feature-major layout, its backward and an Adam step, one thread), written with torch primitives only:
it must not change when the codec's code does, or runs could not be compared. Its inputs are closed-form
functions of their index, not random draws. Checked in session 58 (ABLATIONS.md BN): an encode of kodim09 at
0.125 bpp pinned to one core took 26.1 s alone and 56.3 s sharing that core with a busy loop; at the reference
speed 26.7 and 28.0 s.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")

# The workload's seconds on the reference machine (2-core AMD EPYC under KVM, torch 2.14.1, one thread), in
# a quiet hour: the median of 60 measurements on 2026-12-07 (0.089-0.159 s: the machine's speed moves by +-20 % over
# seconds even when nothing else runs on it).
REFERENCE_SECONDS = 0.113
REFERENCE_MACHINE = "the 2-core AMD EPYC (KVM) in a quiet hour"


@dataclass(frozen=True)
class ReferenceWorkload:
    """Shapes of the reference workload (of the order of a Kodak fit's step); changing them changes
    :data:`REFERENCE_SECONDS`."""

    # One 100-step run varies by 11 % (coefficient of variation) on the reference machine when nothing else runs,
    # the median of five 20-step runs by 6 % (ten of each, session 58): the machine's speed itself moves from
    # second to second, which a median of short runs smooths better than one long run.
    steps: int = 20  # timed steps a run (~5 ms each on the reference machine)
    runs: int = 5  # the result is the median run
    warmup: int = 5  # untimed steps first: allocator and caches
    pixels: int = 16384  # twice a Kodak fit's batch (GridConfig.batch_pixels)
    width: int = 32  # the MLP's hidden width
    levels: int = 7  # MLP inputs: latent levels
    grid: tuple[int, int] = (256, 384)  # the sampled latent level (h, w)


def reference_seconds(work: ReferenceWorkload = ReferenceWorkload()) -> float:
    """Seconds ``work.steps`` steps of the workload take now (the median of ``work.runs`` runs), on one torch
    thread (the caller's setting is kept)."""
    import torch
    import torch.nn.functional as F

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the encoder's fit runs on one thread (FitConfig.threads)
    try:
        n, c = work.pixels, work.levels
        idx = torch.arange(n, dtype=torch.float32)
        feats = torch.sin(torch.arange(n * (c - 1), dtype=torch.float32) * 0.618).view(c - 1, n)
        target = torch.cos(torch.arange(3 * n, dtype=torch.float32) * 0.377).view(3, n) * 0.3 + 0.5
        gh, gw = work.grid
        grid = torch.sin(torch.arange(gh * gw, dtype=torch.float32) * 0.1).view(1, 1, gh, gw).requires_grad_()
        loc = torch.stack([torch.sin(idx * 0.31), torch.cos(idx * 0.17)], 1).view(1, 1, n, 2)
        dims = [c, work.width, work.width, 3]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            w = (torch.sin(torch.arange(a * b, dtype=torch.float32)) * a ** -0.5).view(b, a).requires_grad_()
            layers.append((w, torch.zeros(b, requires_grad=True)))
        params = [grid] + [p for wb in layers for p in wb]
        # Adam written out: torch.optim's first step imports torch._dynamo (880 modules, +180 MB of resident
        # memory), which the harness would then count in the task's peak memory
        moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]

        def step() -> None:
            sample = F.grid_sample(grid, loc, mode="bilinear", padding_mode="border", align_corners=False)
            h = torch.cat([feats, sample.view(1, n)], 0)
            for w, b in layers[:-1]:
                h = torch.addmm(b[:, None], w, h).relu_()
            w, b = layers[-1]
            loss = F.mse_loss(torch.addmm(b[:, None], w, h), target)
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g, (m, v) in zip(params, grads, moments):
                    m.mul_(0.9).add_(g, alpha=0.1)
                    v.mul_(0.999).addcmul_(g, g, value=0.001)
                    p.addcdiv_(m, v.sqrt().add_(1e-8), value=-1e-3)

        for _ in range(work.warmup):
            step()
        times = []
        for _ in range(work.runs):
            t0 = time.perf_counter()
            for _ in range(work.steps):
                step()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        torch.set_num_threads(threads)


def framed(task: Callable[[], T], measure: Callable[[], float] = reference_seconds) -> tuple[T, float]:
    """``task()``'s result and ``ref_s``, the workload's mean seconds just before and just after it (``measure``:
    how the workload is timed, :func:`reference_seconds` in this process by default)."""
    before = measure()
    out = task()
    return out, 0.5 * (before + measure())


def speed_of(ref_s: float) -> float:
    """The machine's speed relative to the reference machine, from the workload's seconds ``ref_s``."""
    return REFERENCE_SECONDS / ref_s
