"""Adam for the grid model's fits, through torch's fused kernel without ``torch.optim``'s wrapper.

``torch.optim.Adam(fused=True)`` runs the same kernel, ``torch._fused_adam_``, but constructing the first
``torch.optim`` optimiser of a process imports ``torch._dynamo`` (0.9 s on the project's CPU machine, 2-3 % of
a default encode and 6 % of a ``fast`` one), and its wrapper adds about 40 us a step. This class keeps the
state and the call exactly as ``torch.optim.Adam(fused=True)`` does (state steps as float32 scalars, moments
zero-initialised, parameters without a gradient skipped), so a fit gives the same bits either way
(tests/test_grid.py checks it against ``torch.optim.Adam``).
"""
from __future__ import annotations

import torch


class FusedAdam:
    """The subset of ``torch.optim.Adam(fused=True, weight_decay=0, amsgrad=False)`` the fits use.

    ``param_groups``: dicts with ``params`` (tensors) and ``lr`` (float, may be changed between steps).
    """

    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param_groups = [{"params": list(g["params"]), "lr": float(g["lr"])} for g in groups]
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.state: dict[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def _state(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = self.state.get(p)
        if s is None:  # as torch.optim.Adam initialises a fused parameter's state, on its first step
            s = (torch.zeros_like(p, memory_format=torch.preserve_format),
                 torch.zeros_like(p, memory_format=torch.preserve_format),
                 torch.zeros((), dtype=torch.float32, device=p.device))
            self.state[p] = s
        return s

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of every parameter that has a gradient."""
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            by_device: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
            for p in params:
                by_device.setdefault((p.device, p.dtype), []).append(p)
            for ps in by_device.values():
                states = [self._state(p) for p in ps]
                steps = [s[2] for s in states]
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(ps, [p.grad for p in ps], [s[0] for s in states], [s[1] for s in states], [],
                                   steps, lr=g["lr"], beta1=self.beta1, beta2=self.beta2, weight_decay=0.0,
                                   eps=self.eps, amsgrad=False, maximize=False, grad_scale=None, found_inf=None)
