"""What a 202 that waits for the broker costs: `python -m benchmarks.gateway_ack`.

Starts the embedded broker and, in this process, the gateway over a real `OrderEmitter`,
twice: answering 202 once the checkout is queued (the gateway before it awaited
acknowledgements) and once the broker acknowledged every line (the gateway now). Prints
checkouts/s and latency percentiles for one client posting one checkout at a time and for 32
at once; docs/reliability.md quotes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from flashsale.brokers.embedded import EmbeddedBroker
from flashsale.events import OrderEvent
from flashsale.kafka.admin import ensure_run_topics
from flashsale.scenario import load_scenario
from flashsale.scenario.catalog import Catalog
from flashsale.settings import Settings
from producers.gateway import GatewayMetrics, OrderSink, make_gateway
from producers.sinks.kafka import OrderEmitter
from tests.conftest import fresh_settings

CATALOG = Catalog.for_scenario(load_scenario("singles-day-2020"))
RUNS = ((1, 1_000), (32, 4_000))


class QueueOnly:
    """The gateway's old answer: 202 as soon as the lines are queued in the producer."""

    def __init__(self, emitter: OrderEmitter) -> None:
        self.emitter = emitter

    @property
    def in_flight(self) -> int:
        return self.emitter.in_flight

    async def deliver(self, events: Sequence[OrderEvent]) -> None:
        await self.emitter.send(events)


def _checkout(n: int) -> dict[str, Any]:
    skus = CATALOG.skus
    return {
        "lines": [
            {"sku": skus[n % len(skus)].sku, "quantity": 1},
            {"sku": skus[(n * 7 + 3) % len(skus)].sku, "quantity": 1},
        ],
        "buyer": {"province": "Zhejiang", "channel": "app", "payment": "alipay"},
    }


async def _measure(
    settings: Settings, wrap: Callable[[OrderEmitter], OrderSink], clients: int, n: int
) -> tuple[float, float, float]:
    emitter = OrderEmitter(settings)
    await emitter.start()
    app = make_gateway(
        CATALOG, wrap(emitter), settings.max_in_flight, GatewayMetrics(CollectorRegistry())
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    latencies: list[float] = []
    numbers = iter(range(n))
    try:
        async with aiohttp.ClientSession() as session:

            async def client() -> None:
                for i in numbers:
                    started = time.perf_counter()
                    async with session.post(
                        f"http://127.0.0.1:{port}/orders", json=_checkout(i)
                    ) as resp:
                        assert resp.status == 202, resp.status
                        await resp.read()
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            took = time.perf_counter() - started
    finally:
        await runner.cleanup()
        await emitter.stop()
    latencies.sort()
    return (
        n / took,
        latencies[len(latencies) // 2] * 1e3,
        latencies[int(len(latencies) * 0.99)] * 1e3,
    )


def main() -> None:
    """Time each way of acknowledging a checkout on the same broker; print the rates."""
    ways: list[tuple[str, Callable[[OrderEmitter], OrderSink]]] = [
        ("202 once queued", QueueOnly),
        ("202 once acknowledged", lambda emitter: emitter),
    ]
    with EmbeddedBroker() as broker:
        for clients, n in RUNS:
            for name, wrap in ways:
                settings = fresh_settings(broker.bootstrap)
                asyncio.run(ensure_run_topics(settings, broker.bootstrap))
                rate, p50, p99 = asyncio.run(_measure(settings, wrap, clients, n))
                print(
                    f"{clients:>2} at once, {n:,} checkouts, {name:22}: {rate:7,.0f}/s  "
                    f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms",
                    flush=True,
                )


if __name__ == "__main__":
    main()
