"""The Kafka emitter: paces generator output onto topic `orders`, queued and batched.

`send()` returns as soon as an order is queued in the client's batch; acknowledgements are
counted in callbacks, and in-flight orders are bounded so memory stays flat when the broker
is slower than the schedule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

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
    acked_by_partition: dict[int, int] = field(default_factory=dict)

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
        self._room = asyncio.Event()
        self._room.set()
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

    def _on_done(self, fut: asyncio.Future[object]) -> None:
        st = self.stats
        m = self.metrics
        if fut.cancelled() or fut.exception() is not None:
            st.errors += 1
            st.last_error = "cancelled" if fut.cancelled() else repr(fut.exception())
            if m:
                m.errors.inc()
        else:
            st.acked += 1
            partition = fut.result().partition  # type: ignore[attr-defined]
            st.acked_by_partition[partition] = st.acked_by_partition.get(partition, 0) + 1
            if m:
                m.acked.inc()
        if m:
            m.in_flight.set(st.in_flight)
        if st.in_flight < self.settings.max_in_flight:
            self._room.set()

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
        on_done = self._on_done
        n_orders = 0
        n = 0
        for event in events:
            if st.sent - st.acked - st.errors >= limit:
                self._room.clear()
                await self._room.wait()
            fut = await send(
                topic,
                encode_event(event, emit_ns=time.time_ns()),
                key=event.sku.encode(),
                headers=headers,
            )
            fut.add_done_callback(on_done)
            st.sent += 1
            n += 1
            if event.type == "created":
                n_orders += 1
        st.orders_sent += n_orders
        st.restocks_sent += n - n_orders
        if self.metrics:
            self.metrics.sent.inc(n)

    async def flush(self) -> None:
        """Wait until everything queued is acknowledged or failed."""
        await self._producer.flush()
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
