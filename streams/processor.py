"""The batch loop: a batch of order events applied to its partitions' states, outputs first.

Ordering that makes at-least-once delivery exact:
1. apply a batch to each partition's state (skipping offsets the state already holds);
2. send decisions, sold-out events and dead letters, and await their delivery;
3. only then write each changed partition state (one changelog record per partition);
4. Faust commits source offsets after flushing the producer.
A crash before 3 re-applies the batch from the old state and re-emits the same decisions
(`verify` dedupes them by source offset and checks they agree); a crash after 3 skips what the
state already holds. Each event is decided by `streams.rules` (one message of its own) or
`streams.packed` (the rows of a packed message); confirming states and reading back what the
stream skipped is `streams.recovery`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from operator import attrgetter
from typing import Any, Final

import faust
import numpy as np
from aiokafka.errors import KafkaError
from faust.types import TP, EventT

from flashsale.counters import DUPLICATE, MONEY, OUTCOME_COUNTS
from flashsale.events import MalformedEvent, decode_event, decode_packed, packed_count
from flashsale.settings import Settings
from streams.metrics import WorkerMetrics, observe_many
from streams.outputs import (
    DECISION_COLUMNS,
    Outputs,
    PartitionBatches,
    decision_record,
    packed_decision_record,
)
from streams.packed import apply_packed
from streams.recovery import Recovery, fingerprint, partition_key
from streams.rules import apply_event
from streams.state import PartitionState
from streams.transactions import Transactions
from streams.windows import apply_window

__all__ = ["OUTPUT_RETRY_PAUSE_S", "OrderProcessor"]

_log = logging.getLogger(__name__)

#: Seconds a worker waits after a batch whose outputs failed, before the next.
OUTPUT_RETRY_PAUSE_S = 1.0

#: What a batch reads of a state before and after it: the last offset, then the counters the
#: metrics follow (`WorkerMetrics.of_state`).
_COUNTED: Final = (
    *(count.field for count in OUTCOME_COUNTS),
    *(name for name, _ in MONEY),
    "restocks",
)
_read_counted = attrgetter("last_offset", *_COUNTED)


def _counters(state: PartitionState) -> tuple[int, ...]:
    """The last offset, the counters of `_COUNTED`, then the number of sell-outs (last: a
    batch reads it to find the SKUs it sold out)."""
    return (*_read_counted(state), len(state.sell_outs))


class OrderProcessor:
    """Applies batches of order events to the states of the partitions this worker holds."""

    def __init__(
        self, app: faust.App, settings: Settings, table: Any, metrics: WorkerMetrics
    ) -> None:
        self.app = app
        self.settings = settings
        self.table = table
        self.metrics = metrics
        self.recovery = Recovery(settings, metrics)
        self.outputs = Outputs(app, settings)
        # Exactly-once mode: a transactional producer per held partition (`_apply_in_txns`).
        self.transactions = (
            Transactions(app, settings) if settings.processing_guarantee == "exactly_once" else None
        )
        # The live state of each held partition, confirmed once per assignment (`confirm`)
        # and then kept in memory: a batch neither decodes nor re-reads it.
        self.states: dict[int, PartitionState] = {}
        # What each partition's changelog is known to hold: the totals a view may show.
        self.durable: dict[int, dict[str, Any]] = {}
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
        # The metrics `_count` advances, in the order of `_counters(state)[1:]`.
        self._counted = (*(metrics.of_state[name] for name in _COUNTED), metrics.sold_out)

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
        """Take the newest written state of each partition as its live state
        (`Recovery.newest_states`). In exactly-once mode each partition's producer is fenced in
        first, so the state read is the last one any earlier holder can commit."""
        if self.transactions is not None:
            await self.transactions.fence(partitions, self.epoch)
        newest = await self.recovery.newest_states(partitions, self.table.data)
        confirmed: dict[int, PartitionState] = {}
        for partition, (state, written) in newest.items():
            if written is not None:
                self._store(partition, written)
            self.states[partition] = state
            self.durable[partition] = state.summary()
            self.last_batch.setdefault(partition, time.monotonic())
            confirmed[partition] = state
        return confirmed

    async def close(self) -> None:
        """Release the direct reader (and the transactional producers)."""
        await self.recovery.close()
        if self.transactions is not None:
            await self.transactions.close()

    def save(self, state: PartitionState) -> None:
        """Write the state locally and to its changelog partition (= its source partition)."""
        partition = state.partition
        self.unsaved.discard(partition)
        self.last_saved[partition] = time.monotonic()
        self.metrics.state_writes.inc()
        value = state.to_bytes()
        summary = state.summary()
        self._store(partition, value)
        written = self.table.send_changelog(partition, partition_key(partition), value)

        def on_written(fut: asyncio.Future[Any]) -> None:
            # Changelog writes of one partition complete in order; a view shows only these.
            if not fut.cancelled() and fut.exception() is None and partition in self.durable:
                self.durable[partition] = summary

        written.add_done_callback(on_written)

    def _store(self, partition: int, value: bytes) -> None:
        key = partition_key(partition)
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
        """Read what the stream left behind at the end of a partition that went quiet
        (`Recovery.behind`), one batch of each at a time."""
        async with self.lock:
            behind = self.recovery.behind(
                self.app.consumer,
                self.states,
                self.last_batch,
                self.last_delivery,
                idle_s,
                busy_s,
            )
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
            if self.transactions is None:
                await self._apply_batch(by_partition, upto)
            else:
                await self._apply_in_txns(by_partition, upto)
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
        out = self.outputs
        decisions = out.decisions()
        m = self.metrics
        pending: list[Awaitable[Any]] = []
        changed: list[tuple[PartitionState, tuple[int, ...]]] = []
        latencies: list[float] = []
        unconfirmed = [p for p in by_partition if p not in self.states]
        if unconfirmed:
            await self.confirm_all(unconfirmed)
        for partition, delivered in by_partition.items():
            decided = await self._decide(
                partition, delivered, upto.get(partition), out, decisions, pending, latencies
            )
            if decided is None:
                continue  # every message was a re-delivery
            changed.append(decided)
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

    async def _apply_in_txns(
        self, by_partition: Mapping[int, Sequence[Any]], upto: dict[int, int]
    ) -> None:
        """`_apply_batch` in exactly-once mode: each partition's outputs, state record and
        consumed offset in one transaction (`Transactions.run_batch`), every state written."""
        started = time.perf_counter()
        epoch = self.epoch
        partitions = sorted(set(by_partition) | set(upto))
        unconfirmed = [p for p in partitions if p not in self.states]
        if unconfirmed:
            await self.confirm_all(unconfirmed)
        latencies: list[float] = []

        def decide(p: int, out: Outputs, batches: PartitionBatches, pending: list[Any]) -> Any:
            got = by_partition.get(p, ())
            return self._decide(p, got, upto.get(p), out, batches, pending, latencies)

        committed = await self.transactions.run_batch(  # type: ignore[union-attr]
            partitions, decide, lambda: self.epoch == epoch
        )
        if committed is None:  # a rebalance came in between: nothing was committed
            self._drop(partitions)
            return
        m = self.metrics
        now = time.monotonic()
        for state, before, value in committed:
            partition = state.partition
            self._store(partition, value)
            self.durable[partition] = state.summary()
            self.last_saved[partition] = now
            m.state_writes.inc()
            self._count(_counters(state), before)
        observe = m.latency.observe
        for latency in latencies:
            observe(latency)
        m.batch_seconds.observe(time.perf_counter() - started)

    async def _decide(
        self,
        partition: int,
        delivered: Sequence[Any],
        upto: int | None,
        out: Outputs,
        decisions: PartitionBatches,
        pending: list[Awaitable[Any]],
        latencies: list[float],
    ) -> tuple[PartitionState, tuple[int, ...]] | None:
        """Apply one partition's messages (and what the stream skipped before them) to its
        state, its outputs added to `decisions` and sent through `out`; the state and its
        counters before, or None when every message was a re-delivery."""
        m = self.metrics
        decide = decisions.add
        state = self.states.get(partition)
        if state is None:
            state = await self.confirm(partition)
        before = _counters(state)
        messages = await self.recovery.contiguous(partition, state.last_offset, delivered, upto)
        for msg in messages:
            if msg.offset <= state.last_offset:
                m.redelivered.inc()
                continue
            state.last_offset = msg.offset
            if msg.headers and packed_count(msg.headers) is not None:
                await self._apply_packed(state, msg, out, decisions, pending)
                continue
            try:
                order = decode_event(msg.value)
            except MalformedEvent as exc:
                await self._dead_letter(state, msg, exc, out, pending)
                continue
            outcome, amount = apply_event(state, order)
            now_ns = time.time_ns()
            if order.type != "restock":
                latencies.append((now_ns - order.emit_ns) / 1e9)
            decide(
                partition,
                msg.key,
                decision_record(order, outcome, amount, partition, msg.offset, now_ns),
            )
            if order.type == "restock" or outcome == DUPLICATE:
                continue
            late, closed = apply_window(state, order, outcome, amount)
            if late:
                m.late.inc()
                watermark = state.max_event_ms - state.grace_ms
                await out.late(partition, msg.key, msg.value, msg.offset, watermark, pending)
            for size, start, accepted, paid, gmv, top in closed:
                await out.window(partition, size, start, accepted, paid, gmv, top, pending)
        if state.last_offset == before[0]:
            return None
        fingerprint(state, before[0], messages)
        await out.sold_out(state, before[-1], pending)
        return state, before

    async def _apply_packed(
        self,
        state: PartitionState,
        msg: Any,
        out: Outputs,
        decisions: PartitionBatches,
        pending: list[Awaitable[Any]],
    ) -> None:
        """One packed message: its rows decided at once, one packed decision message out.

        Rows that break the schema go to the dead-letter topic one by one (the row as a
        single event, with its index in the message); a message that cannot be read at all
        goes there whole.
        """
        m = self.metrics
        partition = state.partition
        try:
            batch = decode_packed(msg.value)
        except MalformedEvent as exc:
            await self._dead_letter(state, msg, exc, out, pending)
            return
        for i, problem in batch.bad.items():
            await self._dead_letter(state, msg, problem, out, pending, i, batch.encode_row(i))
        result = apply_packed(state, batch)
        if not result.rows:
            return
        now_ns = time.time_ns()
        cols = batch.columns
        if batch.bad:
            rows = result.rows
            picked = {name: [cols[name][i] for i in rows] for name in DECISION_COLUMNS}
        else:
            picked = {name: cols[name] for name in DECISION_COLUMNS}
        decisions.add(
            partition,
            msg.key,
            packed_decision_record(
                partition,
                msg.offset,
                result.rows,
                picked,
                result.outcomes,
                result.amounts,
                now_ns,
            ),
        )
        emits = np.asarray(picked["emit_ns"], dtype=np.int64)
        if "restock" in picked["type"]:  # restocks come as single events, as a rule
            emits = emits[np.asarray(picked["type"]) != "restock"]
        observe_many(m.latency, (now_ns - emits) / 1e9)
        for i, watermark in result.late:
            m.late.inc()
            row = batch.encode_row(i)
            await out.late(partition, msg.key, row, msg.offset, watermark, pending, index=i)
        for size, start, accepted, paid, gmv, top in result.closed:
            await out.window(partition, size, start, accepted, paid, gmv, top, pending)

    async def _dead_letter(
        self,
        state: PartitionState,
        msg: Any,
        problem: MalformedEvent,
        out: Outputs,
        pending: list[Awaitable[Any]],
        index: int | None = None,
        value: bytes | None = None,
    ) -> None:
        """Count a malformed message (or row `index` of a packed one) and send it to the
        dead-letter topic (`Outputs.dead_letter`)."""
        state.dlq += 1
        self.metrics.dlq[problem.reason].inc()
        await out.dead_letter(state.partition, msg, problem, pending, index, value)

    def _count(self, after: tuple[int, ...], before: tuple[int, ...]) -> None:
        """Advance the metrics by what one partition's batch changed."""
        for counter, a, b in zip(self._counted, after[1:], before[1:], strict=True):
            if a != b:
                counter.inc(a - b)
