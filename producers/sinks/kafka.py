"""The aiokafka sink, the default client: bounded in-flight sends, packed messages."""

from __future__ import annotations

import asyncio
import itertools
import time
import zlib
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flashsale.acklog import ACK_LINE, AckLogWriter, ack_line
from flashsale.events import PACKED_HEADER, OrderEvent, encode_event
from flashsale.kafka.clients import aiokafka_producer
from flashsale.settings import Settings
from producers.metrics import ProducerMetrics
from producers.sinks.base import SEQ_HEADER, CountingSink, Headers, ProduceStats, with_seqs

__all__ = ["OrderEmitter"]


#: What the acknowledgement log needs of a send besides its future: key, value, seq.
_Sent = tuple[bytes | None, bytes, int | None]


class OrderEmitter(CountingSink):
    """aiokafka producer with bounded in-flight sends (the default client).

    With `ack_log`, every acknowledged message is written to that file (`flashsale.acklog`):
    its partition and offset from the send's RecordMetadata, its seq and the CRC-32 of its
    key and value, read when `_settle` counts the send, with no callback of its own.
    """

    wall_clock = True

    def __init__(
        self,
        settings: Settings,
        metrics: ProducerMetrics | None = None,
        ack_log: Path | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pack = settings.pack
        self.stats = ProduceStats()
        self._pending: deque[asyncio.Future[Any]] = deque()
        # Packed messages in flight with the events each carries, and their sum.
        self._packed: deque[tuple[asyncio.Future[Any], int]] = deque()
        self._packed_events = 0
        self._partitions: int | None = None
        self._ack_path = ack_log
        self._ack_log: AckLogWriter | None = None
        # With an ack log: what each future of `_pending` (and of `_packed`) sent, in order.
        self._sent: deque[_Sent] | None = None
        self._sent_packed: deque[_Sent] | None = None
        self._producer = aiokafka_producer(settings, "flashsale-producer")

    async def start(self) -> None:
        """Connect to the broker (and open the acknowledgement log)."""
        await self._producer.start()
        if self._ack_path is not None:
            self._ack_log = AckLogWriter(self._ack_path, self.settings.topic_orders)
            self._sent, self._sent_packed = deque(), deque()

    async def stop(self) -> None:
        """Flush what is queued and disconnect."""
        try:
            await self.flush()
        finally:
            await self._producer.stop()
            self.stats.finished_ns = self.stats.finished_ns or time.time_ns()
            if self._ack_log is not None:
                self._ack_log.close()

    def _settle(self) -> None:
        """Count the acknowledged (or failed) sends at the head of the queue."""
        if self._sent is not None:
            self._count_settled(*self._settle_logged(self._sent))
            return
        pending = self._pending
        acked = errors = 0
        last_error = ""
        # Futures complete in send order per partition; stopping at the first pending one
        # only delays counting, never loses it. No per-message callback is scheduled.
        while pending and pending[0].done():
            fut = pending.popleft()
            if fut.cancelled() or fut.exception() is not None:
                errors += 1
                last_error = "cancelled" if fut.cancelled() else repr(fut.exception())
            else:
                acked += 1
        packed = self._packed
        while packed and packed[0][0].done():
            fut, events = packed.popleft()
            self._packed_events -= events
            if fut.cancelled() or fut.exception() is not None:
                errors += events
                last_error = "cancelled" if fut.cancelled() else repr(fut.exception())
            else:
                acked += events
        self._count_settled(acked, errors, last_error)

    def _settle_logged(self, sent: deque[_Sent]) -> tuple[int, int, str]:
        """`_settle` with an acknowledgement log: each acknowledged message's line, from its
        RecordMetadata and what was sent; the lines written together."""
        assert self._ack_log is not None and self._sent_packed is not None
        lines: list[bytes] = []
        crc32 = zlib.crc32
        line = ACK_LINE
        acked = errors = 0
        last_error = ""
        pending = self._pending
        while pending and pending[0].done():
            fut = pending.popleft()
            key, value, seq = sent.popleft()
            if fut.cancelled() or fut.exception() is not None:
                errors += 1
                last_error = "cancelled" if fut.cancelled() else repr(fut.exception())
            else:
                acked += 1
                md = fut.result()
                lines.append(
                    line % (md.partition, md.offset, seq, crc32(value, crc32(key or b"")))
                    if seq is not None
                    else ack_line(md.partition, md.offset, seq, crc32(value, crc32(key or b"")))
                )
        packed, sent_packed = self._packed, self._sent_packed
        while packed and packed[0][0].done():
            fut, events = packed.popleft()
            _, value, seq = sent_packed.popleft()
            self._packed_events -= events
            if fut.cancelled() or fut.exception() is not None:
                errors += events
                last_error = "cancelled" if fut.cancelled() else repr(fut.exception())
            else:
                acked += events
                md = fut.result()
                lines.append(line % (md.partition, md.offset, seq, crc32(value)))
        self._ack_log.write(lines)
        return acked, errors, last_error

    async def partitions(self) -> int:
        """How many partitions `orders` has (asked once)."""
        if self._partitions is None:
            found = await self._producer.partitions_for(self.settings.topic_orders)
            self._partitions = len(found)
        return self._partitions

    async def send_packed(self, messages: Sequence[tuple[int, bytes, int, int]]) -> None:
        """Queue packed messages, each to its partition with its `flashsale.packed` and
        `flashsale.seq` headers; at most `max_in_flight` events wait for acknowledgement."""
        send = self._producer.send
        topic = self.settings.topic_orders
        limit = self.settings.max_in_flight
        packed = self._packed
        self._count_sent(sum(m[2] for m in messages))
        for partition, value, events, seq in messages:
            while packed and self._packed_events + events > limit:
                await asyncio.wait([packed[0][0]])
                self._settle()
            headers = [(PACKED_HEADER, b"%d" % events), (SEQ_HEADER, b"%d" % seq)]
            fut = await send(topic, value, partition=partition, headers=headers)
            packed.append((fut, events))
            if self._sent_packed is not None:
                self._sent_packed.append((None, value, seq))
            self._packed_events += events
        self._settle()

    async def _send(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        restocks: int,
        seqs: Sequence[int] | None,
    ) -> None:
        send = self._producer.send
        topic = self.settings.topic_orders
        limit = self.settings.max_in_flight
        pending = self._pending
        append = pending.append
        self._count_sent(len(values), restocks)
        sent = self._sent
        if sent is not None:
            await self._send_logged(keys, values, headers, seqs, sent)
            return
        for key, value, hdrs in zip(
            keys, values, with_seqs(headers, seqs, len(values)), strict=True
        ):
            if len(pending) >= limit:
                # Bounded in flight: wait for the oldest send, not for each one.
                await asyncio.wait([pending[0]])
                self._settle()
            append(await send(topic, value, key=key, headers=hdrs))
        self._settle()

    async def _send_logged(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        seqs: Sequence[int] | None,
        sent: deque[_Sent],
    ) -> None:
        """`_send` with an acknowledgement log: what each future sent kept beside it."""
        send = self._producer.send
        topic = self.settings.topic_orders
        limit = self.settings.max_in_flight
        pending = self._pending
        positions = itertools.repeat(None) if seqs is None else seqs
        for key, value, hdrs, seq in zip(
            keys, values, with_seqs(headers, seqs, len(values)), positions, strict=False
        ):
            if len(pending) >= limit:
                await asyncio.wait([pending[0]])
                self._settle()
            pending.append(await send(topic, value, key=key, headers=hdrs))
            sent.append((key, value, seq))
        self._settle()

    async def deliver(self, events: Sequence[OrderEvent]) -> None:
        """Send `events` and return once the broker acknowledged every one (acks=all); the
        first failure is raised. Concurrent callers share the producer's batches."""
        send = self._producer.send
        topic = self.settings.topic_orders
        pending = self._pending
        self._count_sent(len(events))
        sent = []
        for event in events:
            while len(pending) >= self.settings.max_in_flight:
                await asyncio.wait([pending[0]])
                self._settle()
            key, value = event.sku.encode(), encode_event(event)
            fut = await send(topic, value, key=key)
            pending.append(fut)
            sent.append(fut)
            if self._sent is not None:
                self._sent.append((key, value, None))
        try:
            await asyncio.gather(*sent)
        finally:
            self._settle()

    async def flush(self) -> None:
        """Wait until everything queued is acknowledged or failed."""
        await self._producer.flush()
        waiting = [*self._pending, *(fut for fut, _ in self._packed)]
        if waiting:
            await asyncio.wait(waiting)
        self._settle()
        self.stats.finished_ns = time.time_ns()
