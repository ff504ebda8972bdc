"""The 11.11 traffic curve: midnight spike and constant."""

from __future__ import annotations

import itertools
import math

import pytest

from flashsale.scenario import CurveSpec, get_scenario
from producers.curves import expected_orders, rate_at, scenario_start_ms

SPIKE = get_scenario("singles-day").curve
CONSTANT = get_scenario("steady").curve


def test_midnight_spike_starts_at_start_fraction_and_peaks_at_peak_offset() -> None:
    assert rate_at(SPIKE, 0.0) == pytest.approx(SPIKE.start_fraction * SPIKE.peak_rate)
    assert rate_at(SPIKE, SPIKE.peak_offset_s) == pytest.approx(SPIKE.peak_rate)
    assert 0 < SPIKE.peak_offset_s < 60


def test_midnight_spike_peak_is_the_maximum_within_the_first_minute() -> None:
    samples = [i / 10 for i in range(0, 36_000)]  # the first hour, every 0.1 s
    busiest = max(samples, key=lambda t: rate_at(SPIKE, t))
    assert busiest == pytest.approx(SPIKE.peak_offset_s)
    assert busiest < 60


def test_midnight_spike_rises_before_the_peak_and_decays_after() -> None:
    before = [rate_at(SPIKE, t) for t in range(int(SPIKE.peak_offset_s) + 1)]
    after = [rate_at(SPIKE, SPIKE.peak_offset_s + t) for t in range(0, 3_600, 10)]
    assert all(b > a for a, b in itertools.pairwise(before))
    assert all(b < a for a, b in itertools.pairwise(after))


def test_midnight_spike_tends_to_the_floor() -> None:
    floor = SPIKE.floor_fraction * SPIKE.peak_rate
    late = rate_at(SPIKE, SPIKE.peak_offset_s + 20 * SPIKE.decay_s)
    assert late == pytest.approx(floor, rel=1e-6)
    assert late > floor


def test_constant_curve_is_constant() -> None:
    rates = {rate_at(CONSTANT, t) for t in (0.0, 1.0, 26.0, 600.0, 86_400.0)}
    assert rates == {CONSTANT.peak_rate}


def _numeric_orders(curve: CurveSpec, wall_s: float, steps: int = 20_000) -> float:
    """Midpoint-rule integral of the rate over wall time."""
    dw = wall_s / steps
    return sum(rate_at(curve, (i + 0.5) * dw * curve.compression) for i in range(steps)) * dw


@pytest.mark.parametrize("wall_s", [0.5, 2.6, 3.0, 30.0, 600.0])
def test_expected_orders_matches_a_numeric_sum_of_the_spike(wall_s: float) -> None:
    assert expected_orders(SPIKE, wall_s) == pytest.approx(_numeric_orders(SPIKE, wall_s), rel=1e-6)


def test_expected_orders_of_the_constant_curve_is_rate_times_time() -> None:
    assert expected_orders(CONSTANT, 12.5) == pytest.approx(CONSTANT.peak_rate * 12.5)
    assert expected_orders(CONSTANT, 0.0) == 0.0


def test_spike_with_peak_at_midnight_only_decays() -> None:
    curve = CurveSpec(peak_offset_s=0.0)
    assert rate_at(curve, 0.0) == pytest.approx(curve.peak_rate)
    assert rate_at(curve, 10.0) < curve.peak_rate
    assert expected_orders(curve, 5.0) == pytest.approx(_numeric_orders(curve, 5.0), rel=1e-6)


def test_scenario_starts_at_midnight_china_time() -> None:
    # 2020-11-11 00:00 CST is 2020-11-10 16:00 UTC.
    assert scenario_start_ms(SPIKE) == 1_605_024_000_000
    assert math.isclose(scenario_start_ms(SPIKE) / 1000, SPIKE.start.timestamp())
