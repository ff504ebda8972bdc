"""The bare-client ceiling `flashsale rate` puts its rating beside, measured in the same run on
the same kind of broker, and the scenario's busiest second in events (what the ceiling is
compared with: a rating counts orders at the curve's peak, a consumer reads events)."""

from __future__ import annotations

from typing import Any, Final

from flashsale.brokers.local import broker_for, settings_on
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from producers.generator import Generator

__all__ = ["CEILING_EVENTS", "measure_ceiling", "peak_events_per_s"]

#: Events the ceiling's bare loop reads: per-order messages, and packed ones.
CEILING_EVENTS: Final = {False: 100_000, True: 500_000}


def measure_ceiling(settings: Settings, pack: int) -> dict[str, Any]:
    """`benchmarks.bench.bare_ceiling` on a broker of the rating's kind (started for it and
    stopped after; or the given servers)."""
    from benchmarks.bench import bare_ceiling

    with broker_for(settings, announce=False) as (bootstrap, _):
        return bare_ceiling(
            settings_on(settings, bootstrap), bootstrap, CEILING_EVENTS[bool(pack)], pack
        )


def peak_events_per_s(scenario: Scenario, duration_s: float) -> int:
    """Events (restocks aside) of the scenario's busiest wall-clock second within
    `duration_s`: every lifecycle step, retry and malformed message the producer sends."""
    return max(
        (len(block) for block in Generator(scenario).blocks(duration_s=duration_s, block_s=1.0)),
        default=0,
    )
