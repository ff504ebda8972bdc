"""The Faust worker: consumes `orders`, applies the rules per partition batch, emits decisions.

Ordering that makes at-least-once delivery exact:
1. apply a batch to each partition's state (skipping offsets the state already holds);
2. send decisions, sold-out events and dead letters, and await their delivery;
3. only then write each changed partition state (one changelog record per partition);
4. Faust commits source offsets after flushing the producer.
A crash before 3 re-applies the batch from the old state and re-emits the same decisions
(`verify` dedupes them by source offset and checks they agree); a crash after 3 skips what the
state already holds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
import time
import zlib
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import faust
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP, EventT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from flashsale.client_config import aiokafka_properties, faust_properties, warn_unmapped
from flashsale.columns import COMPILED as COLUMNS_COMPILED
from flashsale.events import MalformedEvent, decode_event, decode_packed, packed_count
from flashsale.kafka import (
    changelog_configs,
    last_records,
    producer_codec,
    read_ranges,
    ssl_context,
    start_reader,
)
from flashsale.settings import STATE_RECORD_MAX_BYTES, STATE_TABLE, Settings
from streams.consumer import BulkApp, stop_consumer
from streams.metrics import WorkerMetrics, observe_many
from streams.packed import COMPILED, apply_packed
from streams.state import (
    DUPLICATE,
    OUTCOMES,
    PartitionState,
    StateFormatError,
    apply_event,
)
from streams.views import RunViews
from streams.windows import apply_window
from streams.worker import Worker, log_tracebacks_whole

__all__ = ["create_app", "missing_ranges", "run_worker"]

#: The counters `/totals` sums over the worker's partitions.
TOTALS = (
    "gmv_cents",
    "accepted",
    "rejected_oversell",
    "duplicates",
    "paid",
    "cancelled",
    "refunded",
    "refunded_cents",
    "orphans",
    "mismatches",
    "open_lines",
    "dlq",
    "late",
)


_log = logging.getLogger(__name__)

#: Seconds a worker waits after a batch whose outputs failed, before the next.
OUTPUT_RETRY_PAUSE_S = 1.0

#: The event fields a packed decision repeats for its rows (beside outcome and amount).
_DECISION_COLUMNS = (
    "order_id",
    "line",
    "type",
    "sku",
    "quantity",
    "event_ts_ms",
    "emit_ns",
)


def _partition_key(partition: int) -> bytes:
    return str(partition).encode()


class PartitionBatches:
    """Records of one topic gathered per partition and handed to the producer as whole batches.

    One `send` per decision cost about 15 µs of the worker's CPU (a future, the partitioner,
    the accumulator); a record appended to a batch costs about 2 µs. The decisions of source
    partition p go to partition p (mod the topic's partition count): the same key always lands
    on the same partition, so each order's decisions stay in order.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.batches: list[tuple[int, Any]] = []
        self.open: dict[int, Any] = {}

    def add(self, partition: int, key: bytes | None, value: bytes) -> None:
        batch = self.open.get(partition)
        if batch is None or batch.append(timestamp=None, key=key, value=value) is None:
            batch = self.open[partition] = self.producer.create_batch()
            self.batches.append((partition, batch))
            if batch.append(timestamp=None, key=key, value=value) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in a batch")

    async def send(self) -> list[asyncio.Future[Any]]:
        """Queue every batch; the futures resolve when the broker has acknowledged them."""
        if not self.batches:
            return []
        count = len(await self.producer.partitions_for(self.topic))
        futures = [
            await self.producer.send_batch(batch, self.topic, partition=partition % count)
            for partition, batch in self.batches
        ]
        self.batches.clear()
        self.open.clear()
        return futures


class OrderProcessor:
    """Applies batches of order events to the states of the partitions this worker holds."""

    def __init__(
        self, app: faust.App, settings: Settings, table: Any, metrics: WorkerMetrics
    ) -> None:
        self.app = app
        self.settings = settings
        self.table = table
        self.metrics = metrics
        # The live state of each held partition, confirmed once per assignment (`confirm`)
        # and then kept in memory: a batch neither decodes nor re-reads it.
        self.states: dict[int, PartitionState] = {}
        # What each partition's changelog is known to hold: the totals a view may show.
        self.durable: dict[int, dict[str, Any]] = {}
        self._reader_consumer: AIOKafkaConsumer | None = None
        # When the worker last finished a batch the stream delivered, of each partition and
        # of any (monotonic seconds).
        self.last_batch: dict[int, float] = {}
        self.last_delivery = 0.0
        # Partitions changed since their last state write, and when each was last written.
        self.unsaved: set[int] = set()
        self.last_saved: dict[int, float] = {}
        # Views confirm partitions too; never while a batch of the same worker is mid-way.
        self.lock = asyncio.Lock()
        # Advanced by every `forget`: a batch that spans a rebalance must not write states.
        self.epoch = 0
        # The counters `_count` advances, in the order of `_counters(state)[1:]`.
        self._counted = (
            *(metrics.outcome[outcome] for outcome in OUTCOMES),
            metrics.gmv_cents,
            metrics.refunded_cents,
            metrics.restocks,
            metrics.sold_out,
        )

    def forget(self) -> None:
        """Drop every held state: after a rebalance each partition is confirmed again."""
        self.epoch += 1
        self.states.clear()
        self.durable.clear()
        self.last_batch.clear()
        self.unsaved.clear()
        self.last_saved.clear()

    def _drop(self, partitions: Sequence[int]) -> None:
        """Forget the live states of `partitions`: each is confirmed again from its last
        written state before its next batch."""
        for partition in partitions:
            self.states.pop(partition, None)
            self.unsaved.discard(partition)

    async def confirm(self, partition: int) -> PartitionState:
        """`confirm_all` of one partition."""
        return (await self.confirm_all([partition]))[partition]

    async def confirm_all(self, partitions: Sequence[int]) -> dict[int, PartitionState]:
        """Take the newest written state of each partition as its live state.

        Faust's recovery reads a changelog up to ListOffsets(latest), which Tansu under-reports
        (see flashsale.kafka), so the recovered value may be a batch behind. Reading the
        changelog's tail ourselves gives the newest state on any broker; the tails of all
        `partitions` are read together (`last_records`).
        """
        topic = self.settings.state_changelog_topic()
        tails = await last_records(
            await self._reader(), [TopicPartition(topic, p) for p in partitions]
        )
        confirmed: dict[int, PartitionState] = {}
        for partition in partitions:
            local = _readable_state(self.table.data.get(_partition_key(partition)))
            state = local or PartitionState(
                partition=partition,
                window=self.settings.dedupe_window,
                grace_ms=round(self.settings.window_grace_s * 1000),
            )
            record = tails[TopicPartition(topic, partition)]
            if record is not None and record.value is not None:
                newest = _readable_state(record.value)
                if newest is not None and newest.last_offset > state.last_offset:
                    self.metrics.recovered_from_tail.inc()
                    self._store(partition, record.value)
                    state = newest
            self.states[partition] = state
            self.durable[partition] = state.summary()
            self.last_batch.setdefault(partition, time.monotonic())
            confirmed[partition] = state
        return confirmed

    async def _reader(self) -> AIOKafkaConsumer:
        if self._reader_consumer is None:
            self._reader_consumer = await start_reader(
                self.settings.bootstrap_list(), self.settings
            )
        return self._reader_consumer

    async def close(self) -> None:
        """Release the direct reader."""
        if self._reader_consumer is not None:
            reader, self._reader_consumer = self._reader_consumer, None
            await stop_consumer(reader)

    def save(self, state: PartitionState) -> None:
        """Write the state locally and to its changelog partition (= its source partition)."""
        partition = state.partition
        self.unsaved.discard(partition)
        self.last_saved[partition] = time.monotonic()
        self.metrics.state_writes.inc()
        value = state.to_bytes()
        summary = state.summary()
        self._store(partition, value)
        written = self.table.send_changelog(partition, _partition_key(partition), value)

        def on_written(fut: asyncio.Future[Any]) -> None:
            # Changelog writes of one partition complete in order; a view shows only these.
            if not fut.cancelled() and fut.exception() is None and partition in self.durable:
                self.durable[partition] = summary

        written.add_done_callback(on_written)

    def _store(self, partition: int, value: bytes) -> None:
        key = _partition_key(partition)
        store = self.table.data
        store[key] = value
        # Faust's memory store drops keys of partitions it no longer holds after a recovery
        # only if it knows their partition.
        key_partition = getattr(store, "_key_partition", None)
        if key_partition is not None:
            key_partition[key] = partition

    async def process(self, events: Sequence[EventT]) -> None:
        """Apply one batch of the agent's stream (`consume_mode` stream)."""
        by_partition: dict[int, list[Any]] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append(event.message)
        await self.process_partitions(by_partition)

    async def process_fetch(self, records: Mapping[TP, Sequence[Any]]) -> None:
        """Apply one fetch of the bulk consumer (`consume_mode` bulk), at most `batch_max`
        records of a partition at a time."""
        step = self.settings.batch_max
        longest = max(len(batch) for batch in records.values())
        for start in range(0, longest, step):
            await self.process_partitions(
                {
                    tp.partition: batch[start : start + step]
                    for tp, batch in records.items()
                    if len(batch) > start
                }
            )

    async def process_partitions(self, by_partition: Mapping[int, Sequence[Any]]) -> None:
        """Apply records of each partition; return once outputs are delivered (and states
        written when their save interval has passed)."""
        async with self.lock:
            await self._apply(by_partition, {})
            # Stamped when done: a packed fetch can take seconds to apply, and a partition
            # is quiet only if no batch of it was applied for a while since.
            done = self.last_delivery = time.monotonic()
            for partition in by_partition:
                self.last_batch[partition] = done

    async def save_due(self) -> None:
        """Write the states whose last write is older than the save interval."""
        if not self.unsaved:
            return
        async with self.lock:
            now = time.monotonic()
            interval = self.settings.state_save_interval_s
            for partition in sorted(self.unsaved):
                state = self.states.get(partition)
                if state is None:
                    self.unsaved.discard(partition)
                elif now - self.last_saved.get(partition, 0.0) >= interval:
                    self.save(state)

    async def catch_up(self, idle_s: float, busy_s: float = 30.0) -> None:
        """Read what the stream left behind at the end of a partition that went quiet.

        A forward jump of the stream is filled when the next message arrives; when the skipped
        messages were a partition's last ones, none arrives. After `idle_s` without a batch, a
        partition whose high-water mark is past its state is completed here — once the stream
        has delivered nothing for `idle_s` either, or after `busy_s` without a batch of it.
        While the stream is busy, a partition behind is one the next fetches bring: reading
        it here would read it twice (measured: with 16 partitions, a packed fetch of a million
        events took 5 s, and every partition applied early in it was read again, 80-250
        messages of 1,000 events each).
        """
        consumer = self.app.consumer
        async with self.lock:
            now = time.monotonic()
            streaming = now - self.last_delivery < idle_s
            behind: dict[int, int] = {}
            for partition, state in self.states.items():
                quiet = now - self.last_batch.get(partition, 0.0)
                if quiet < idle_s or (streaming and quiet < busy_s):
                    continue
                tp = TopicPartition(self.settings.topic_orders, partition)
                try:
                    high = consumer.highwater(tp)
                except (KeyError, AssertionError):
                    continue  # not assigned to this consumer any more
                if high is not None and high - 1 > state.last_offset:
                    # At most one batch at a time: the stream normally has the rest.
                    behind[partition] = min(high, state.last_offset + 1 + self.settings.batch_max)
            if behind:
                await self._apply({p: [] for p in behind}, behind)

    async def _apply(self, by_partition: Mapping[int, Sequence[Any]], upto: dict[int, int]) -> None:
        """`_apply_batch`, surviving a Kafka error on the way out.

        A broker that lost its topics (an embedded one restarted: memory storage) answers
        sends with errors aiokafka does not retry. Ending the worker for it would lose
        nothing but the worker, so instead the batch's partitions are dropped from memory
        before anything of them is written: the next batch confirms each from its last
        written state and reads what lies between from the topic (as after a restart),
        re-sending outputs that `verify` dedupes by source offset. Then a pause, so a broker
        coming back is not hammered.
        """
        touched = sorted(set(by_partition) | set(upto))
        try:
            await self._apply_batch(by_partition, upto)
        except asyncio.CancelledError:
            # Cut short (Faust cancels the batch in hand when the worker stops): it may be
            # half applied to states whose outputs are not all sent, none of which may be
            # written now, by `save_due` or anyone.
            self._drop(touched)
            raise
        except KafkaError as exc:
            self.metrics.output_failures.inc()
            _log.warning(
                "outputs of a batch failed (%s: %s); partitions %s re-derived from their last "
                "written state",
                type(exc).__name__,
                exc,
                touched,
            )
            self._drop(touched)
            await asyncio.sleep(OUTPUT_RETRY_PAUSE_S)

    async def _apply_batch(
        self, by_partition: Mapping[int, Sequence[Any]], upto: dict[int, int]
    ) -> None:
        started = time.perf_counter()
        epoch = self.epoch
        s = self.settings
        send = self.app.producer.send
        decisions = PartitionBatches(
            self.app.producer._ensure_producer(),  # type: ignore[attr-defined]
            s.topic_decisions,
        )
        decide = decisions.add
        m = self.metrics
        pending: list[Awaitable[Any]] = []
        changed: list[tuple[PartitionState, tuple[int, ...]]] = []
        latencies: list[float] = []
        unconfirmed = [p for p in by_partition if p not in self.states]
        if unconfirmed:
            await self.confirm_all(unconfirmed)
        for partition, delivered in by_partition.items():
            state = self.states.get(partition)
            if state is None:
                state = await self.confirm(partition)
            before = _counters(state)
            messages = await self._contiguous(
                partition, state.last_offset, delivered, upto.get(partition)
            )
            for msg in messages:
                if msg.offset <= state.last_offset:
                    m.redelivered.inc()
                    continue
                state.last_offset = msg.offset
                if msg.headers and packed_count(msg.headers) is not None:
                    await self._apply_packed(state, msg, decisions, pending)
                    continue
                try:
                    order = decode_event(msg.value)
                except MalformedEvent as exc:
                    await self._dead_letter(state, msg, exc, pending)
                    continue
                outcome, amount = apply_event(state, order)
                now_ns = time.time_ns()
                if order.type != "restock":
                    latencies.append((now_ns - order.emit_ns) / 1e9)
                decision = orjson.dumps(
                    {
                        "order_id": order.order_id,
                        "line": order.line,
                        "type": order.type,
                        "outcome": outcome,
                        "sku": order.sku,
                        "quantity": order.quantity,
                        "amount_cents": amount,
                        "partition": partition,
                        "offset": msg.offset,
                        "event_ts_ms": order.event_ts_ms,
                        "emit_ns": order.emit_ns,
                        "processed_ns": now_ns,
                    }
                )
                decide(partition, msg.key, decision)
                if order.type == "restock" or outcome == DUPLICATE:
                    continue
                late, closed = apply_window(state, order, outcome, amount)
                if late:
                    m.late.inc()
                    headers = [
                        ("flashsale.reason", b"late"),
                        ("flashsale.partition", str(partition).encode()),
                        ("flashsale.offset", str(msg.offset).encode()),
                        (
                            "flashsale.watermark_ms",
                            str(state.max_event_ms - state.grace_ms).encode(),
                        ),
                    ]
                    pending.append(
                        await send(s.topic_late, msg.key, msg.value, None, None, headers)
                    )
                for size, start, accepted, paid, gmv, top in closed:
                    await self._publish_window(
                        partition, size, start, accepted, paid, gmv, top, pending
                    )
            if state.last_offset == before[0]:
                continue  # every message was a re-delivery
            _fingerprint(state, before[0], messages)
            first_new = before[-1]
            for sku, sold_ts, offset, index, order_id, line in state.sell_outs[first_new:]:
                since = state.restocked_at.get(sku)
                event_doc = orjson.dumps(
                    {
                        "type": "sold_out",
                        "sku": sku,
                        # The event that took the last unit.
                        "partition": partition,
                        "offset": offset,
                        **({} if index is None else {"index": index}),
                        "order_id": order_id,
                        "line": line,
                        "event_ts_ms": sold_ts,
                        # From the SKU's first restock (00:00 for a scenario's catalog).
                        "time_to_sell_out_s": None if since is None else (sold_ts - since) / 1000,
                        "processed_ns": time.time_ns(),
                    }
                )
                pending.append(
                    await send(s.topic_inventory, sku.encode(), event_doc, None, None, None)
                )
            changed.append((state, before))
            # This partition's decisions go out now, and the event loop turns once so the
            # producer writes them: the broker takes them in while the next partition is
            # decided, instead of all of a batch's at the end (a packed batch's decisions are
            # tens of MB; the worker sat idle about a sixth of the time waiting for them).
            pending.extend(await decisions.send())
            await asyncio.sleep(0)
        # Outputs first: a state must never claim an offset whose outputs could be lost.
        pending.extend(await decisions.send())
        if pending:
            await asyncio.gather(*pending)
        if self.epoch != epoch:
            # A rebalance came in between: these partitions are confirmed again from their
            # changelogs by whoever holds them now; this batch writes nothing.
            for state, _ in changed:
                if self.states.get(state.partition) is state:
                    del self.states[state.partition]
            return
        # A state is written at most every `state_save_interval_s`; a partition changed in
        # between is written by `save_due` (or re-derived from the last write after a crash).
        now = time.monotonic()
        interval = s.state_save_interval_s
        for state, before in changed:
            if now - self.last_saved.get(state.partition, 0.0) >= interval:
                self.save(state)
            else:
                self.unsaved.add(state.partition)
            self._count(_counters(state), before)
        observe = m.latency.observe
        for latency in latencies:
            observe(latency)
        m.batch_seconds.observe(time.perf_counter() - started)

    async def _apply_packed(
        self,
        state: PartitionState,
        msg: Any,
        decisions: PartitionBatches,
        pending: list[Awaitable[Any]],
    ) -> None:
        """One packed message: its rows decided at once, one packed decision message out.

        Rows that break the schema go to the dead-letter topic one by one (the row as a
        single event, with its index in the message); a message that cannot be read at all
        goes there whole.
        """
        s = self.settings
        m = self.metrics
        send = self.app.producer.send
        partition = state.partition
        try:
            batch = decode_packed(msg.value)
        except MalformedEvent as exc:
            await self._dead_letter(state, msg, exc, pending)
            return
        for i, problem in batch.bad.items():
            await self._dead_letter(state, msg, problem, pending, i, batch.encode_row(i))
        result = apply_packed(state, batch)
        if not result.rows:
            return
        now_ns = time.time_ns()
        cols = batch.columns
        if batch.bad:
            rows = result.rows
            picked = {name: [cols[name][i] for i in rows] for name in _DECISION_COLUMNS}
        else:
            picked = {name: cols[name] for name in _DECISION_COLUMNS}
        decision = orjson.dumps(
            {
                "packed": len(result.rows),
                "partition": partition,
                "offset": msg.offset,
                "index": result.rows,
                **picked,
                "outcome": result.outcomes,
                "amount_cents": result.amounts,
                "processed_ns": now_ns,
            }
        )
        decisions.add(partition, msg.key, decision)
        emits = np.asarray(picked["emit_ns"], dtype=np.int64)
        if "restock" in picked["type"]:  # restocks come as single events, as a rule
            emits = emits[np.asarray(picked["type"]) != "restock"]
        observe_many(m.latency, (now_ns - emits) / 1e9)
        for i, watermark in result.late:
            m.late.inc()
            headers = [
                ("flashsale.reason", b"late"),
                ("flashsale.partition", str(partition).encode()),
                ("flashsale.offset", str(msg.offset).encode()),
                ("flashsale.index", str(i).encode()),
                ("flashsale.watermark_ms", str(watermark).encode()),
            ]
            row = batch.encode_row(i)
            pending.append(await send(s.topic_late, msg.key, row, None, None, headers))
        for size, start, accepted, paid, gmv, top in result.closed:
            await self._publish_window(partition, size, start, accepted, paid, gmv, top, pending)

    async def _dead_letter(
        self,
        state: PartitionState,
        msg: Any,
        problem: MalformedEvent,
        pending: list[Awaitable[Any]],
        index: int | None = None,
        value: bytes | None = None,
    ) -> None:
        """Send a malformed message (or row `index` of a packed one, as `value`) to the
        dead-letter topic with the reason and where it came from; count it."""
        state.dlq += 1
        self.metrics.dlq[problem.reason].inc()
        headers = [
            ("flashsale.reason", problem.reason.encode()),
            ("flashsale.detail", problem.detail.encode(errors="replace")),
            ("flashsale.topic", msg.topic.encode()),
            ("flashsale.partition", str(state.partition).encode()),
            ("flashsale.offset", str(msg.offset).encode()),
        ]
        if index is not None:
            headers.append(("flashsale.index", str(index).encode()))
        body = msg.value if value is None else value
        send = self.app.producer.send
        pending.append(await send(self.settings.topic_dlq, msg.key, body, None, None, headers))

    async def _publish_window(
        self,
        partition: int,
        size: int,
        start: int,
        accepted: int,
        paid: int,
        gmv: int,
        top: list[tuple[str, int]],
        pending: list[Awaitable[Any]],
    ) -> None:
        """A closed window to its topic, and a closed minute's top SKUs to `hot-products`."""
        s = self.settings
        send = self.app.producer.send
        record = orjson.dumps(
            {
                "partition": partition,
                "size_s": size,
                "window_start_ms": start,
                "accepted": accepted,
                "paid": paid,
                "gmv_cents": gmv,
            }
        )
        topic = s.topic_revenue_second if size == 1 else s.topic_revenue_minute
        key = f"{partition}:{start}".encode()
        pending.append(await send(topic, key, record, None, None, None))
        if size == 60:
            hot = orjson.dumps({"partition": partition, "window_start_ms": start, "top": top})
            pending.append(await send(s.topic_hot, key, hot, None, None, None))

    async def _contiguous(
        self, partition: int, applied: int, messages: Sequence[Any], upto: int | None = None
    ) -> Sequence[Any]:
        """`messages` with every offset the stream skipped read back from the broker.

        Faust's consumer can jump forward, before the first message of a batch or inside it,
        around a restart or a rebalance (measured here: 2 or 3 offsets missing between two
        fetches right after a restart; faust-streaming issue #216 reports the same). Kafka
        offsets of a plain topic are contiguous, so any jump past `applied + 1` is read back
        here, keeping per-partition order and losing nothing; so is [expected, `upto`).
        """
        gaps = missing_ranges(applied, [msg.offset for msg in messages], upto)
        if not gaps:
            return messages
        tp = TopicPartition(self.settings.topic_orders, partition)
        reader = await self._reader()
        filled: list[Any] = []
        for start, end in gaps:
            got = (await read_ranges(reader, {tp: (start, end)}))[tp]
            self.metrics.gap_filled.inc(len(got))
            filled.extend(got)
        merged = {msg.offset: msg for msg in filled}
        for msg in messages:
            merged.setdefault(msg.offset, msg)
        return [merged[offset] for offset in sorted(merged)]

    def _count(self, after: tuple[int, ...], before: tuple[int, ...]) -> None:
        """Advance the metrics by what one partition's batch changed."""
        for counter, a, b in zip(self._counted, after[1:], before[1:], strict=True):
            if a != b:
                counter.inc(a - b)


def missing_ranges(
    applied: int, offsets: Sequence[int], upto: int | None = None
) -> list[tuple[int, int]]:
    """The [start, end) offset ranges after `applied` that `offsets` skip (and up to `upto`)."""
    gaps: list[tuple[int, int]] = []
    expected = applied + 1
    for offset in offsets:
        if offset > expected:
            gaps.append((expected, offset))
        expected = max(expected, offset + 1)
    if upto is not None and upto > expected:
        gaps.append((expected, upto))
    return gaps


def _readable_state(raw: bytes | None) -> PartitionState | None:
    """The state a changelog record holds; None for none, and for one an older flashsale
    wrote: the partition is then rebuilt from `orders` (a fresh state reads what lies below
    the stream's position back from the topic), with a warning."""
    if raw is None:
        return None
    try:
        return PartitionState.from_bytes(raw)
    except StateFormatError as exc:
        _log.warning("%s: rebuilding it from the orders topic", exc)
        return None


def _fingerprint(state: PartitionState, applied_before: int, messages: Sequence[Any]) -> None:
    """Note the CRC-32 of the message at the state's last offset, and of the first message a
    fresh state applied: `verify` checks the topic still holds those bytes there (a broker
    that lost its topics and got them written again holds other messages at those offsets).
    """
    if applied_before < 0:
        first = next(msg for msg in messages if msg.offset > applied_before)
        state.first_offset = first.offset
        state.first_crc32 = zlib.crc32(first.value or b"")
    last = next(msg for msg in reversed(messages) if msg.offset == state.last_offset)
    state.last_crc32 = zlib.crc32(last.value or b"")


def _counters(state: PartitionState) -> tuple[int, ...]:
    """The last offset, then what metrics count: outcomes in `OUTCOMES` order, cents, restocks.

    The sold-out length is last: `_apply` reads it to find the SKUs a batch sold out.
    """
    return (
        state.last_offset,
        state.accepted,
        state.rejected_oversell,
        state.duplicates,
        state.paid,
        state.cancelled,
        state.refunded,
        state.orphans,
        state.mismatches,
        state.gmv_cents,
        state.refunded_cents,
        state.restocks,
        len(state.sell_outs),
    )


def broker_credentials(settings: Settings) -> faust.auth.Credentials | None:
    """What Faust hands its consumer, producer and admin client for `security_protocol`."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.auth.SSLCredentials(context)
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return faust.auth.SASLCredentials(
        username=settings.sasl_username,
        password=password,
        ssl_context=context,
        mechanism=settings.sasl_mechanism,
    )


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip()]


def create_app(
    settings: Settings, registry: CollectorRegistry | None = None, datadir: str | None = None
) -> faust.App:
    """A Faust app wired to `settings`: topics, the state table, the agent and web views.

    Faust creates its data directory even with the memory store; `run_worker` gives it a
    temporary one, removed on exit, so no `<app>-data` folder is left in the working directory.

    Its topics' replication is `settings.replication_factor` as `ensure_run_topics` resolved
    it (which creates the changelog and leader topics beforehand); unresolved, Faust's 1.
    The client-config file's properties reach Faust's consumer through Faust's settings
    (`FAUST_PROPERTIES`) and its producer as aiokafka arguments.
    """
    if not settings.bootstrap_servers:
        raise ValueError("the worker needs bootstrap servers")
    metrics_registry = registry if registry is not None else CollectorRegistry()
    session = settings.session_timeout_s
    bulk = settings.consume_mode == "bulk"
    # Bulk mode: fetches of up to 4 MB per partition and a commit every 10,000 acknowledged
    # orders (Faust's default) or second. Stream mode keeps Faust's defaults for every
    # consumer setting: it is the baseline the bench compares against.
    tuning: dict[str, Any] = (
        {
            "consumer_max_fetch_size": 4 * 1024 * 1024,
            "broker_commit_interval": 1.0,
        }
        if bulk
        else {}
    )
    props = settings.client_properties()
    if props and settings.client_config is not None:
        warn_unmapped(settings.client_config, props)
    conf: dict[str, Any] = dict(
        broker=_broker_urls(settings.bootstrap_servers),
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=datadir or tempfile.gettempdir() + "/flashsale-faust",
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor or 1,
        # Tansu holds a JoinGroup for half the session timeout (measured: 60 s -> 30 s wait),
        # so on it a short session (4 s, `Settings.for_embedded_broker`) makes a worker ready
        # in about two seconds; Kafka accepts 6 s and more by default.
        broker_session_timeout=session,
        broker_heartbeat_interval=max(session / 4, 0.2),
        broker_rebalance_timeout=max(session * 2, 10.0),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_compression_type=producer_codec(settings),
        producer_linger=0.005,
        # aiokafka puts at most one batch per partition in a produce request, and a batch
        # waits for the one before it: a packed fetch's decisions (about 8 MB a partition)
        # went out in 30 round trips of 256 KB, the worker waiting in between. 1,000,000
        # bytes stays under Kafka's default message.max.bytes (1,048,588); measured on the
        # packed stage, the worker's wait on its sends fell from 0.80-0.89 s to 0.53-0.58 s
        # of 4.2-4.5 s (two alternating pairs of runs).
        producer_max_batch_size=1_000_000,
        # A partition's state record holds its open (reserved, unpaid) lines: at the peak of a
        # big scenario it can pass Kafka's default 1 MB request limit.
        producer_max_request_size=STATE_RECORD_MAX_BYTES,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        # Every payload here is bytes we encode ourselves with orjson.
        key_serializer="raw",
        value_serializer="raw",
    )
    # The client-config file's properties over ours (`FAUST_PROPERTIES`).
    app = BulkApp(settings.app_id, **{**conf, **tuning, **faust_properties(props)})
    # Faust has no idempotence setting: its producer takes it, and the client-config file's
    # producer properties, as aiokafka arguments (`ConfiguredProducer`).
    app.producer_extra = {
        "enable_idempotence": settings.enable_idempotence,
        **aiokafka_properties(props, "producer"),
    }
    orders = app.topic(
        settings.topic_orders,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    table = app.Table(
        STATE_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        # Should Faust create the changelog itself: the configs `ensure_run_topics` gives it.
        extra_topic_configs={
            **changelog_configs(),
            **(
                {"min.insync.replicas": str(settings.min_insync_replicas)}
                if settings.min_insync_replicas
                else {}
            ),
        },
    )
    metrics = WorkerMetrics(metrics_registry)
    processor = OrderProcessor(app, settings, table, metrics)
    app.flashsale_processor = processor  # type: ignore[attr-defined]

    @app.agent(orders, concurrency=1)
    async def process_orders(stream: Any) -> None:
        # In bulk mode the agent subscribes the group to `orders` and the consumer hands every
        # fetch to `process_fetch` instead; no event reaches this stream.
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            await processor.process(batch)

    if bulk:
        app.consume_in_bulk(
            [settings.topic_orders], processor.process_fetch, settings.fetch_max_wait_ms
        )

    async def held_totals() -> tuple[list[dict[str, Any]], bool]:
        """Durable totals of the partitions this worker holds, and whether all are confirmed."""
        held = sorted(
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == settings.topic_orders
        )
        settled = not app.rebalancing and not app.in_recovery
        if settled and not processor.states.keys() >= set(held):
            # An idle partition gets no batch to confirm it: confirm it here, after recovery.
            async with processor.lock:
                unconfirmed = [p for p in held if p not in processor.states]
                if unconfirmed:
                    await processor.confirm_all(unconfirmed)
        confirmed = settled and processor.states.keys() >= set(held)
        return [processor.durable[p] for p in held if p in processor.durable], confirmed

    @app.timer(interval=max(settings.state_save_interval_s / 2, 0.05))
    async def write_due_states() -> None:
        if not app.rebalancing:
            await processor.save_due()

    labelled: dict[str, set[str]] = {}

    @app.timer(interval=1.0)
    async def update_gauges() -> None:
        lag = 0
        for partition, state in list(processor.states.items()):
            tp = TopicPartition(settings.topic_orders, partition)
            try:
                high = app.consumer.highwater(tp)
            except (KeyError, AssertionError):
                continue  # not assigned to this consumer any more
            if high is not None:
                lag += max(high - (state.last_offset + 1), 0)
        metrics.lag.set(lag)
        metrics.oversold.set(
            sum(1 for st in processor.states.values() for units in st.stock.values() if units < 0)
        )
        for gauge, dimension in (
            (metrics.gmv_by_country, "gmv_by_country"),
            (metrics.gmv_by_category, "gmv_by_category"),
        ):
            summed: dict[str, int] = {}
            for st in processor.states.values():
                for name, cents in getattr(st, dimension).items():
                    summed[name] = summed.get(name, 0) + cents
            # Names this worker no longer holds (after a rebalance) read 0, not a stale total.
            shown = labelled.setdefault(dimension, set())
            for name in shown - summed.keys():
                gauge.labels(name).set(0)
            for name, cents in summed.items():
                gauge.labels(name).set(cents)
            shown |= summed.keys()

    @app.timer(interval=1.0)
    async def complete_quiet_partitions() -> None:
        if not app.rebalancing and not app.in_recovery and not app.should_stop:
            await processor.catch_up(idle_s=2.0)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        processor.forget()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        processor.forget()
        metrics.partitions.set(sum(1 for tp in assigned if tp.topic == settings.topic_orders))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def on_shutdown(app: faust.App, **kwargs: Any) -> None:
        await processor.close()
        await views.close()

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside `content_type`; the header carries it whole.
            return self.bytes(
                generate_latest(metrics_registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )

    views = RunViews(settings, lambda: processor.states)

    @app.page("/views/gmv")
    class GmvView(View):
        """The whole run's GMV now, by country, category, merchant and buyer province."""

        async def get(self, request: Request) -> Response:
            return self.bytes(orjson.dumps(await views.gmv()), content_type="application/json")

    @app.page("/views/stock/{sku}")
    class StockView(View):
        """One SKU's units left (whichever worker holds it)."""

        async def get(self, request: Request, sku: str) -> Response:
            found = await views.stock(sku)
            if found is None:
                return self.bytes(
                    orjson.dumps({"error": f"unknown SKU {sku!r}"}),
                    content_type="application/json",
                    status=404,
                )
            return self.bytes(orjson.dumps(found), content_type="application/json")

    @app.page("/views/top-skus")
    class TopSkusView(View):
        """The top 10 SKUs by units in the current minute (event time), whole run."""

        async def get(self, request: Request) -> Response:
            body = await views.top_skus()
            return self.bytes(orjson.dumps(body), content_type="application/json")

    @app.page("/views/sold-out")
    class SoldOutView(View):
        """The most recent sell-outs with their time to sell out (`?limit=N`, default 20)."""

        async def get(self, request: Request) -> Response:
            try:
                limit = max(1, min(int(request.query.get("limit", "20")), 1000))
            except ValueError:
                return self.bytes(
                    orjson.dumps({"error": "limit must be an integer"}),
                    content_type="application/json",
                    status=400,
                )
            rows = await views.sold_out(limit)
            return self.bytes(orjson.dumps(rows), content_type="application/json")

    @app.page("/totals")
    class TotalsView(View):
        """This worker's partitions as their changelog holds them: GMV, counts, offsets."""

        async def get(self, request: Request) -> Response:
            parts, confirmed = await held_totals()
            # `ready`: holds partitions, all confirmed. `settled`: not mid-rebalance (a worker
            # of a group may hold no partition at all and still be settled).
            body: dict[str, Any] = {"ready": bool(parts) and confirmed, "settled": confirmed}
            for name in TOTALS:
                body[name] = sum(p[name] for p in parts)
            body["sold_out_skus"] = sum(p["sold_out"] for p in parts)
            body["partitions"] = parts
            return self.bytes(orjson.dumps(body), content_type="application/json")

    return app


_LEVELS = {
    "crit": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    """Run one worker in the foreground until SIGINT/SIGTERM; it is gone at most
    `streams.worker.STOP_DEADLINE_S` after the signal."""
    with tempfile.TemporaryDirectory(prefix="flashsale-worker-") as datadir:
        app = create_app(settings, datadir=datadir)

        @app.task
        async def tune_process() -> None:
            # mode leaves the root logger at DEBUG and filters in its handler, so every
            # library debug call (aiokafka logs each send) builds a record only to drop it:
            # about 5% of a worker's CPU, measured with cProfile.
            logging.getLogger().setLevel(_LEVELS.get(loglevel, logging.WARNING))
            # The objects of start-up (Faust, aiokafka, the app) live as long as the worker:
            # out of the collector's scans. A young generation of 100,000 objects instead of
            # 700 scans once per a few packed messages instead of several times in each.
            # Together 0.2 µs of CPU per packed event (5.6 instead of 5.8-7.2, three runs).
            gc.freeze()
            gc.set_threshold(100_000, 50, 1_000)
            if not (COMPILED and COLUMNS_COMPILED):
                _log.warning(
                    "the packed path runs uncompiled (no C compiler when flashsale was "
                    "installed): packed messages cost about 1.5 µs more CPU per event"
                )

        log_tracebacks_whole()
        worker = Worker(app, loglevel=loglevel, quiet=True, tempdir=datadir)
        worker.execute_from_commandline()
