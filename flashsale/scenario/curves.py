"""Traffic curves: the real order rate over the day, its exact integral, and what is emitted.

Scenario time `t_s` counts seconds after the scenario's start (00:00 China time on 11 November
for the Singles' Day presets); the curve is 0 before it. Wall time runs `compression` times
slower, so wall second `w` is scenario second `w * compression`, and only `sample_ratio` of the
real orders are emitted. Formulas: docs/scenarios.md.

The shape is chosen once, in `Curve.__init__`; each call is then a few float operations (the
generator asks ~100 times per wall second), and `cumulative` is a closed form, so counts taken
from it never drift however long a run lasts.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from flashsale.scenario.model import CurveSpec, Scenario

__all__ = ["Curve", "rate_at", "scenario_start_ms"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_SQRT2: Final = math.sqrt(2.0)
_SQRT_HALF_PI: Final = math.sqrt(math.pi / 2.0)
# Samples of the coarse scan that locates a peak no closed form gives (evening bump).
_PEAK_SCAN: Final = 20_000

Level = Callable[[float], float]


class Curve:
    """A scenario's order rate and its exact running total, on the scenario and wall clocks."""

    __slots__ = (
        "_emit_unit",
        "_frac_scale",
        "_integral",
        "_level",
        "_peak",
        "_unit",
        "_wall_unit",
        "compression",
        "horizon_s",
        "sample_ratio",
        "scenario",
    )

    def __init__(self, scenario: Scenario) -> None:
        spec = scenario.curve
        self.scenario: Scenario = scenario
        self.sample_ratio: float = scenario.scale.sample_ratio
        self.compression: float = scenario.scale.compression
        self.horizon_s: float = spec.horizon_s
        # `level` is the shape in its own unit; rate = unit * level, fraction = scale * level.
        self._level: Level
        self._integral: Level
        self._peak: Callable[[], float]
        if spec.shape == "csv":
            self._level, self._integral, self._peak = _csv(spec)
            self._unit = 1.0
            self._frac_scale = 1.0 / max(rate for _, rate in spec.points)
        else:
            self._level, self._integral, self._peak = _SHAPES[spec.shape](spec)
            self._unit = scenario.scale.peak_per_s
            self._frac_scale = 1.0
        self._emit_unit = self.sample_ratio * self._unit
        self._wall_unit = self.sample_ratio * self.compression * self._unit

    def fraction(self, t_s: float) -> float:
        """The shape at scenario time `t_s`: 1.0 is the peak rate (csv: its top point)."""
        return self._level(t_s) * self._frac_scale

    def rate(self, t_s: float) -> float:
        """Real orders per scenario second at scenario time `t_s`."""
        return self._level(t_s) * self._unit

    def cumulative(self, t_s: float) -> float:
        """Real orders from 0 to scenario time `t_s`: the exact integral of `rate`."""
        return self._integral(t_s) * self._unit

    def emitted_by(self, wall_s: float) -> float:
        """Orders emitted by wall time `wall_s` (a real number; floor it to count)."""
        return self._integral(wall_s * self.compression) * self._emit_unit

    def wall_rate(self, wall_s: float) -> float:
        """Emitted orders per wall second at wall time `wall_s`."""
        return self._level(wall_s * self.compression) * self._wall_unit

    @property
    def wall_horizon_s(self) -> float:
        """The horizon in wall seconds."""
        return self.horizon_s / self.compression

    def total_real(self) -> float:
        """Real orders over the horizon."""
        return self.cumulative(self.horizon_s)

    def total_emitted(self) -> float:
        """Orders emitted over the horizon."""
        return self.sample_ratio * self.cumulative(self.horizon_s)

    def share_by(self, t_s: float) -> float:
        """Share of the horizon's orders placed by scenario time `t_s`."""
        total = self._integral(self.horizon_s)
        return self._integral(t_s) / total if total > 0 else 0.0

    def peak(self) -> tuple[float, float]:
        """(scenario time, real rate) of the top rate within the horizon (the first, if tied)."""
        t = self._peak()
        return t, self.rate(t)


def rate_at(scenario: Scenario, t_s: float) -> float:
    """Real orders per scenario second at `t_s` (builds a `Curve`: keep one for many calls)."""
    return Curve(scenario).rate(t_s)


def scenario_start_ms(scenario: Scenario) -> int:
    """The scenario's time 0 as epoch milliseconds (a naive `start` is read as UTC)."""
    start = scenario.start
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    # Integer timedelta division: exact, unlike float `timestamp() * 1000`.
    return (start - _EPOCH) // _MS


# --- shapes: each returns (level, integral of level from 0, time of the peak) ---------------

_Shape = tuple[Level, Level, Callable[[], float]]


def _constant(spec: CurveSpec) -> _Shape:
    def level(t: float) -> float:
        return 1.0 if t >= 0 else 0.0

    def integral(t: float) -> float:
        return t if t > 0 else 0.0

    return level, integral, lambda: 0.0


def _spike(spec: CurveSpec) -> _Shape:
    """Quadratic ease-in to 1.0 at the offset, exponential decay to the floor, optional bump."""
    p, a, d, f = spec.peak_offset_s, spec.start_fraction, spec.decay_s, spec.floor_fraction
    rise_area = a * p + (1.0 - a) * p / 3.0
    exp, expm1 = math.exp, math.expm1

    # Below the offset x = t / p < 1, so nothing overflows however small p is.
    def base_level(t: float) -> float:
        if t < 0:
            return 0.0
        if t < p:
            x = t / p
            return a + (1.0 - a) * x * x
        return f + (1.0 - f) * exp((p - t) / d)

    def base_integral(t: float) -> float:
        if t <= 0:
            return 0.0
        if t < p:
            x = t / p
            return a * t + (1.0 - a) * x * x * t / 3.0
        tail = t - p
        return rise_area + f * tail - (1.0 - f) * d * expm1(-tail / d)

    bump = spec.evening_bump
    if bump is None:
        return base_level, base_integral, lambda: p

    mu, sigma, h = bump.at_s, bump.width_s, bump.height_fraction
    inv_s2 = 1.0 / (sigma * _SQRT2)
    bump_area = h * sigma * _SQRT_HALF_PI
    x0 = -mu * inv_s2

    def level(t: float) -> float:
        if t < 0:
            return 0.0
        z = (t - mu) / sigma
        return base_level(t) + h * exp(-0.5 * z * z)

    def integral(t: float) -> float:
        if t <= 0:
            return 0.0
        return base_integral(t) + bump_area * _erf_diff(x0, (t - mu) * inv_s2)

    horizon = spec.horizon_s
    return level, integral, lambda: _scan_peak(level, horizon, (p, min(mu, horizon)))


def _erf_diff(x0: float, x1: float) -> float:
    """erf(x1) - erf(x0) without cancellation when both are far in the same tail."""
    if x0 >= 0 and x1 >= 0:
        return math.erfc(x0) - math.erfc(x1)
    if x0 <= 0 and x1 <= 0:
        return math.erfc(-x1) - math.erfc(-x0)
    return math.erf(x1) - math.erf(x0)


def _step(spec: CurveSpec) -> _Shape:
    """Piecewise constant: fraction f_i from at_i until the next step; the last holds."""
    ats = [at for at, _ in spec.steps]
    fracs = [f for _, f in spec.steps]
    before = [0.0]  # integral up to each step's start
    for i in range(1, len(ats)):
        before.append(before[-1] + fracs[i - 1] * (ats[i] - ats[i - 1]))

    def level(t: float) -> float:
        if t < 0:
            return 0.0
        return fracs[bisect_right(ats, t) - 1]

    def integral(t: float) -> float:
        if t <= 0:
            return 0.0
        i = bisect_right(ats, t) - 1
        return before[i] + fracs[i] * (t - ats[i])

    horizon = spec.horizon_s
    inside = [(f, at) for at, f in spec.steps if at < horizon] or [(fracs[0], 0.0)]
    top = max(f for f, _ in inside)
    return level, integral, lambda: min(at for f, at in inside if f == top)


def _ramp(spec: CurveSpec) -> _Shape:
    """Linear from `from_fraction` to `to_fraction` over `ramp_s`, then flat."""
    lo, hi, span = spec.from_fraction, spec.to_fraction, spec.ramp_s
    rise = hi - lo
    ramp_area = (lo + hi) * span / 2.0

    def level(t: float) -> float:
        if t < 0:
            return 0.0
        return lo + rise * (t / span) if t < span else hi

    def integral(t: float) -> float:
        if t <= 0:
            return 0.0
        if t < span:
            return t * (lo + rise * (t / span) / 2.0)
        return ramp_area + hi * (t - span)

    peak_t = min(span, spec.horizon_s) if hi > lo else 0.0
    return level, integral, lambda: peak_t


def _sine(spec: CurveSpec) -> _Shape:
    """low + (1 - low) * (1 - cos(2 pi t / period)) / 2: low at 0, 1.0 at half a period."""
    low, period = spec.low_fraction, spec.period_s
    w = 2.0 * math.pi / period
    amp = (1.0 - low) / 2.0
    cos, sin = math.cos, math.sin

    def level(t: float) -> float:
        if t < 0:
            return 0.0
        return low + amp * (1.0 - cos(w * t))

    def integral(t: float) -> float:
        if t <= 0:
            return 0.0
        return low * t + amp * (t - sin(w * t) / w)

    peak_t = min(period / 2.0, spec.horizon_s) if low < 1 else 0.0
    return level, integral, lambda: peak_t


def _square(spec: CurveSpec) -> _Shape:
    """1.0 for the first `duty` of each period, `low_fraction` for the rest."""
    low, period = spec.low_fraction, spec.period_s
    high_s = spec.duty * period
    per_period = high_s + low * (period - high_s)

    def level(t: float) -> float:
        if t < 0:
            return 0.0
        return 1.0 if t % period < high_s else low

    def integral(t: float) -> float:
        if t <= 0:
            return 0.0
        n, phase = divmod(t, period)
        return n * per_period + min(phase, high_s) + low * max(0.0, phase - high_s)

    return level, integral, lambda: 0.0


def _csv(spec: CurveSpec) -> _Shape:
    """Absolute rates, linear between points, 0 before the first, the last one held after."""
    xs = [s for s, _ in spec.points]
    ys = [r for _, r in spec.points]
    last = len(xs) - 1
    before = [0.0]  # integral up to each point
    for i in range(1, len(xs)):
        before.append(before[-1] + (ys[i - 1] + ys[i]) * (xs[i] - xs[i - 1]) / 2.0)
    first = xs[0]

    # Interpolation by the weight w in [0, 1), not by a slope: points may be very close.
    def level(t: float) -> float:
        if t < first:
            return 0.0
        i = bisect_right(xs, t) - 1
        if i == last:
            return ys[i]
        w = (t - xs[i]) / (xs[i + 1] - xs[i])
        return ys[i] + (ys[i + 1] - ys[i]) * w

    def integral(t: float) -> float:
        if t <= first:
            return 0.0
        i = bisect_right(xs, t) - 1
        dt = t - xs[i]
        if i == last:
            return before[i] + ys[i] * dt
        y = ys[i] + (ys[i + 1] - ys[i]) * (dt / (xs[i + 1] - xs[i]))
        return before[i] + dt * (ys[i] + y) / 2.0

    horizon = spec.horizon_s
    # Linear pieces peak at a point, or where the horizon cuts a rising piece.
    candidates = [x for x in xs if x <= horizon] + [horizon]

    def peak() -> float:
        return max(candidates, key=lambda x: (level(x), -x))

    return level, integral, peak


def _scan_peak(level: Level, horizon: float, hints: tuple[float, ...]) -> float:
    """Time of the maximum of `level` on [0, horizon]: a scan, then golden-section refinement."""
    step = horizon / _PEAK_SCAN
    grid = [i * step for i in range(_PEAK_SCAN + 1)] + list(hints)
    best = max(grid, key=lambda t: (level(t), -t))
    lo, hi = max(0.0, best - step), min(horizon, best + step)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(80):
        m1 = hi - ratio * (hi - lo)
        m2 = lo + ratio * (hi - lo)
        if level(m1) >= level(m2):
            hi = m2
        else:
            lo = m1
    refined = (lo + hi) / 2.0
    return refined if level(refined) > level(best) else best


_SHAPES: Final[dict[str, Callable[[CurveSpec], _Shape]]] = {
    "midnight-spike": _spike,
    "constant": _constant,
    "step": _step,
    "ramp": _ramp,
    "sine": _sine,
    "square": _square,
}
