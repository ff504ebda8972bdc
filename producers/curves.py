"""Traffic curves: the order rate over the night, in orders per wall-clock second.

Scenario time `t_s` counts seconds after 00:00 China time on 11 November; wall time runs
`compression` times slower, so wall second `w` is scenario second `w * compression`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from flashsale.scenario import CurveSpec

__all__ = ["expected_orders", "rate_at", "scenario_start_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def rate_at(curve: CurveSpec, t_s: float) -> float:
    """Orders per wall second at scenario time `t_s` seconds after 00:00 China time."""
    peak = curve.peak_rate
    if curve.shape == "constant":
        return peak
    offset = curve.peak_offset_s
    if t_s < offset:
        start = curve.start_fraction * peak
        if t_s <= 0:
            return start
        # Quadratic ease-in: a slow first few seconds, then the crowd piles in.
        x = t_s / offset
        return start + (peak - start) * x * x
    floor = curve.floor_fraction * peak
    return floor + (peak - floor) * math.exp(-(t_s - offset) / curve.decay_s)


def expected_orders(curve: CurveSpec, wall_s: float) -> float:
    """Orders expected in the first `wall_s` wall seconds: the exact integral of `rate_at`."""
    if wall_s <= 0:
        return 0.0
    peak = curve.peak_rate
    if curve.shape == "constant":
        return peak * wall_s
    # Integrate over scenario time in closed form, then convert back: dt_wall = dt / compression.
    t = wall_s * curve.compression
    offset = curve.peak_offset_s
    start = curve.start_fraction * peak
    rise_t = min(t, offset)
    total = start * rise_t
    if offset > 0:
        total += (peak - start) * rise_t**3 / (3.0 * offset * offset)
    if t > offset:
        floor = curve.floor_fraction * peak
        tail = t - offset
        total += floor * tail + (peak - floor) * curve.decay_s * -math.expm1(-tail / curve.decay_s)
    return total / curve.compression


def scenario_start_ms(curve: CurveSpec) -> int:
    """The scenario's 00:00 China time as epoch milliseconds (a naive `start` is read as UTC)."""
    start = curve.start if curve.start.tzinfo is not None else curve.start.replace(tzinfo=UTC)
    # Integer timedelta division: exact, unlike float `timestamp() * 1000`.
    return (start - _EPOCH) // _MS
