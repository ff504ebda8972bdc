"""`flashsale replay`: re-emit a recorded run's `orders` on their recorded schedule.

Each message goes to the partition it was recorded on, with its key and headers, in its
partition's offset order. Messages leave at their recorded broker timestamps, scaled by the
speed (10: ten times faster; None: as fast as the broker takes them); across partitions they
interleave by timestamp. The `emit_ns` wall-clock stamp inside each event (and each row of a
packed message) is set to the moment it is handed to the client, as the producer does, so the
end-to-end latency of a replay measures the replay; `restamp=False` leaves values byte-equal.
"""

from __future__ import annotations

import asyncio
import heapq
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from flashsale.events import packed_count
from flashsale.kafka.admin import ensure_topics
from flashsale.kafka.clients import aiokafka_producer
from flashsale.settings import Settings
from recordings.format import RecordedMessage, RecordedRun, RunDirError

__all__ = ["ReplayError", "ReplayStats", "replay_orders", "restamp", "schedule"]

_EMIT = b'"emit_ns":'
_PACKED = re.compile(rb'"emit_ns":\[\d+(?:,\d+)*\]')
#: Sleep only when the next message is due this much later (seconds).
_MIN_SLEEP_S = 0.002
#: Longest a paced replay sleeps before it looks at its stop request again (seconds).
_STOP_CHECK_S = 0.25


class ReplayError(Exception):
    """A replay that cannot run: the message says why, in one line."""


@dataclass(slots=True)
class ReplayStats:
    """Live counters of one replay."""

    total: int = 0
    sent: int = 0
    acked: int = 0
    errors: int = 0
    last_error: str = ""
    duration_s: float = 0.0
    #: How far the last message left after its scheduled time, in seconds.
    behind_s: float = 0.0


def schedule(orders: Mapping[int, Sequence[RecordedMessage]]) -> Iterator[RecordedMessage]:
    """Every message, each partition in offset order, interleaved by broker timestamp.

    A partition whose timestamps step back keeps its order: a message is due no earlier
    than the one before it on its partition.
    """

    def due(msgs: Sequence[RecordedMessage]) -> Iterator[tuple[int, int, RecordedMessage]]:
        newest = -1
        for m in msgs:
            newest = max(newest, m.timestamp_ms)
            yield newest, m.partition, m

    merged = heapq.merge(*(due(orders[p]) for p in sorted(orders)), key=lambda t: (t[0], t[1]))
    for ts, _, m in merged:
        if ts != m.timestamp_ms:
            m = RecordedMessage(m.topic, m.partition, m.offset, m.key, m.value, m.headers, ts)
        yield m


def restamp(value: bytes | None, packed: bool, now_ns: int) -> bytes | None:
    """`value` with its `emit_ns` (every row's, for a packed message) set to `now_ns`.

    Anything that is not a JSON object with a whole-number `emit_ns` is left as it is (a
    malformed event stays malformed for the same reason).
    """
    return _restamp(value, packed, b"%d" % now_ns)


def _restamp(value: bytes | None, packed: bool, stamp: bytes) -> bytes | None:
    """`restamp` with the stamp already formatted."""
    if not value or value[:1] != b"{":
        return value
    if packed:
        m = _PACKED.search(value)
        if m is None:
            return value
        rows = m.group().count(b",") + 1
        stamps = b",".join([stamp] * rows)
        return b"".join((value[: m.start()], b'"emit_ns":[', stamps, b"]", value[m.end() :]))
    # bytes.find, not a regex: this runs once per replayed message.
    at = value.find(_EMIT)
    if at < 0:
        return value
    start = at + len(_EMIT)
    end = value.find(b",", start)
    if end < 0:
        end = value.find(b"}", start)
    if not value[start:end].isdigit():
        return value
    return value[:start] + stamp + value[end:]


async def replay_orders(
    run: RecordedRun,
    settings: Settings,
    speed: float | None,
    stats: ReplayStats,
    restamp_emit: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
) -> ReplayStats:
    """Send the recorded `orders` of `run` to `settings.topic_orders` (created when missing)."""
    source = run.role("orders")
    if source is None:
        raise RunDirError(f"{run.path / 'manifest.json'}: the run has no recorded orders topic")
    needed = run.partitions(source)
    topic = settings.topic_orders
    bootstrap = settings.bootstrap_list()
    await ensure_topics(",".join(bootstrap), [topic], needed, settings)
    producer = aiokafka_producer(settings, "flashsale-replay", bootstrap)
    await producer.start()
    try:
        have = len(await producer.partitions_for(topic))
        if have < needed:
            raise ReplayError(
                f"topic {topic} has {have} partitions, the recorded orders had {needed}: "
                f"replay keeps each message's partition, so create {topic} with {needed} "
                "or more"
            )
        orders = run.topic(source)
        stats.total = sum(len(v) for v in orders.values())
        await _send_all(
            producer,
            topic,
            schedule(orders),
            speed,
            stats,
            restamp_emit,
            settings.max_in_flight,
            should_stop,
        )
    finally:
        await producer.stop()
    return stats


async def _send_all(
    producer: AIOKafkaProducer,
    topic: str,
    messages: Iterator[RecordedMessage],
    speed: float | None,
    stats: ReplayStats,
    restamp_emit: bool,
    limit: int,
    should_stop: Callable[[], bool],
) -> None:
    send = producer.send
    pending: deque[asyncio.Future[Any]] = deque()
    started = time.monotonic()
    base: int | None = None
    clock = time.monotonic
    stamp = b"%d" % time.time_ns()

    def settle() -> None:
        while pending and pending[0].done():
            fut = pending.popleft()
            if fut.cancelled() or fut.exception() is not None:
                stats.errors += 1
                stats.last_error = "cancelled" if fut.cancelled() else repr(fut.exception())
            else:
                stats.acked += 1

    try:
        for i, msg in enumerate(messages):
            if speed is not None:
                if base is None:
                    base = msg.timestamp_ms
                due = started + (msg.timestamp_ms - base) / 1000 / speed
                delay = due - clock()
                if delay > _MIN_SLEEP_S:
                    # In slices, so a stop request never waits out a long recorded pause.
                    while delay > _MIN_SLEEP_S and not should_stop():
                        await asyncio.sleep(min(delay, _STOP_CHECK_S))
                        delay = due - clock()
                    stats.behind_s = 0.0
                    stamp = b"%d" % time.time_ns()
                else:
                    stats.behind_s = -delay
            if i % 256 == 0:
                # One stamp per 256 messages (a few ms apart at full speed), as the producer
                # stamps each 10 ms block.
                stamp = b"%d" % time.time_ns()
                settle()
                await asyncio.sleep(0)  # let acknowledgements and the progress bar run
            if should_stop():
                break
            value = msg.value
            if restamp_emit:
                packed = bool(msg.headers) and packed_count(msg.headers) is not None
                value = _restamp(value, packed, stamp)
            if len(pending) >= limit:
                await asyncio.wait([pending[0]])
                settle()
            pending.append(
                await send(
                    topic,
                    value,
                    key=msg.key,
                    partition=msg.partition,
                    headers=msg.headers or None,
                )
            )
            stats.sent += 1
        await producer.flush()
        if pending:
            await asyncio.wait(list(pending))
        settle()
    finally:
        stats.duration_s = time.monotonic() - started
