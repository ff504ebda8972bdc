"""The librdkafka sink through confluent-kafka: the client for peak rates."""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from flashsale.acklog import AckLogWriter, ack_line
from flashsale.client_config import ClientConfigError
from flashsale.kafka.clients import librdkafka_security
from flashsale.settings import Settings
from producers.metrics import ProducerMetrics
from producers.sinks.base import CountingSink, Headers, ProduceStats, with_seqs

__all__ = ["ConfluentSink", "librdkafka_config", "librdkafka_producer"]


def librdkafka_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """What every librdkafka producer of ours is configured with: acks=all, idempotent unless
    `enable_idempotence` is off, compression and batching from the settings, then the
    security settings and the client-config file's properties (`librdkafka_security`)."""
    return {
        "bootstrap.servers": ",".join(settings.bootstrap_list()),
        "client.id": client_id,
        # Java's and aiokafka's partitioner: a SKU lands on the same partition whichever
        # client sent it (librdkafka's default, consistent_random, is CRC32).
        "partitioner": "murmur2_random",
        "acks": "all",
        "linger.ms": settings.linger_ms,
        "batch.size": settings.max_batch_bytes,
        "compression.type": settings.compression,
        # Off on the embedded broker (Tansu answers InitProducerId with UnknownError); the
        # workers dedupe either way.
        "enable.idempotence": settings.enable_idempotence,
        **librdkafka_security(settings),
    }


_P = TypeVar("_P")


def librdkafka_producer(
    factory: Callable[[dict[str, Any]], _P], settings: Settings, config: dict[str, Any]
) -> _P:
    """`factory(config)` (confluent-kafka's `Producer`); a property librdkafka rejects that
    came from the client-config file is a `ClientConfigError` naming librdkafka's reason."""
    from confluent_kafka import KafkaException

    try:
        return factory(config)
    except KafkaException as exc:
        if settings.client_config is None:
            raise
        reason = exc.args[0].str() if exc.args else str(exc)
        raise ClientConfigError(
            f"librdkafka rejects the client config {settings.client_config}: {reason}"
        ) from None


class ConfluentSink(CountingSink):
    """librdkafka through confluent-kafka: the client for peak rates.

    Acknowledgements are counted without a per-message callback: librdkafka reports only
    failures (`delivery.report.only.error`), and acknowledged = sent - queued - failed.

    With `ack_log`, an offset is known only from a delivery report, so every message gets
    one (a Python callback each, `_on_delivery`, told the message's seq: a report's message
    carries no headers) and carries its `flashsale.seq` header; the callback keeps the
    message's line (partition, offset, seq, CRC-32 of key and value) and `_settle` writes the
    lines (`flashsale.acklog`).
    """

    wall_clock = True

    def __init__(
        self,
        settings: Settings,
        metrics: ProducerMetrics | None = None,
        ack_log: Path | None = None,
    ) -> None:
        from confluent_kafka import Producer

        self.settings = settings
        self.metrics = metrics
        self.stats = ProduceStats()
        self._failed = 0
        self._unproduced = 0
        self._last_error = ""
        self._ack_log = None if ack_log is None else AckLogWriter(ack_log, settings.topic_orders)
        # Appended to by delivery reports, which `flush` runs in another thread.
        self._lines: deque[bytes] = deque()
        self._producer = librdkafka_producer(
            Producer,
            settings,
            {
                **librdkafka_config(settings, "flashsale-producer"),
                # Bounded: at most this many events (about 300 bytes each) wait in memory.
                "queue.buffering.max.messages": max(settings.max_in_flight * 10, 10_000),
                "delivery.report.only.error": self._ack_log is None,
                "on_delivery": self._on_error,
            },
        )

    def _on_error(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed += 1
            self._last_error = str(err)

    def _on_delivery(self, seq: int | None, err: Any, msg: Any) -> None:
        """A message's delivery report (with an ack log): a failure counted, an
        acknowledgement's line kept for `_settle` to write."""
        if err is not None:
            self._failed += 1
            self._last_error = str(err)
            return
        crc = zlib.crc32(msg.value() or b"", zlib.crc32(msg.key() or b""))
        self._lines.append(ack_line(msg.partition(), msg.offset(), seq, crc))

    async def start(self) -> None:
        """librdkafka connects lazily; nothing to wait for."""

    async def partitions(self) -> int:
        """How many partitions `orders` has (from the cluster's metadata)."""
        topic = self.settings.topic_orders
        meta = await asyncio.to_thread(self._producer.list_topics, topic, 10)
        return len(meta.topics[topic].partitions)

    def _settle(self) -> None:
        self._producer.poll(0)
        if self._ack_log is not None and self._lines:
            # Delivery reports run inside poll, or flush in another thread: take only the
            # lines already there.
            lines = self._lines
            self._ack_log.write([lines.popleft() for _ in range(len(lines))])
        st = self.stats
        # librdkafka's queue length counts its messages not yet acknowledged, and also events
        # waiting for a poll (errors, logs), so this is a lower bound of the acknowledged
        # ones, exact once the queue is empty: never count down from an earlier bound. Sends
        # counted but not yet handed to librdkafka (waiting on a full queue) are not in the
        # queue and must not count as acknowledged.
        bound = st.sent - self._unproduced - len(self._producer) - self._failed
        acked = max(bound, st.acked)
        self._count_settled(acked - st.acked, self._failed - st.errors, self._last_error)

    async def _send(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        restocks: int,
        seqs: Sequence[int] | None,
    ) -> None:
        produce = self._producer.produce
        poll = self._producer.poll
        topic = self.settings.topic_orders
        self._count_sent(len(values), restocks)
        self._unproduced = len(values)
        if self._ack_log is not None:
            await self._send_logged(keys, values, headers, seqs)
            return
        # No `flashsale.seq` here: a header on every message costs librdkafka's Python
        # binding about 2 µs a message (the confluent path fell from 0.57 to 0.35 of the bare
        # loop, measured), and `--resume` needs aiokafka's order anyway.
        for key, value, hdrs in zip(
            keys, values, with_seqs(headers, None, len(values)), strict=True
        ):
            try:
                if hdrs is None:
                    produce(topic, value, key)
                else:
                    # confluent-kafka 2.13+ types `headers` more narrowly than older
                    # releases (the `peers` extra holds it below 2.13 for quixstreams).
                    produce(topic, value, key, headers=hdrs)  # type: ignore[arg-type, unused-ignore]
            except BufferError:
                # The bounded local queue is full: wait for the broker, then go on.
                while True:
                    poll(0.005)
                    await asyncio.sleep(0)
                    try:
                        produce(topic, value, key, headers=hdrs)  # type: ignore[arg-type, unused-ignore]
                        break
                    except BufferError:
                        continue
            self._unproduced -= 1
        self._settle()

    async def _send_logged(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        seqs: Sequence[int] | None,
    ) -> None:
        """`_send` with an ack log: each message with its `flashsale.seq` header and a
        delivery report of its own that knows the seq."""
        produce = self._producer.produce
        poll = self._producer.poll
        topic = self.settings.topic_orders
        report = self._on_delivery
        positions = itertools.repeat(None) if seqs is None else seqs
        for key, value, hdrs, seq in zip(
            keys, values, with_seqs(headers, seqs, len(values)), positions, strict=False
        ):
            on_delivery = functools.partial(report, seq)
            while True:
                try:
                    produce(topic, value, key, headers=hdrs, on_delivery=on_delivery)  # type: ignore[arg-type, unused-ignore]
                    break
                except BufferError:
                    # The bounded local queue is full: wait for the broker, then go on.
                    poll(0.005)
                    await asyncio.sleep(0)
            self._unproduced -= 1
        self._settle()

    async def flush(self) -> None:
        """Wait until everything queued is acknowledged or failed."""
        while len(self._producer):
            await asyncio.to_thread(self._producer.flush, 0.1)
        self._settle()
        self.stats.finished_ns = time.time_ns()

    async def stop(self) -> None:
        """Flush; librdkafka's producer closes when it is collected."""
        try:
            await self.flush()
        finally:
            if self._ack_log is not None:
                self._ack_log.close()
