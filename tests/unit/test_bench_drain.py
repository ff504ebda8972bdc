"""The rates a worker stage of `flashsale bench` reports from one drain (benchmarks/bench.py)."""

from __future__ import annotations

import pytest

from benchmarks.bench import DecisionSpan, _drain

S = 1_000_000_000  # ns


def test_the_clock_starts_at_the_ready_poll_when_no_decision_came_before_it() -> None:
    span = DecisionSpan(first_ns=11 * S, last_ns=15 * S, first_events=1000, before_ready=0)
    drain = _drain(1_001_000, ready_ns=10 * S, drained_ns=16 * S, cpu_s=4.0, span=span)
    assert drain.wall_per_s == pytest.approx(1_001_000 / 6)
    assert drain.cpu_us == pytest.approx(4.0 / 1_001_000 * 1e6)
    assert drain.steady_per_s == pytest.approx(1_000_000 / 4)


def test_a_late_ready_poll_neither_shortens_the_clock_nor_spreads_cpu_over_earlier_events() -> None:
    # The worker decided 200,000 events before the poll saw it ready (a first fetch held its
    # /totals): they count in the time, and the CPU measured from the poll is theirs only.
    span = DecisionSpan(first_ns=9 * S, last_ns=15 * S, first_events=1000, before_ready=200_000)
    drain = _drain(1_200_000, ready_ns=10 * S, drained_ns=16 * S, cpu_s=3.5, span=span)
    assert drain.wall_per_s == pytest.approx(1_200_000 / 7)
    assert drain.cpu_us == pytest.approx(3.5 / 1_000_000 * 1e6)
    assert drain.steady_per_s == pytest.approx(1_199_000 / 6)
