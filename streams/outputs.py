"""Every record a worker writes besides its state: decisions, sell-outs, late events, dead
letters, closed windows and hot products (docs/events.md describes each).

Decisions go out in whole producer batches per partition (`PartitionBatches`); the others are
sent one by one, each send's future added to the batch's `pending` list, which the batch
awaits before it writes any state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Final

import faust
import orjson
from aiokafka import AIOKafkaProducer

from flashsale.events import MalformedEvent, OrderEvent
from flashsale.settings import Settings
from streams.state import PartitionState

__all__ = [
    "DECISION_COLUMNS",
    "Outputs",
    "PartitionBatches",
    "decision_record",
    "packed_decision_record",
]

#: The event fields a packed decision repeats for its rows (beside outcome and amount).
DECISION_COLUMNS: Final = (
    "order_id",
    "line",
    "type",
    "sku",
    "quantity",
    "event_ts_ms",
    "emit_ns",
)

Pending = list[Awaitable[Any]]


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
        """Append a record to the open batch of `partition` (a new one when it is full)."""
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


def decision_record(
    order: OrderEvent, outcome: str, amount: int, partition: int, offset: int, now_ns: int
) -> bytes:
    """The decision on one event of its own message."""
    return orjson.dumps(
        {
            "order_id": order.order_id,
            "line": order.line,
            "type": order.type,
            "outcome": outcome,
            "sku": order.sku,
            "quantity": order.quantity,
            "amount_cents": amount,
            "partition": partition,
            "offset": offset,
            "event_ts_ms": order.event_ts_ms,
            "emit_ns": order.emit_ns,
            "processed_ns": now_ns,
        }
    )


def packed_decision_record(
    partition: int,
    offset: int,
    rows: list[int],
    picked: dict[str, Any],
    outcomes: list[str],
    amounts: list[int],
    now_ns: int,
) -> bytes:
    """The decisions on the valid rows of a packed message, as columns (`DECISION_COLUMNS`
    of those rows in `picked`)."""
    return orjson.dumps(
        {
            "packed": len(rows),
            "partition": partition,
            "offset": offset,
            "index": rows,
            **picked,
            "outcome": outcomes,
            "amount_cents": amounts,
            "processed_ns": now_ns,
        }
    )


class Outputs:
    """The sends of one worker's records other than decisions: through Faust's producer, or
    through `producer` (exactly-once mode: the transactional producer of one partition)."""

    def __init__(
        self, app: faust.App, settings: Settings, producer: AIOKafkaProducer | None = None
    ) -> None:
        self.app = app
        self.settings = settings
        self.producer = producer

    def decisions(self) -> PartitionBatches:
        """Fresh batches for one processing batch's decisions."""
        return PartitionBatches(
            self.producer or self.app.producer._ensure_producer(),  # type: ignore[attr-defined]
            self.settings.topic_decisions,
        )

    async def _send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None
    ) -> Awaitable[Any]:
        """Queue one record; the future resolves when the broker has acknowledged it."""
        if self.producer is None:
            return await self.app.producer.send(topic, key, value, None, None, headers)
        return await self.producer.send(topic, value, key=key, headers=headers)

    async def late(
        self,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        offset: int,
        watermark_ms: int,
        pending: Pending,
        index: int | None = None,
    ) -> None:
        """An event later than the window grace, as it came (a packed row as a single event),
        to `orders-late` with where it came from and the watermark it was judged by."""
        headers = [
            ("flashsale.reason", b"late"),
            ("flashsale.partition", str(partition).encode()),
            ("flashsale.offset", str(offset).encode()),
        ]
        if index is not None:
            headers.append(("flashsale.index", str(index).encode()))
        headers.append(("flashsale.watermark_ms", str(watermark_ms).encode()))
        pending.append(await self._send(self.settings.topic_late, key, value, headers))

    async def dead_letter(
        self,
        partition: int,
        msg: Any,
        problem: MalformedEvent,
        pending: Pending,
        index: int | None = None,
        value: bytes | None = None,
    ) -> None:
        """A malformed message (or row `index` of a packed one, as `value`) to the dead-letter
        topic with the reason and where it came from."""
        headers = [
            ("flashsale.reason", problem.reason.encode()),
            ("flashsale.detail", problem.detail.encode(errors="replace")),
            ("flashsale.topic", msg.topic.encode()),
            ("flashsale.partition", str(partition).encode()),
            ("flashsale.offset", str(msg.offset).encode()),
        ]
        if index is not None:
            headers.append(("flashsale.index", str(index).encode()))
        body = msg.value if value is None else value
        pending.append(await self._send(self.settings.topic_dlq, msg.key, body, headers))

    async def window(
        self,
        partition: int,
        size: int,
        start: int,
        accepted: int,
        paid: int,
        gmv: int,
        top: Sequence[tuple[str, int]],
        pending: Pending,
    ) -> None:
        """A closed window to its topic, and a closed minute's top SKUs to `hot-products`."""
        s = self.settings
        send = self._send
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
        pending.append(await send(topic, key, record))
        if size == 60:
            hot = orjson.dumps({"partition": partition, "window_start_ms": start, "top": top})
            pending.append(await send(s.topic_hot, key, hot))

    async def sold_out(self, state: PartitionState, first: int, pending: Pending) -> None:
        """The sell-outs of `state` from its `first`-th on, to `inventory-events`."""
        send = self._send
        for sku, sold_ts, offset, index, order_id, line in state.sell_outs[first:]:
            since = state.restocked_at.get(sku)
            event_doc = orjson.dumps(
                {
                    "type": "sold_out",
                    "sku": sku,
                    # The event that took the last unit.
                    "partition": state.partition,
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
            pending.append(await send(self.settings.topic_inventory, sku.encode(), event_doc))
