"""The encode's time budget (``pranc encode --time``, time_budget.py): the plan's arithmetic on a clock of the
test's own, the fit and the rounding cut by it being the fit and the rounding of the counts it chose, and the
budget through the public API and the command line."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pranc_codec import codec, grid_fit, time_budget
from pranc_codec.cli import _parse_seconds, main
from pranc_codec.config import CodecConfig, GridConfig, RateConfig, RoundingConfig, TimeConfig
from pranc_codec.errors import InputError
from pranc_codec.grid_fit import fewest_steps, fit_grid, fit_lr, fixed_until, noise_width, straight_through_from
from pranc_codec.latent import GridShape
from pranc_codec.rounding import optimise
from pranc_codec.time_budget import Budget, SweepPlan

from .conftest import smooth_image
from .test_rounding import _problem


class Clock:
    """A clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _model(**kw) -> TimeConfig:
    """A time model of round numbers: 100 + 100 + 200 a sweep after the first + 200 full-model steps after the
    fit (pass, first sweep, later sweeps, tail) at 1,000 pixels."""
    return TimeConfig(**{"pass_steps": 100, "first_sweep_steps": 100, "sweep_steps": 200, "tail_steps": 200,
                         "margin": 0.0, "min_steps": 600, "few_sweeps_below": 2000, "ref_pixels": 1000,
                         "size_exponent": 0.5, **kw})


def test_the_plan_fills_the_time_left_after_what_follows_the_fit():
    clock = Clock()
    b = Budget.start(30.0, _model(), 1000, clock)
    clock.t += 1.28  # 128 steps of 10 ms
    # 28.72 s left: after the fit 10 ms x (100 + 100 + 3 x 200 + 200) = 10 s, so 128 + 1,872 steps: 2,000, four
    # sweeps
    assert b.plan_fit(128, 0.01, least=300, most=5000, sweeps=4) == 2000 and b.sweeps == 4
    assert b.step_s == pytest.approx(0.01) and b.after_fit(4) == pytest.approx(10.0)
    clock.t += 0.02  # 28.70 s left: 1,998 steps with four, under 2,000, so two: 6 s after the fit
    assert b.plan_fit(128, 0.01, least=300, most=5000, sweeps=4) == 128 + 2270 and b.sweeps == 2
    assert b.after_fit(2) == pytest.approx(6.0) and b.after_fit(0) == pytest.approx(3.0)
    # a fit whose steps are cheaper than the full model's (no finest level): the time after it in full steps
    cheap = Budget.start(60.0, _model(), 1000, clock)
    assert cheap.plan_fit(0, 0.01, 0, 10 ** 6, 4, step_scale=1.5) == 6000 - 1.5 * 1000 and cheap.sweeps == 4
    # time for more than the preset's: its steps, its sweeps
    roomy = Budget.start(300.0, _model(), 1000, clock)
    assert roomy.plan_fit(128, 0.01, least=300, most=3500, sweeps=4) == 3500 and roomy.sweeps == 4
    # no time at all: the fewest the schedule and the config allow
    late = Budget.start(1.0, _model(), 1000, clock)
    assert late.plan_fit(128, 0.01, least=300, most=3500, sweeps=4) == 600
    assert late.plan_fit(128, 0.01, least=900, most=3500, sweeps=4) == 900
    # the time after the fit grows as (pixels / ref_pixels) ^ size_exponent
    big = Budget.start(300.0, _model(), 4000, clock)
    big.step_s = 0.01
    assert big.after_fit(1) == pytest.approx(2 * 0.01 * 400)


def test_the_margin_keeps_a_share_of_the_time_in_hand():
    clock = Clock()
    plain, kept = _model(min_steps=0, few_sweeps_below=0), _model(min_steps=0, few_sweeps_below=0, margin=0.1)
    a = Budget.start(30.0, plain, 1000, clock).plan_fit(128, 0.01, 0, 10 ** 6, 4)
    b = Budget.start(30.0, kept, 1000, clock).plan_fit(128, 0.01, 0, 10 ** 6, 4)
    assert a - b == pytest.approx(300, abs=1)  # 3 s at 10 ms a step


def test_a_sweep_is_the_last_where_the_time_left_holds_no_other_after_it():
    clock = Clock()
    b = Budget.start(10.6, _model(), 1000, clock)
    b.step_s = 0.01  # estimates: the first sweep (and a bare one) 1 s, a later one with its refit 2 s, the tail 2 s
    assert b.plan_sweep(0) == SweepPlan(final=False, refit=False)  # 10.6 s left: 1 + 1 + 2; the first: no refit
    clock.t += 1.5  # the first sweep took 1.5 s: a later one is taken as 3 s, a bare one 1.5, the tail 3
    assert b.plan_sweep(1) == SweepPlan(final=False, refit=True) and b.sweep_times == [1.5]  # 9.1: 3 + 1.5 + 3
    clock.t += 3.0
    assert b.plan_sweep(2) == SweepPlan(final=True, refit=True) and b.ended == 3  # 6.1: 3 + 3, short of 3 + 1.5 + 3
    assert b.sweep_times == [1.5, 3.0] and b.refitted == [False, True, True]
    # no time for a refit before the second sweep: it runs bare, where the rounding used to end after the first
    tight = Budget.start(4.9, _model(), 1000, clock)
    tight.step_s = 0.01
    assert tight.plan_sweep(0) == SweepPlan(final=False, refit=False)  # 4.9 s left: 1 + 1 + 2
    clock.t += 1.0
    assert tight.plan_sweep(1) == SweepPlan(final=True, refit=False) and tight.ended == 2  # 3.9: short of 2 + 2
    # a first sweep far slower than the model: the second, planned bare, no longer fits even alone with the tail
    slow = Budget.start(4.9, _model(), 1000, clock)
    slow.step_s = 0.01
    assert not slow.plan_sweep(0).final
    clock.t += 2.5  # 2.4 s left: a bare sweep taken as 2.5 s and the tail as 5
    assert slow.plan_sweep(1) == SweepPlan(final=True, refit=False, skip=True) and slow.ended == 1
    first = Budget.start(3.9, _model(), 1000, clock)
    first.step_s = 0.01
    assert first.plan_sweep(0).final and first.ended == 1  # 3.9 s left: 1 + 1 + 2 would not fit
    kept = Budget.start(4.3, _model(margin=0.1), 1000, clock)
    kept.step_s = 0.01
    assert kept.plan_sweep(0).final  # 4.3 s left less a tenth: 3.87, short of 4
    # sweeps faster than the model: the tail follows them down, not the model's 2 s
    quick = Budget.start(5.0, _model(), 1000, clock)
    quick.step_s = 0.01
    assert not quick.plan_sweep(0).final  # 5 s left: 1 + 1 + 2
    clock.t += 0.5  # a later sweep taken as 1 s, a bare one 0.5, the tail 1 with it
    assert quick.plan_sweep(1) == SweepPlan(final=False, refit=True)  # 4.5 s left: 1 + 0.5 + 1
    clock.t += 1.3
    assert quick.plan_sweep(2) == SweepPlan(final=False, refit=True)  # 3.2 left: 1.3 + 0.5 + 1.3 (model's tail: 3.8)
    clock.t += 1.3
    assert quick.plan_sweep(3) == SweepPlan(final=True, refit=False) and quick.ended == 4  # 1.9: short of 1.3 + 1.3


def test_an_equal_share_of_what_is_left():
    clock = Clock()
    start = clock()
    clock.t += 6.0
    assert time_budget.share(30.0, start, 3, clock) == pytest.approx(8.0)
    assert time_budget.share(30.0, start - 100, 2, clock) == 0.0
    assert time_budget.share(None, start, 2, clock) is None
    assert Budget.start(None, TimeConfig(), 100) is None


@pytest.mark.parametrize("steps", [600, 1350, 3500, 4725, 8500])
def test_the_schedule_does_not_depend_on_the_step_count_before_fixed_until(steps):
    """fixed_until is where a fit of another step count first runs differently (what lets a budget choose the
    count after the fit began), and fewest_steps the least count that still runs the same up to a step."""
    cfg = replace(GridConfig(), steps=steps)
    until = fixed_until(cfg)
    assert 0 < until < steps

    def schedule(c: GridConfig, k: int) -> tuple[float, float, bool]:
        ste_from = straight_through_from(c)
        return fit_lr(c, k, 1.0), noise_width(c, k, ste_from), k >= ste_from

    for other in (steps // 2, steps - 1, steps + 1, 2 * steps):
        o = replace(cfg, steps=other)
        same = min(until, fixed_until(o))
        assert all(schedule(cfg, k) == schedule(o, k) for k in range(same))
    assert any(schedule(cfg, until) != schedule(replace(cfg, steps=n), until) for n in (steps // 2, 2 * steps))
    for done in (1, 128, 512, until):
        least = fewest_steps(cfg, done)
        assert fixed_until(replace(cfg, steps=least)) >= done > fixed_until(replace(cfg, steps=least - 1))


class _Fixed(Budget):
    """A budget whose plans are the test's: each plan_fit returns the next of ``plans`` (then the count it has)."""

    def __init__(self, plans: list[int]) -> None:
        super().__init__(deadline=1e9, cfg=TimeConfig(first_check=32, warm_steps=8), pixels=1)
        self.plans, self.asked = list(plans), []

    def plan_fit(self, done, step_s, least, most, sweeps, step_scale=1.0):
        self.asked.append((done, least, most))
        return self.plans.pop(0) if self.plans else least


def test_a_fit_cut_by_the_budget_is_the_fit_of_the_count_it_chose():
    target = torch.from_numpy(smooth_image(32, 48, seed=5).astype(np.float32) / 255.0)
    shape = GridShape(levels=4, hidden=8, hidden_layers=2, channels=3)
    cfg = GridConfig(steps=600, batch_pixels=512, rate_every=4, ste_rate_every=4, context_every=16,
                     lr_decay_min=50)
    plans = _Fixed([500, 420, 400])  # at 32, 64 and 128 steps; then at fixed_until(400 steps), 190
    cut = fit_grid(target, shape, cfg, 2.0, budget=plans, sweeps=4)
    until = fixed_until(replace(cfg, steps=400))
    assert [a[0] for a in plans.asked] == [32, 64, 128, until] and plans.asked[0][2] == 600
    assert plans.asked[-1][1] == 400  # the last plan may not go below the count it ran to then
    assert cut.steps == 400
    direct = fit_grid(target, shape, replace(cfg, steps=400), 2.0)
    assert all(torch.equal(a, b) for a, b in zip(cut.latents, direct.latents))
    assert all(torch.equal(a, b) for a, b in zip(cut.weights, direct.weights))
    assert cut.lam == direct.lam
    longer = fit_grid(target, shape, replace(cfg, steps=420), 2.0)  # and it is not any other count's
    assert not all(torch.equal(a, b) for a, b in zip(cut.latents, longer.latents))
    assert fit_grid(target, shape, cfg, 2.0).steps == 600


def test_a_rounding_ended_early_is_the_rounding_of_that_many_sweeps():
    h, w = 24, 32
    _, latents, layers, target, feats = _problem(seed=5)
    held = grid_fit.context_state(latents).bits
    cfg = RoundingConfig(sweeps=4)
    asked = []

    def plan(sweep: int) -> SweepPlan:
        asked.append(sweep)
        return SweepPlan(final=sweep == 1, refit=True)

    cut, cut_feats, _ = optimise(latents, feats, layers, target, None, 3e-3, 0, h, w, cfg, held, plan=plan)
    two, two_feats, _ = optimise(latents, feats, layers, target, None, 3e-3, 0, h, w, replace(cfg, sweeps=2), held)
    four, _, _ = optimise(latents, feats, layers, target, None, 3e-3, 0, h, w, cfg, held)
    assert asked == [0, 1]
    assert all(torch.equal(a, b) for a, b in zip(cut, two)) and torch.equal(cut_feats, two_feats)
    assert not all(torch.equal(a, b) for a, b in zip(cut, four))


def test_a_sweep_planned_bare_runs_without_the_refit_before_it_and_one_skipped_ends_the_rounding():
    """A later sweep the budget cannot afford a refit for prices against the MLP it has: the refit is not called,
    and the sweeps are those of a rounding with no refit; with the refit they differ."""
    h, w = 24, 32
    _, latents, layers, target, feats = _problem(seed=5)
    held = grid_fit.context_state(latents).bits
    cfg = RoundingConfig(sweeps=2)
    calls = []

    def refit(f: torch.Tensor):
        calls.append(f.shape)
        return [(wt * 1.01, b) for wt, b in layers]  # another MLP: a refit that ran would change the sweep

    bare, bare_feats, _ = optimise(latents, feats, layers, target, None, 3e-3, 0, h, w, cfg, held, refit=refit,
                                   plan=lambda sweep: SweepPlan(final=sweep == 1, refit=False))
    assert calls == []
    plain, plain_feats, _ = optimise(latents, feats, layers, target, None, 3e-3, 0, h, w, cfg, held)
    assert all(torch.equal(a, b) for a, b in zip(bare, plain)) and torch.equal(bare_feats, plain_feats)
    refitted, _, _ = optimise(latents, feats, layers, target, None, 3e-3, 0, h, w, cfg, held, refit=refit,
                              plan=lambda sweep: SweepPlan(final=sweep == 1, refit=True))
    assert len(calls) == 1 and not all(torch.equal(a, b) for a, b in zip(refitted, plain))
    # a sweep skipped: the rounding ends before it, as after a first sweep without its last sweep's rails
    cut, cut_feats, _ = optimise(latents, feats, layers, target, None, 3e-3, 0, h, w, cfg, held, refit=refit,
                                 plan=lambda sweep: SweepPlan(final=False, refit=False, skip=sweep == 1))
    one, one_feats, _ = optimise(latents, feats, layers, target, None, 3e-3, 0, h, w,
                                 replace(cfg, sweeps=1, rate_rail=0.0), held)
    assert len(calls) == 1 and torch.equal(cut_feats, one_feats) and all(torch.equal(a, b) for a, b in zip(cut, one))
    assert not all(torch.equal(a, b) for a, b in zip(cut, plain))


def _picture() -> np.ndarray:
    return smooth_image(64, 96, seed=2)


def test_encode_under_a_budget_reports_its_counts_and_says_when_it_ran_over():
    base = CodecConfig(rate=RateConfig(bpp=1.0))
    image = _picture()
    tight = codec.encode(image, replace(base, time=TimeConfig(limit=0.01))).stats
    assert tight.time_limit == 0.01 and tight.model == "grid"
    assert tight.steps == TimeConfig().min_steps and tight.sweeps == 1  # the fewest there are
    assert any("over the 0.01 s asked for (--time)" in w and "fewest" in w for w in tight.warnings)
    roomy = codec.encode(image, replace(base, grid=replace(base.grid, steps=700),
                                        time=TimeConfig(limit=600.0))).stats
    assert roomy.steps == 700 and roomy.sweeps == base.rounding.sweeps and roomy.time_limit == 600.0
    assert not any("--time" in w for w in roomy.warnings)
    plain = codec.encode(image, replace(base, grid=replace(base.grid, steps=700))).stats
    assert plain.time_limit is None and plain.steps == 700 and plain.sweeps == base.rounding.sweeps


def test_a_budget_is_for_the_grid_model_and_positive():
    image = _picture()
    with pytest.raises(InputError, match="--time only applies to --model grid"):
        codec.encode(image, CodecConfig(model="siren", time=TimeConfig(limit=10.0)))
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(InputError, match="--time must be"):
            codec.encode(image, CodecConfig(time=TimeConfig(limit=bad)))


def test_time_on_the_command_line(tmp_path):
    assert _parse_seconds("45") == 45.0 and _parse_seconds("45s") == 45.0
    assert _parse_seconds("1.5m") == 90.0 and _parse_seconds(" 2min ") == 120.0 and _parse_seconds("1h") == 3600.0
    src = tmp_path / "a.png"
    from PIL import Image
    Image.fromarray(_picture()).save(src)
    runner = CliRunner()
    for bad, says in (("soon", "give seconds"), ("0", "more than zero"), ("-3", "more than zero"),
                      ("5 parsecs", "give seconds"), ("inf", "more than zero")):
        r = runner.invoke(main, ["encode", str(src), "-o", str(tmp_path / "a.prc"), "--time", bad])
        assert r.exit_code != 0 and says in r.output and "Traceback" not in r.output, (bad, r.output)
        assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(main, ["encode", str(src), "-o", str(tmp_path / "a.prc"), "--time", "9", "--model", "siren"])
    assert r.exit_code != 0 and "--time only applies to --model grid" in r.output
    assert not (tmp_path / "a.prc").exists()


def test_a_large_pictures_strips_share_the_time_by_rounds(monkeypatch):
    from pranc_codec import split
    from .test_composite import photo
    from .test_split import quick

    limits = []
    real = split._fit_strip

    def spy(crop, cfg, progress=None):
        limits.append(cfg.time.limit)
        return real(crop, cfg, progress)

    monkeypatch.setattr(split, "_fit_strip", spy)
    img = photo(96, 256)
    cfg = replace(quick(0.5), time=TimeConfig(limit=40.0))
    strips = split.encode(img, 0.5 * 96 * 256 / 8, cfg, lambda h, w, b: codec._region_config(cfg, h, w, b),
                          workers=1).strips
    each = 40.0 * TimeConfig().strips_share / 2  # two strips one after the other: two rounds
    assert strips == 2 and limits == [pytest.approx(each)] * 2


def test_a_psnr_search_gives_each_pass_an_equal_share_of_what_is_left():
    from pranc_codec.quality_target import encode_to_psnr, first_rate
    from .test_quality_target import FakeCodec, textured

    class Timed(FakeCodec):
        def __init__(self, *a):
            super().__init__(*a)
            self.limits = []

        def __call__(self, image, config, progress=None):
            self.limits.append(config.time.limit)
            return super().__call__(image, config, progress)

    image = textured()
    offset = 27.0 - 2.5 * math.log2(first_rate(image, 30.0, CodecConfig()))  # 3 dB short: three passes
    fake = Timed(offset, 0.5)
    r = encode_to_psnr(image, 30.0, replace(CodecConfig(), time=TimeConfig(limit=30.0, spent=3.0)), encoder=fake)
    assert len(fake.limits) == 3 and r.stats.time_limit == 30.0
    # the stand-in takes no time: 27 s left of 30 after the 3 spent, a third of it, then half, then all of it
    assert fake.limits == [pytest.approx(9.0, abs=0.05), pytest.approx(13.5, abs=0.05), pytest.approx(27.0, abs=0.05)]


def test_a_rate_missed_under_a_budget_says_the_budget_was_why():
    """A budget cut short lands a file under its rate (a 24-megapixel picture under --time 60: 0.169 bpp for
    0.25), where "not reachable for this image" was untrue: the same picture reached it without the budget. A file
    over its rate, or one made without a budget, keeps the plain words."""
    from pranc_codec.codec import EncodeResult, EncodeStats, _rate_check, time_checked

    def result(bpp: float) -> EncodeResult:
        cfg = replace(CodecConfig(), rate=replace(CodecConfig().rate, bpp=0.25))
        ok, notes = _rate_check(cfg, round(bpp * 6000 * 4000 / 8), 4000, 6000, "composite")
        assert not ok and notes == [f"target 0.25 bpp missed (got {bpp:.4g} bpp, more than 10% off)"]
        stats = EncodeStats(width=6000, height=4000, channels=3, bytes=round(bpp * 6000 * 4000 / 8), bpp=bpp,
                            target_bpp=0.25, rate_ok=ok, psnr=38.0, ms_ssim=None, num_coefs=0, num_params=0,
                            net_width=0, delta=1.0, encode_seconds=50.0, device="cpu", model="composite",
                            warnings=notes)
        return EncodeResult(data=b"", stats=stats)

    budget = replace(CodecConfig(), time=TimeConfig(limit=60.0))
    assert time_checked(result(0.169), budget).stats.warnings == [
        "target 0.25 bpp not reached within --time 60 (got 0.169 bpp, more than 10% off)"]
    assert time_checked(result(0.4), budget).stats.warnings == [
        "target 0.25 bpp missed (got 0.4 bpp, more than 10% off)"]
    assert time_checked(result(0.169), CodecConfig()).stats.warnings == [
        "target 0.25 bpp missed (got 0.169 bpp, more than 10% off)"]
