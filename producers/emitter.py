"""The Kafka emitter: paces generator output onto topic `orders`, queued and batched.

`send()` returns as soon as an order is queued in the client's batch; acknowledgements are
counted in callbacks, and in-flight orders are bounded so memory stays flat when the broker
is slower than the schedule.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from flashsale.events import OrderEvent, encode_event
from flashsale.settings import Settings
from producers.generator import Generator
from producers.metrics import ProducerMetrics

__all__ = ["OrderEmitter", "ProduceStats", "produce_scenario"]


@dataclass(slots=True)
class ProduceStats:
    """Live counters of one producing run."""

    sent: int = 0
    acked: int = 0
    errors: int = 0
    orders_sent: int = 0
    restocks_sent: int = 0
    started_ns: int = 0
    finished_ns: int = 0
    last_error: str = ""

    @property
    def in_flight(self) -> int:
        """Sent and neither acknowledged nor failed."""
        return self.sent - self.acked - self.errors

    @property
    def duration_s(self) -> float:
        """Seconds from the first send to the last acknowledgement (or now)."""
        end = self.finished_ns or time.time_ns()
        return max((end - self.started_ns) / 1e9, 1e-9) if self.started_ns else 0.0


class OrderEmitter:
    """An aiokafka producer for order events with bounded in-flight sends."""

    def __init__(self, settings: Settings, metrics: ProducerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stats = ProduceStats()
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_list(),
            client_id="flashsale-producer",
            acks="all",
            linger_ms=settings.linger_ms,
            max_batch_size=settings.max_batch_bytes,
            # Tansu answers idempotent producers with UnknownError; dedupe happens downstream.
            enable_idempotence=False,
        )

    async def start(self) -> None:
        """Connect to the broker."""
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is queued and disconnect."""
        try:
            await self._producer.flush()
        finally:
            await self._producer.stop()
            self.stats.finished_ns = self.stats.finished_ns or time.time_ns()

    def _settle(self) -> None:
        """Count the acknowledged (or failed) sends at the head of the queue."""
        pending = self._pending
        st = self.stats
        acked = errors = 0
        # Futures complete in send order per partition; stopping at the first pending one
        # only delays counting, never loses it. No per-message callback is scheduled.
        while pending and pending[0].done():
            fut = pending.popleft()
            if fut.cancelled() or fut.exception() is not None:
                errors += 1
                st.last_error = "cancelled" if fut.cancelled() else repr(fut.exception())
            else:
                acked += 1
        st.acked += acked
        st.errors += errors
        m = self.metrics
        if m:
            if acked:
                m.acked.inc(acked)
            if errors:
                m.errors.inc(errors)
            m.in_flight.set(st.in_flight)

    async def send(
        self, events: Iterable[OrderEvent], headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        """Queue events (stamped with the wall-clock emit time), waiting only when full."""
        st = self.stats
        if not st.started_ns:
            st.started_ns = time.time_ns()
        send = self._producer.send
        topic = self.settings.topic_orders
        limit = self.settings.max_in_flight
        pending = self._pending
        append = pending.append
        now_ns = time.time_ns
        n_orders = 0
        n = 0
        for event in events:
            if len(pending) >= limit:
                # Bounded in flight: wait for the oldest send, not for each one.
                await asyncio.wait([pending[0]])
                self._settle()
            append(
                await send(
                    topic,
                    encode_event(event, emit_ns=now_ns()),
                    key=event.sku.encode(),
                    headers=headers,
                )
            )
            n += 1
            if event.type == "created":
                n_orders += 1
        st.sent += n
        st.orders_sent += n_orders
        st.restocks_sent += n - n_orders
        if self.metrics:
            self.metrics.sent.inc(n)
        self._settle()

    async def flush(self) -> None:
        """Wait until everything queued is acknowledged or failed."""
        await self._producer.flush()
        if self._pending:
            await asyncio.wait(list(self._pending))
        self._settle()
        self.stats.finished_ns = time.time_ns()


async def produce_scenario(
    emitter: OrderEmitter,
    generator: Generator,
    duration_s: float | None,
    max_orders: int | None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ProduceStats:
    """Restock the catalog, then emit the scenario's orders on schedule; flush at the end."""
    # The restocks carry the run's identity, so `verify` can name the scenario and seed.
    scenario = generator.scenario
    identity = [
        ("flashsale.scenario", scenario.name.encode()),
        ("flashsale.seed", str(scenario.seed).encode()),
    ]
    await emitter.send(generator.restocks(), headers=identity)
    await emitter.flush()
    start = time.monotonic()
    metrics = emitter.metrics
    for offset_s, events in generator.schedule(duration_s=duration_s, max_orders=max_orders):
        if should_stop():
            break
        delay = start + offset_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            if metrics:
                metrics.behind.set(-delay)
            await asyncio.sleep(0)  # behind schedule: still let acks and status run
        if events:
            await emitter.send(events)
    await emitter.flush()
    if metrics:
        metrics.behind.set(0)
    return emitter.stats
