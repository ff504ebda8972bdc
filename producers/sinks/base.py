"""What every sink shares: its live counters (`ProduceStats`), the protocol `produce_scenario`
writes to (`Sink`), and the bookkeeping of sent, acknowledged and failed events.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from flashsale.events import OrderEvent, encode_event
from producers.metrics import ProducerMetrics

__all__ = ["SEQ_HEADER", "CountingSink", "Headers", "ProduceStats", "Sink", "with_seqs"]

Headers = list[tuple[str, bytes]]


#: Every message a producer sends to Kafka carries its position in the generator's stream
#: (restocks -R..-1, then order events from 0; a packed message: its last event's), so a
#: producer killed mid-run resumes where the broker stopped acknowledging.
SEQ_HEADER = "flashsale.seq"


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
    scenario_s: float = 0.0
    """Scenario seconds emitted so far."""
    behind_s: float = 0.0
    """How far the last block left after its scheduled time (0 when on time)."""
    max_behind_s: float = 0.0
    resumed_skipped: int = 0
    """Events (restocks too) a resumed run found on the broker already and did not send."""

    def schedule(self) -> dict[str, float | int]:
        """What was sent and whether it kept the scenario's schedule, for a run summary
        (`flashsale rate` holds a trial to `behind_max_s`)."""
        return {
            "events_sent": self.orders_sent,
            "restocks_sent": self.restocks_sent,
            "duration_s": round(self.duration_s, 3),
            "behind_max_s": round(self.max_behind_s, 3),
        }

    @property
    def in_flight(self) -> int:
        """Sent and neither acknowledged nor failed."""
        return self.sent - self.acked - self.errors

    @property
    def duration_s(self) -> float:
        """Seconds from the first send to the last acknowledgement (or now)."""
        end = self.finished_ns or time.time_ns()
        return max((end - self.started_ns) / 1e9, 1e-9) if self.started_ns else 0.0


class Sink(Protocol):
    """What `produce_scenario` writes to."""

    stats: ProduceStats
    metrics: ProducerMetrics | None
    #: True: values carry the wall-clock send time; False: the scenario clock (files).
    wall_clock: bool
    #: Events per packed message (0: one event per message).
    pack: int

    async def start(self) -> None: ...

    async def send(
        self,
        events: Iterable[OrderEvent],
        headers: Headers | None = None,
        seqs: Sequence[int] | None = None,
    ) -> None: ...

    async def send_raw(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None = None,
        seqs: Sequence[int] | None = None,
    ) -> None: ...

    async def send_packed(self, messages: Sequence[tuple[int, bytes, int, int]]) -> None: ...

    async def partitions(self) -> int: ...

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...


class CountingSink:
    """Shared bookkeeping of the sinks."""

    stats: ProduceStats
    metrics: ProducerMetrics | None
    wall_clock: bool = True
    pack: int = 0

    @property
    def in_flight(self) -> int:
        """Events sent and neither acknowledged nor failed yet."""
        self._settle()
        return self.stats.in_flight

    def _settle(self) -> None:
        """Count what the client has settled since (sinks that learn it later override)."""

    def _count_sent(self, n: int, restocks: int = 0) -> None:
        st = self.stats
        if not st.started_ns:
            st.started_ns = time.time_ns()
        st.sent += n
        st.orders_sent += n - restocks
        st.restocks_sent += restocks
        if self.metrics and n:
            self.metrics.count_sent(n, restocks)

    def _count_settled(self, acked: int, errors: int, last_error: str = "") -> None:
        st = self.stats
        st.acked += acked
        st.errors += errors
        if last_error:
            st.last_error = last_error
        if self.metrics:
            self.metrics.count_settled(acked, errors, st.in_flight)

    async def send(
        self,
        events: Iterable[OrderEvent],
        headers: Headers | None = None,
        seqs: Sequence[int] | None = None,
    ) -> None:
        """Encode and send events one by one (restocks and tests; the stream uses blocks)."""
        evs = list(events)
        now = time.time_ns() if self.wall_clock else 0
        keys = [e.sku.encode() for e in evs]
        values = [encode_event(e, emit_ns=now if now else e.emit_ns) for e in evs]
        restocks = sum(1 for e in evs if e.type == "restock")
        await self._send(keys, values, headers, restocks, seqs)

    async def send_raw(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None = None,
        seqs: Sequence[int] | None = None,
    ) -> None:
        """Queue encoded events (keys are SKUs); `seqs`: each one's stream position, sent in
        its `flashsale.seq` header."""
        await self._send(keys, values, headers, 0, seqs)

    async def _send(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        restocks: int,
        seqs: Sequence[int] | None,
    ) -> None:
        raise NotImplementedError

    async def send_packed(self, messages: Sequence[tuple[int, bytes, int, int]]) -> None:
        """Queue packed messages: (partition, value, events it carries, last event's seq)."""
        raise ValueError("packed messages need the kafka sink with --client aiokafka")

    async def partitions(self) -> int:
        """How many partitions `orders` has (sinks that pack know it)."""
        raise ValueError("packed messages need the kafka sink with --client aiokafka")


def with_seqs(
    headers: Headers | None, seqs: Sequence[int] | None, n: int
) -> Iterable[Headers | None]:
    """Each message's headers: the shared ones, plus its own `flashsale.seq`."""
    if seqs is None:
        return [headers] * n
    shared = headers or []
    return ([*shared, (SEQ_HEADER, b"%d" % seq)] for seq in seqs)
