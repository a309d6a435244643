"""Bjøntegaard metrics on curves whose answer is known in closed form."""
import math

import numpy as np
import pytest

from pranc_codec.evaluation.bjontegaard import bd_quality, bd_rate, msssim_db

RATES = np.array([0.1, 0.2, 0.4, 0.8, 1.6])


def linear_curve(rates, a=30.0, b=5.0):
    """PSNR = a + b ln(rate): shifting rate by a factor shifts PSNR by a constant."""
    return a + b * np.log(rates)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_identical_curves_give_zero(method):
    p = linear_curve(RATES)
    assert bd_rate(RATES, p, RATES, p, method) == pytest.approx(0.0, abs=1e-9)
    assert bd_quality(RATES, p, RATES, p, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_rate_scaled_curve(method):
    # the test codec reaches every PSNR with 80 % of the bits: BD-rate is exactly -20 %
    p = linear_curve(RATES)
    assert bd_rate(RATES, p, RATES * 0.8, p, method) == pytest.approx(-20.0, abs=1e-6)
    # ... and at equal rate it is b * ln(1/0.8) dB better
    assert bd_quality(RATES, p, RATES * 0.8, p, method) == pytest.approx(5.0 * math.log(1 / 0.8), abs=1e-6)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_psnr_shifted_curve(method):
    p = linear_curve(RATES)
    assert bd_quality(RATES, p, RATES, p + 1.0, method) == pytest.approx(1.0, abs=1e-9)
    # +1 dB on PSNR = a + 5 ln r is the same curve at rate * exp(-1/5)
    assert bd_rate(RATES, p, RATES, p + 1.0, method) == pytest.approx((math.exp(-0.2) - 1) * 100, abs=1e-6)


def test_worse_codec_is_positive_and_order_of_points_does_not_matter():
    p = linear_curve(RATES)
    shuffled = [3, 0, 4, 1, 2]
    r = bd_rate(RATES, p, (RATES * 1.5)[shuffled], p[shuffled])
    assert r == pytest.approx(50.0, abs=1e-6)


def test_cubic_exact_on_cubic_curves():
    # a cubic in log-rate is reproduced exactly by the cubic fit: shift gives the exact answer
    x = np.log(RATES)
    p = 30 + 4 * x + 0.5 * x**2 + 0.1 * x**3
    assert bd_quality(RATES, p, RATES, p + 0.37, "cubic") == pytest.approx(0.37, abs=1e-9)


def test_only_the_overlap_counts():
    p = linear_curve(RATES)
    # the test curve covers only the upper part, but is the same curve there
    assert bd_rate(RATES, p, RATES[2:], p[2:]) == pytest.approx(0.0, abs=1e-9)
    # no overlap at all: no answer rather than an extrapolated one
    assert bd_rate(RATES, p, RATES * 100, p + 100) is None
    assert bd_quality(RATES, p, RATES * 100, p) is None


def test_cubic_needs_four_points_and_bad_input_is_rejected():
    with pytest.raises(ValueError):
        bd_rate(RATES[:3], linear_curve(RATES[:3]), RATES[:3], linear_curve(RATES[:3]), "cubic")
    with pytest.raises(ValueError):
        bd_rate(RATES, linear_curve(RATES), RATES[:2], [1.0])
    with pytest.raises(ValueError):
        bd_rate(RATES, linear_curve(RATES), RATES, linear_curve(RATES), "spline")


def test_msssim_db():
    assert msssim_db([0.9, 0.99]) == pytest.approx([10.0, 20.0])
