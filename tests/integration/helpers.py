"""What integration tests share: a small fast scenario and a producer run."""

from __future__ import annotations

from flashsale.scenario import Scenario
from flashsale.settings import Settings
from producers.generator import Generator
from producers.metrics import ProducerMetrics
from producers.pacing import produce_scenario
from producers.sinks.kafka import OrderEmitter

# 2,500 orders/s with short lifecycle delays, so a run of seconds pays, cancels and refunds.
SMALL = Scenario.model_validate(
    {
        "name": "test-small",
        "seed": 5,
        "curve": {"shape": "constant", "horizon_s": 3600.0},
        "scale": {"peak_per_s": 2_500.0, "sample_ratio": 1.0, "compression": 1.0},
        "mix": {
            "pay_delay_mean_s": 0.5,
            "unpaid_timeout_s": 2.0,
            "refund_rate": 0.05,
            "refund_delay_mean_s": 0.5,
            "bot_share": 0.02,
        },
    }
)


# The same at 30x: 60 scenario seconds pass in 2 wall seconds, so minute windows close (and
# name their hot products) within a test.
FAST_CLOCK = SMALL.model_copy(
    update={
        "name": "test-fast-clock",
        "scale": SMALL.scale.model_copy(update={"peak_per_s": 100.0, "compression": 30.0}),
    }
)


async def produce(
    settings: Settings,
    scenario: Scenario,
    events: int,
    pack: int = 0,
    metrics: ProducerMetrics | None = None,
) -> int:
    """Emit the scenario's first `events` events on schedule (in packed messages of up to
    `pack` events when `pack` > 0), counted in `metrics` when given; the number of events
    sent."""
    emitter = OrderEmitter(settings.model_copy(update={"pack": pack}), metrics)
    await emitter.start()
    try:
        stats = await produce_scenario(emitter, Generator(scenario), None, events)
    finally:
        await emitter.stop()
    assert stats.errors == 0
    return stats.orders_sent


# The same with flash-sale SKUs of a few units and many bots buying them: they sell out within
# seconds (the dashboard's sold-out feed).
SELL_OUT = SMALL.model_copy(
    update={
        "name": "test-sell-out",
        "catalog": SMALL.catalog.model_copy(update={"flash_stock": (5, 10)}),
        "mix": SMALL.mix.model_copy(update={"bot_share": 0.2}),
    }
)
