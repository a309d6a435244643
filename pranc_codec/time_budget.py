"""An encode's time budget (``pranc encode --time``): the fit's steps and the rounding's sweeps cut to a deadline.

The preset sets the most work a picture's encode does; under a budget the fit stops short of its steps and the
rounding short of its sweeps wherever the deadline would otherwise pass. Both are decided from times measured
while the picture encodes, so the file depends on how fast the machine ran (it still decodes to the same pixels
everywhere). The step count is chosen while the fit is in its first phase, which does not depend on it (full
learning rate, full-width noise: ``grid_fit.fixed_until``), so a budgeted fit of N steps is the fit that N
steps asked for outright would make, and a budgeted rounding of S sweeps that of S sweeps but for the MLP refits
it skipped where they would not fit (``Budget.plan_sweep``): the same file, its counts chosen by the clock.

What the time after the fit will be is estimated in fitting steps of the picture being fitted
(``TimeConfig.tail_steps`` and ``sweep_steps``), so that the estimate follows the machine's speed as measured by
the fit itself; each sweep's own time then replaces the estimate of the next.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from .config import TimeConfig

Clock = Callable[[], float]


class SweepPlan(NamedTuple):
    """How a rounding sweep runs under a time budget (:meth:`Budget.plan_sweep`)."""

    final: bool  # the last sweep (with the rate's rails)
    refit: bool  # the MLP refitted to the moved latents before it (a later sweep's; the first never is)
    skip: bool = False  # not made at all: the sweeps before it took longer than planned (the rounding ends)


@dataclass
class Budget:
    """A deadline for one network fit and what came after it, and the plan made against it.

    deadline: seconds on ``clock`` (``time.perf_counter`` unless a test gives its own); pixels: the picture's.
    ``step_s``: seconds a fitting step as last measured (None before the first plan); ``sweeps``: the rounding
    sweeps the plan set time aside for (None before the first plan)."""

    deadline: float
    cfg: TimeConfig
    pixels: int
    clock: Clock = time.perf_counter
    step_s: float | None = None
    step_scale: float = 1.0  # a full-model fitting step over one of this fit (plan_fit)
    sweeps: int | None = None
    sweep_times: list[float] = field(default_factory=list)  # seconds of each rounding sweep so far
    refitted: list[bool] = field(default_factory=list)  # whether the MLP was refitted before each sweep planned
    _mark: float = 0.0  # when the last sweep started
    ended: int | None = None  # the sweeps made, where plan_sweep ended them before the preset's count

    @classmethod
    def start(cls, seconds: float | None, cfg: TimeConfig, pixels: int, clock: Clock = time.perf_counter
              ) -> "Budget | None":
        """A budget of ``seconds`` from now, or None where there is none."""
        return None if seconds is None else cls(clock() + seconds, cfg, pixels, clock)

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.deadline - self.clock()

    def _size(self) -> float:
        return (self.pixels / self.cfg.ref_pixels) ** self.cfg.size_exponent

    def _steps_s(self, steps: float) -> float:
        """Seconds of ``steps`` full-model fitting steps of this picture's size, at the measured step."""
        return (self.step_s or 0.0) * self.step_scale * self._size() * steps

    def after_fit(self, sweeps: int) -> float:
        """Seconds estimated for everything after the fit with ``sweeps`` rounding sweeps, at the measured step."""
        c = self.cfg
        sweeping = c.first_sweep_steps + c.sweep_steps * (sweeps - 1) if sweeps > 0 else 0.0
        return self._steps_s(c.pass_steps + sweeping + c.tail_steps)

    def plan_fit(self, done: int, step_s: float, least: int, most: int, sweeps: int, step_scale: float = 1.0) -> int:
        """The fit's step count after ``done`` steps, a step taking ``step_s`` seconds: as many as the time left
        holds once the time after the fit is set aside, between ``least`` (no fewer than the schedule allows
        after ``done``, and than ``cfg.min_steps``) and ``most`` (the preset's). Also plans the rounding's
        sweeps whose time it sets aside (``self.sweeps``): the preset's ``sweeps``, or ``cfg.few_sweeps`` where
        the steps would be fewer than ``cfg.few_sweeps_below`` with them (the rounding then makes as many of the
        preset's as the time left holds, :meth:`plan_sweep`). ``step_scale``: a step of the full model over one
        of this fit, the time after the fit being estimated in full-model steps (a fit without the finest level
        is cheaper a step, ``GridConfig.coarse_step_factor``, where the rounding after it is not)."""
        self.step_s, self.step_scale = step_s, step_scale
        least = max(least, self.cfg.min_steps)
        usable = self.remaining() * (1.0 - self.cfg.margin)

        def steps_with(s: int) -> int:
            return done + math.floor((usable - self.after_fit(s)) / step_s + 1e-6)  # 1e-6: float noise

        planned, self.sweeps = steps_with(sweeps), sweeps
        if planned < self.cfg.few_sweeps_below and self.cfg.few_sweeps < sweeps:
            self.sweeps = self.cfg.few_sweeps
            planned = steps_with(self.sweeps)
        return max(least, min(most, planned))

    def plan_sweep(self, sweep: int) -> SweepPlan:
        """Rounding sweep ``sweep`` (0-based), called as it starts (which times the one before): whether the MLP is
        refitted before it, whether it is the last, and whether it is skipped (ABLATIONS.md BQ2). A later sweep is
        refitted where the time left, less its margin, holds it with its refit and the tail (the final MLP refit,
        the choices after the rounding, the file's measurement); else it runs bare, priced against the MLP it has,
        in about the first sweep's time (a bare second sweep bought 88 % of a refitted one's gain in 40 % of its
        time). It is the last unless the time left also holds a bare sweep after it. It is skipped, the rounding
        ending before it, where the time left no longer holds even it bare and the tail: the first sweep's
        decision rests on the model alone, and two encodes at a time a first sweep took up to 1.9 x the model.
        ``ended`` keeps the sweeps made where they end before the preset's count. (The count the fit's plan set
        time aside for does not bound it: time the plan kept in hand goes to the preset's further sweeps.)"""
        now = self.clock()
        if sweep:
            self.sweep_times.append(now - self._mark)
        self._mark = now
        c = self.cfg
        refitted = [t for t, r in zip(self.sweep_times, self.refitted) if r]
        bare_times = [t for t, r in zip(self.sweep_times, self.refitted) if not r]
        # a sweep with its refit: the last one measured, else the estimate scaled by what the first one took
        if refitted:
            full = refitted[-1]
        elif self.sweep_times:
            full = self.sweep_times[0] * c.sweep_steps / c.first_sweep_steps
        else:
            full = self._steps_s(c.sweep_steps)
        bare = bare_times[-1] if bare_times else self._steps_s(c.first_sweep_steps)
        # the tail in proportion to the sweeps' measured time once there is one (the same kind of work: the MLP
        # over the picture's pixels, at this MLP's width, on this machine now; 0.8-1.3 x a later sweep, ABLATIONS.md
        # BP3, and 1.8-2.3 x the first, BQ2), else by the model. (1.2 x a later sweep, scaled from the first, was
        # 2.8 x the first: it skipped four of sixteen second sweeps that fitted, BQ2.)
        tail = full * c.tail_steps / c.sweep_steps if self.sweep_times else self._steps_s(c.tail_steps)
        left = (self.deadline - now) * (1.0 - c.margin)
        refit = sweep > 0 and left >= full + tail
        this = full if refit else bare
        if sweep > 0 and left < this + tail:  # a sweep before it ran long: the time left holds only the tail
            self.ended = sweep
            return SweepPlan(final=True, refit=False, skip=True)
        self.refitted.append(refit)
        final = left < this + bare + tail
        if final:
            self.ended = sweep + 1
        return SweepPlan(final=final, refit=refit)


def share(seconds: float | None, started: float, parts: int, clock: Clock = time.perf_counter) -> float | None:
    """Seconds for the next of ``parts`` encodes run one after the other within a budget of ``seconds`` that
    began at ``started`` (on ``clock``): an equal share of what is left (None: no budget). Never below zero."""
    if seconds is None:
        return None
    return max(0.0, (seconds - (clock() - started)) / max(parts, 1))
