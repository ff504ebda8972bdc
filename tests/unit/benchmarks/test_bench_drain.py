"""The rates a worker stage of `flashsale bench` reports from one drain (benchmarks/bench.py)."""

from __future__ import annotations

import pytest

from benchmarks.bench import DecisionSpan, _drain

S = 1_000_000_000  # ns


@pytest.mark.parametrize(
    ("first_s", "before_ready", "wall", "cpu_events"),
    [
        # No decision before the poll saw the worker ready: the clock starts at the poll.
        (11, 0, 1_200_000 / 6, 1_200_000),
        # 200,000 events decided before the poll (a first fetch held its /totals): their
        # second counts in the time, and the CPU measured from the poll is the rest's only.
        (9, 200_000, 1_200_000 / 7, 1_000_000),
    ],
    ids=["ready-first", "decided-before-ready"],
)
def test_drain_rates(first_s: int, before_ready: int, wall: float, cpu_events: int) -> None:
    span = DecisionSpan(
        first_ns=first_s * S, last_ns=15 * S, first_events=1000, before_ready=before_ready
    )
    drain = _drain(1_200_000, ready_ns=10 * S, drained_ns=16 * S, cpu_s=3.5, span=span)
    assert drain.wall_per_s == pytest.approx(wall)
    assert drain.cpu_us == pytest.approx(3.5 / cpu_events * 1e6)
    assert drain.steady_per_s == pytest.approx(1_199_000 / (15 - first_s))


def test_no_cpu_figure_when_everything_was_decided_before_the_poll() -> None:
    # A small topic on a fast broker: the worker decided all of it before the poll saw it
    # ready, so no CPU was measured for any event (not the CPU divided by one event).
    span = DecisionSpan(first_ns=9 * S, last_ns=10 * S, first_events=1000, before_ready=100_000)
    drain = _drain(100_000, ready_ns=11 * S, drained_ns=12 * S, cpu_s=0.01, span=span)
    assert drain.cpu_us is None
