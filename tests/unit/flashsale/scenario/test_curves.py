"""Traffic curves: every shape's rate, its exact running total, and what is emitted."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashsale.scenario import Scenario, get_scenario, parse_scenario
from flashsale.scenario.curves import Curve, rate_at, scenario_start_ms
from recordings.plots import plot_curve


def _scenario(curve: dict[str, Any], **scale: float) -> Scenario:
    doc = {"scale": {"peak_per_s": 1_000.0, "sample_ratio": 0.01, "compression": 4.0, **scale}}
    return parse_scenario({"name": "curve-test", "curve": curve, **doc})


SPIKE = {"peak_offset_s": 26.0, "decay_s": 240.0, "floor_fraction": 0.2, "start_fraction": 0.1}
BUMP = {"at_s": 7_200.0, "width_s": 900.0, "height_fraction": 0.5}
CSV_POINTS = [[5.0, 100.0], [30.0, 900.0], [60.0, 300.0], [200.0, 0.0], [400.0, 250.0]]

# name -> (curve document, breakpoints where the rate bends or jumps, longest smooth piece).
SHAPES: dict[str, tuple[dict[str, Any], list[float], float]] = {
    "spike": ({**SPIKE}, [26.0], 60.0),
    "spike-at-midnight": ({**SPIKE, "peak_offset_s": 0.0}, [], 60.0),
    "spike-with-bump": ({**SPIKE, "evening_bump": BUMP}, [26.0], 300.0),
    "constant": ({"shape": "constant"}, [], 3_600.0),
    "step": (
        {"shape": "step", "steps": [[0, 0.2], [10, 1.0], [25.5, 0.4], [100, 0.0], [400, 0.7]]},
        [10.0, 25.5, 100.0, 400.0],
        3_600.0,
    ),
    "ramp-up": ({"shape": "ramp", "from_fraction": 0.1, "ramp_s": 90.0}, [90.0], 3_600.0),
    "ramp-down": (
        {"shape": "ramp", "from_fraction": 0.9, "to_fraction": 0.3, "ramp_s": 45.0},
        [45.0],
        3_600.0,
    ),
    "sine": ({"shape": "sine", "period_s": 120.0, "low_fraction": 0.25}, [], 10.0),
    "square": (
        {"shape": "square", "period_s": 50.0, "duty": 0.3, "low_fraction": 0.1},
        [k * 50.0 + d for k in range(0, 200) for d in (0.0, 15.0)][1:],
        3_600.0,
    ),
    "csv": ({"shape": "csv", "points": CSV_POINTS}, [5.0, 30.0, 60.0, 200.0, 400.0], 3_600.0),
}
TIMES = [0.5, 5.0, 26.0, 27.3, 99.9, 250.0, 1_234.5, 7_200.0, 9_999.0]


def _simpson(curve: Curve, a: float, b: float, n: int = 400) -> float:
    h = (b - a) / n
    inner = (curve.rate(a + i * h) * (4 if i % 2 else 2) for i in range(1, n))
    return (curve.rate(a) + math.fsum(inner) + curve.rate(b)) * h / 3


def _numeric(curve: Curve, t: float, breaks: list[float], piece: float) -> float:
    """Simpson's rule between consecutive breakpoints, on pieces no longer than `piece`."""
    # Just inside each jump, so Simpson never straddles one.
    edges = sorted({0.0, t, *(b for b in breaks if 0 < b < t)})
    total = []
    for a, b in itertools.pairwise(edges):
        k = max(1, math.ceil((b - a) / piece))
        for j in range(k):
            lo, hi = a + (b - a) * j / k, a + (b - a) * (j + 1) / k
            eps = (hi - lo) * 1e-12
            total.append(_simpson(curve, lo + eps, hi - eps))
    return math.fsum(total)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_cumulative_is_the_exact_integral_of_the_rate(shape: str) -> None:
    doc, breaks, piece = SHAPES[shape]
    curve = Curve(_scenario(doc))
    for t in TIMES:
        assert curve.cumulative(t) == pytest.approx(_numeric(curve, t, breaks, piece), rel=1e-6)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_cumulative_starts_at_zero_and_never_decreases(shape: str) -> None:
    curve = Curve(_scenario(SHAPES[shape][0]))
    assert curve.cumulative(0.0) == 0.0
    assert curve.cumulative(-5.0) == 0.0
    assert curve.rate(-0.001) == 0.0
    totals = [curve.cumulative(i * 0.37) for i in range(30_000)]
    assert all(b >= a for a, b in itertools.pairwise(totals))
    assert totals[-1] > 0


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_emitted_orders_are_the_sampled_real_orders_on_the_wall_clock(shape: str) -> None:
    scenario = _scenario(SHAPES[shape][0])
    curve = Curve(scenario)
    ratio, compression = scenario.scale.sample_ratio, scenario.scale.compression
    for wall in (0.0, 0.25, 6.5, 30.0, 500.0):
        t = wall * compression
        assert curve.emitted_by(wall) == pytest.approx(ratio * curve.cumulative(t), rel=1e-12)
        assert curve.wall_rate(wall) == pytest.approx(ratio * compression * curve.rate(t))
    assert curve.total_emitted() == pytest.approx(curve.emitted_by(curve.wall_horizon_s))
    assert curve.total_emitted() == pytest.approx(ratio * curve.total_real())
    assert curve.share_by(scenario.curve.horizon_s) == pytest.approx(1.0)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_peak_is_the_highest_rate_within_the_horizon(shape: str) -> None:
    scenario = _scenario(SHAPES[shape][0])
    curve = Curve(scenario)
    peak_t, peak_rate = curve.peak()
    assert 0 <= peak_t <= scenario.curve.horizon_s
    assert peak_rate == curve.rate(peak_t)
    grid = [i * scenario.curve.horizon_s / 50_000 for i in range(50_001)]
    assert max(curve.rate(t) for t in grid) <= peak_rate * (1 + 1e-9)


def test_emitting_scales_with_sample_ratio_and_compression() -> None:
    slow = Curve(_scenario(SPIKE, sample_ratio=0.01, compression=1.0))
    fast = Curve(_scenario(SPIKE, sample_ratio=0.03, compression=10.0))
    for wall in (1.0, 2.6, 60.0):
        assert fast.emitted_by(wall) == pytest.approx(3 * slow.emitted_by(wall * 10))
        assert fast.wall_rate(wall) == pytest.approx(30 * slow.wall_rate(wall * 10))
    assert fast.wall_horizon_s == slow.wall_horizon_s / 10


def test_midnight_spike_rises_to_the_peak_at_its_offset_then_decays_to_the_floor() -> None:
    curve = Curve(_scenario(SPIKE))
    assert curve.fraction(0.0) == pytest.approx(0.1)
    assert curve.fraction(26.0) == 1.0
    assert curve.peak() == (26.0, 1_000.0)
    before = [curve.rate(t) for t in range(27)]
    after = [curve.rate(26.0 + t) for t in range(0, 3_600, 10)]
    assert all(b > a for a, b in itertools.pairwise(before))
    assert all(b < a for a, b in itertools.pairwise(after))
    late = curve.fraction(26.0 + 20 * 240.0)
    assert late == pytest.approx(0.2, rel=1e-6)
    assert late > 0.2


def test_an_evening_bump_adds_a_gaussian_on_top_of_the_floor() -> None:
    plain, bumped = Curve(_scenario(SPIKE)), Curve(_scenario({**SPIKE, "evening_bump": BUMP}))
    assert bumped.fraction(7_200.0) - plain.fraction(7_200.0) == pytest.approx(0.5)
    assert bumped.fraction(7_200.0 + 900.0) - plain.fraction(7_200.0 + 900.0) == pytest.approx(
        0.5 * math.exp(-0.5)
    )
    # Its whole area is height * width * sqrt(2 pi), in peak-rate seconds.
    extra = bumped.cumulative(86_400.0) - plain.cumulative(86_400.0)
    assert extra == pytest.approx(1_000.0 * 0.5 * 900.0 * math.sqrt(2 * math.pi), rel=1e-9)
    assert bumped.peak()[0] == 26.0  # 0.2 floor + 0.5 bump stays under the spike


def test_a_bump_higher_than_the_spike_is_found_as_the_peak() -> None:
    curve = Curve(_scenario({**SPIKE, "floor_fraction": 0.6, "evening_bump": BUMP}))
    peak_t, peak_rate = curve.peak()
    assert peak_t == pytest.approx(7_200.0, abs=1.0)
    assert peak_rate == pytest.approx(1_100.0, rel=1e-6)


def test_step_is_piecewise_constant_from_each_step_on() -> None:
    curve = Curve(_scenario(SHAPES["step"][0]))
    assert [curve.fraction(t) for t in (0, 9.99, 10, 25.4, 25.5, 99, 100, 399, 400, 1e5)] == [
        0.2, 0.2, 1.0, 1.0, 0.4, 0.4, 0.0, 0.0, 0.7, 0.7,
    ]  # fmt: skip
    assert curve.cumulative(10) == pytest.approx(2_000.0)
    assert curve.peak() == (10.0, 1_000.0)


def test_ramp_sine_and_square_follow_their_formulas() -> None:
    ramp = Curve(_scenario(SHAPES["ramp-up"][0]))
    assert [ramp.fraction(t) for t in (0, 45, 90, 900)] == pytest.approx([0.1, 0.55, 1.0, 1.0])
    sine = Curve(_scenario(SHAPES["sine"][0]))
    assert [sine.fraction(t) for t in (0, 30, 60, 120)] == pytest.approx([0.25, 0.625, 1.0, 0.25])
    assert sine.peak() == (60.0, 1_000.0)
    square = Curve(_scenario(SHAPES["square"][0]))
    assert [square.fraction(t) for t in (0, 14.9, 15, 49.9, 50, 65)] == [1, 1, 0.1, 0.1, 1, 0.1]
    assert square.cumulative(100) == pytest.approx(2 * (15 + 0.1 * 35) * 1_000)


def test_csv_rates_are_absolute_linear_between_points_and_held_after_the_last() -> None:
    curve = Curve(_scenario(SHAPES["csv"][0], peak_per_s=123.0))  # ignored by csv
    assert curve.rate(4.99) == 0.0
    assert curve.rate(5.0) == 100.0
    assert curve.rate(17.5) == pytest.approx(500.0)
    assert curve.rate(130.0) == pytest.approx(150.0)
    assert curve.rate(10_000.0) == 250.0
    assert curve.fraction(30.0) == 1.0
    assert curve.peak() == (30.0, 900.0)
    assert curve.cumulative(30.0) == pytest.approx((100 + 900) / 2 * 25)


def test_rate_at_is_the_curve_rate() -> None:
    scenario = get_scenario("singles-day-2020")
    assert rate_at(scenario, 26.0) == Curve(scenario).rate(26.0) == 583_000


def test_scenario_starts_at_midnight_china_time_to_the_millisecond() -> None:
    scenario = get_scenario("singles-day-2020")
    # 2020-11-11 00:00 CST is 2020-11-10 16:00 UTC.
    assert scenario_start_ms(scenario) == 1_605_024_000_000
    assert math.isclose(scenario_start_ms(scenario) / 1000, scenario.start.timestamp())
    odd = parse_scenario({"name": "x", "start": "2019-11-11T00:00:00.123+08:00"})
    assert scenario_start_ms(odd) == 1_573_401_600_123


def test_plot_curve_writes_a_png(tmp_path: Path) -> None:
    for name in ("singles-day-2020", "flash-drop"):
        out = plot_curve(get_scenario(name), tmp_path / f"{name}.png")
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 10_000
    out = plot_curve(get_scenario("singles-day-2019"), tmp_path / "hour.png", hours=1.0)
    assert out.stat().st_size > 10_000


_FRACTION = st.floats(0, 1)
_SPAN = st.floats(0.001, 20_000)
_CURVES = st.one_of(
    st.fixed_dictionaries(
        {
            "peak_offset_s": st.floats(0, 600),
            "start_fraction": _FRACTION,
            "decay_s": _SPAN,
            "floor_fraction": _FRACTION,
        },
        optional={
            "evening_bump": st.fixed_dictionaries(
                {"at_s": st.floats(0, 86_400), "width_s": _SPAN, "height_fraction": _FRACTION}
            )
        },
    ),
    st.just({"shape": "constant"}),
    st.lists(st.tuples(st.floats(1, 40_000), _FRACTION), max_size=6).map(
        lambda rest: {
            "shape": "step",
            "steps": [[0.0, 0.5], *sorted({at: [at, f] for at, f in rest}.values())],
        }
    ),
    st.fixed_dictionaries(
        {"shape": st.just("ramp"), "from_fraction": _FRACTION, "ramp_s": _SPAN}
    ).map(lambda d: {**d, "to_fraction": 1.0}),
    st.fixed_dictionaries({"shape": st.just("sine"), "period_s": _SPAN, "low_fraction": _FRACTION}),
    st.fixed_dictionaries(
        {
            "shape": st.just("square"),
            "period_s": _SPAN,
            "duty": st.floats(0.01, 0.99),
            "low_fraction": _FRACTION,
        }
    ),
    st.lists(st.tuples(st.floats(0, 80_000), st.floats(1, 1e6)), min_size=1, max_size=8).map(
        lambda pts: {"shape": "csv", "points": sorted({s: [s, r] for s, r in pts}.values())}
    ),
)


@settings(max_examples=300, deadline=None)
@given(doc=_CURVES, times=st.lists(st.floats(-10, 100_000), min_size=2, max_size=20))
def test_any_valid_curve_has_a_positive_finite_day_and_a_rising_total(
    doc: dict[str, Any], times: list[float]
) -> None:
    curve = Curve(_scenario(doc))
    total = curve.total_real()
    assert 0 < total < math.inf
    times.sort()
    totals = [curve.cumulative(t) for t in times]
    assert all(b >= a - 1e-9 * total for a, b in itertools.pairwise(totals))
    assert all(curve.rate(t) >= 0 for t in times)
    peak_t, peak_rate = curve.peak()
    assert all(curve.rate(t) <= peak_rate * (1 + 1e-9) for t in times if 0 <= t <= 86_400)
    assert curve.share_by(peak_t) <= 1 + 1e-12
