"""What the Kafka users of one locust process send, and how its deliveries are counted.

A distributed run splits the scenario's stream as `flashsale produce --workers` does
(`producers/parallel.py`): locust worker `i` of `N` generates the orders whose sequence number
is `i` modulo `N` (`Generator(worker=i, workers=N)`), and with `--flashsale-events` every
worker stops at the sort key of the stream's N-th event (`Generator.cutoff`), so the workers
send exactly the one-process stream between them. Locust is not imported here.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from flashsale.scenario import Scenario
from flashsale.scenario.curves import Curve
from producers.generator import GRID_S, Block, Generator

__all__ = ["BLOCK_ORDERS", "Deliveries", "Settled", "Share", "share_blocks", "split"]

#: Orders a Kafka user queues per task at the scenario's peak, about: a block of the
#: schedule, with all their events (two or three each).
BLOCK_ORDERS: Final = 5_000


def split(index: int, count: int) -> tuple[int, int]:
    """(worker, workers) of the locust process with worker index `index` when the master
    expects `count` workers (a standalone process: 0 of 1); `ValueError` when the index
    does not fit, so no share is sent twice or left out."""
    if count < 1:
        raise ValueError(f"the master expects {count} workers")
    if not 0 <= index < count:
        raise ValueError(
            f"locust worker index {index} is not below the {count} workers the master "
            "expects: start the master with --expect-workers set to the number of workers, "
            "and every worker before the run starts"
        )
    return index, count


def share_blocks(
    scenario: Scenario, worker: int, workers: int, events: int, block_s: float
) -> Iterator[Block]:
    """The blocks of worker `worker` of `workers`: its orders of the whole scenario, or with
    `events` > 0 its part of the scenario's first `events` events."""
    generator = Generator(scenario, worker=worker, workers=workers)
    if events <= 0:
        return generator.blocks(None, None, block_s)
    if workers == 1:
        return generator.blocks(None, events, block_s)
    # Every worker stops at the key of the stream's N-th event: N in all, exactly.
    until = generator.cutoff(events)
    return generator.blocks(None, None, block_s, until=until)


def block_seconds(scenario: Scenario, workers: int) -> float:
    """Wall seconds of the schedule in a block of about `BLOCK_ORDERS` orders of one worker at
    the scenario's peak (a multiple of the generator's 10 ms grid)."""
    peak = Curve(scenario).peak()[1] * scenario.scale.sample_ratio * scenario.scale.compression
    cells = max(round(BLOCK_ORDERS * workers / max(peak, 1.0) / GRID_S), 1)
    return cells * GRID_S


class Share:
    """One locust process's part of the stream, shared by its Kafka users, and its pace.

    `events` > 0: the part of the scenario's first `events` events, once (`exhausted` after
    it); 0: the whole scenario, started again from its beginning at its end. `rate` > 0 holds
    this process to `rate` events per second: a block goes out in `pieces` of about 20 ms of
    it, each stamped with its own send time, and `queued` says when to send the next.
    `stopped`: the run is ending, nothing more is sent, not even the rest of a block.
    """

    def __init__(
        self, scenario: Scenario, worker: int, workers: int, events: int, rate: float
    ) -> None:
        self.scenario = scenario
        self.worker = worker
        self.workers = workers
        self.events = events
        self.rate = rate
        self.block_s = block_seconds(scenario, workers)
        self.blocks: Iterator[Block] | None = None
        self.sent = 0
        self.started: float | None = None
        self.exhausted = False
        self.stopped = False
        #: Blocks handed out and not all queued yet.
        self.in_hand = 0
        self.piece = sys.maxsize if rate <= 0 else int(min(max(rate / 50, 100), BLOCK_ORDERS))

    def prepare(self) -> None:
        """Make the pass's blocks ready: with `events`, where the stream's N-th event lies
        (seconds for millions of events); `next_block` does it when not done before."""
        if self.blocks is None:
            self.blocks = share_blocks(
                self.scenario, self.worker, self.workers, self.events, self.block_s
            )

    def next_block(self) -> Block | None:
        """The next block to send (empty in a quiet stretch of the schedule; `put_down` it
        once sent); None when there is none now: exhausted, stopped, or at the end of a
        repeated pass (the next call starts it again)."""
        if self.exhausted or self.stopped:
            return None
        if self.started is None:
            self.started = time.monotonic()
        self.prepare()
        assert self.blocks is not None
        block = next(self.blocks, None)
        if block is None:
            self.blocks = None
            self.exhausted = self.events > 0
            return None
        self.in_hand += 1
        return block

    def put_down(self) -> None:
        """A block from `next_block` is sent, or given up as the run stops."""
        self.in_hand -= 1

    def pieces(self, block: Block) -> Iterator[Block]:
        """`block` in the pieces it is sent in (itself when unpaced), until `stopped`."""
        for first in range(0, max(len(block), 1), self.piece):
            if self.stopped:
                return
            if first == 0 and len(block) <= self.piece:
                yield block
                return
            last = first + self.piece
            yield Block(
                block.start_s,
                block.end_s,
                block.rows[first:last],
                block.generator,
                block.index[first:last],
            )

    def queued(self, events: int) -> float:
        """Count `events` more as sent; when (`time.monotonic`) this process may send again
        to hold its rate (-inf when unpaced)."""
        self.sent += events
        if self.rate <= 0 or self.started is None:
            return -math.inf
        return self.started + self.sent / self.rate


@dataclass(frozen=True, slots=True)
class Settled:
    """A block whose events have all left librdkafka: delivered, or failed."""

    events: int
    failures: int
    latency_ms: float
    size_bytes: int


class Deliveries:
    """The blocks one librdkafka producer has queued, settled as its queue drains.

    No delivery callback per message (about 1 µs each, at hundreds of thousands a second):
    librdkafka reports only failures (`delivery.report.only.error`), and the events that
    have left its queue are sent - queued; a block is settled once every event up to its
    last has left, with the time since its first was queued as its latency. As in
    `ConfluentSink`, the queue length also counts events waiting for a poll, so this is a
    lower bound, exact once the queue is empty; failures are counted to the oldest block
    still unsettled.
    """

    def __init__(self) -> None:
        self.queued = 0
        self.failed = 0
        self.last_error = ""
        self._failed_settled = 0
        self._left = 0
        self._blocks: deque[tuple[int, float, int, int]] = deque()

    def on_error(self, err: object, msg: object) -> None:
        """librdkafka's delivery report of a failed event (`on_delivery`)."""
        if err is not None:
            self.failed += 1
            self.last_error = str(err)

    def queue(self, events: int, size_bytes: int, started: float) -> None:
        """`events` events of `size_bytes` in all, queued since `started` (perf_counter)."""
        self.queued += events
        self._blocks.append((self.queued, started, events, size_bytes))

    def settle(self, in_queue: int, now: float) -> list[Settled]:
        """The blocks settled now that `in_queue` events are still in librdkafka's queue."""
        self._left = max(self._left, self.queued - in_queue)
        out: list[Settled] = []
        while self._blocks and self._blocks[0][0] <= self._left:
            _, started, events, size = self._blocks.popleft()
            failures = min(events, self.failed - self._failed_settled)
            self._failed_settled += failures
            out.append(Settled(events, failures, (now - started) * 1000, size))
        return out

    @property
    def pending(self) -> int:
        """Blocks not settled yet."""
        return len(self._blocks)
