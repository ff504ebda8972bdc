"""The worker's HTTP pages: `/metrics`, `/totals` and the whole-run JSON views.

Any worker answers the views for every partition, not only those it holds.

A worker knows the live state of the partitions it holds; the others' newest written states
are the tails of the state changelog, which every worker can read. A view combines both, so
with several workers each one's `/views/...` answers for the whole run. The combined states
are cached for `CACHE_S`, so a dashboard polling every worker costs a few changelog reads a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from flashsale.counters import GMV_DIMENSIONS, STATE_COUNTERS, gmv_field
from flashsale.kafka.reading import last_record, start_reader
from flashsale.settings import Settings
from streams.consumer import stop_consumer
from streams.processor import OrderProcessor
from streams.state import PartitionState, StateFormatError
from streams.windows import top_skus

__all__ = ["RunViews", "add_pages"]

CACHE_S: Final = 1.0


class RunViews:
    """Answers of the views over the newest state of every partition of the run."""

    def __init__(
        self, settings: Settings, live: Callable[[], Mapping[int, PartitionState]]
    ) -> None:
        self.settings = settings
        self.live = live
        self._reader: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._cached: tuple[float, dict[int, PartitionState]] = (0.0, {})
        self._partitioner = DefaultPartitioner()

    async def close(self) -> None:
        """Release the changelog reader."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await stop_consumer(reader)

    async def states(self) -> dict[int, PartitionState]:
        """The live state of held partitions and the newest written one of the others."""
        async with self._lock:
            at, cached = self._cached
            if time.monotonic() - at < CACHE_S:
                return cached
            live = dict(self.live())
            if self._reader is None:
                self._reader = await start_reader(self.settings.bootstrap_list(), self.settings)
            topic = self.settings.state_changelog_topic()
            states: dict[int, PartitionState] = {}
            for p in range(self.settings.partitions):
                if p in live:
                    states[p] = live[p]
                    continue
                record = await last_record(self._reader, TopicPartition(topic, p))
                if record is not None and record.value is not None:
                    with contextlib.suppress(StateFormatError):  # an older version's record
                        states[p] = PartitionState.from_bytes(record.value)
            self._cached = (time.monotonic(), states)
            return states

    async def gmv(self) -> dict[str, Any]:
        """GMV now, its breakdowns, conversion and cancellation rate."""
        states = await self.states()
        paid = sum(s.paid for s in states.values())
        accepted = sum(s.accepted for s in states.values())
        cancelled = sum(s.cancelled for s in states.values())
        gmv = sum(s.gmv_cents for s in states.values())
        body: dict[str, Any] = {
            "gmv_cents": gmv,
            "gmv_eur": gmv / 100,
            "accepted": accepted,
            "paid": paid,
            "cancelled": cancelled,
            "refunded_cents": sum(s.refunded_cents for s in states.values()),
            "late": sum(s.late for s in states.values()),
            "paid_to_created": round(paid / accepted, 4) if accepted else None,
            "cancellation_rate": round(cancelled / accepted, 4) if accepted else None,
            "partitions": {str(p): s.last_offset for p, s in sorted(states.items())},
        }
        for dimension in GMV_DIMENSIONS:
            summed: dict[str, int] = {}
            for state in states.values():
                for name, cents in getattr(state, gmv_field(dimension)).items():
                    summed[name] = summed.get(name, 0) + cents
            body[f"by_{dimension}"] = dict(sorted(summed.items(), key=lambda kv: -kv[1]))
        return body

    async def stock(self, sku: str) -> dict[str, Any] | None:
        """One SKU's units left, from the partition its key maps to (None: unknown SKU)."""
        states = await self.states()
        partition = self._partitioner(sku.encode(), list(range(self.settings.partitions)), [])
        state = states.get(partition)
        if state is None or sku not in state.stock:
            return None
        sell_outs = sum(1 for sell_out in state.sell_outs if sell_out[0] == sku)
        return {
            "sku": sku,
            "partition": partition,
            "stock": state.stock[sku],
            "sold_out": state.stock[sku] == 0,
            "sell_outs": sell_outs,
            # Where the units are: restocked = stock + reserved + sold.
            "restocked": state.restocked.get(sku, 0),
            "reserved": sum(r[0] for r in state.open.values() if r[6] == sku),
            "sold": state.sold.get(sku, 0),
            "as_of_offset": state.last_offset,
        }

    async def top_skus(self) -> dict[str, Any]:
        """The hot products: top SKUs by units in the newest minute any partition has open."""
        states = await self.states()
        starts = [int(start) for s in states.values() for start in s.minute_units]
        if not starts:
            return {"window_start_ms": None, "top": []}
        newest = max(starts)
        units: dict[str, int] = {}
        for state in states.values():
            for sku, n in state.minute_units.get(str(newest), {}).items():
                units[sku] = units.get(sku, 0) + n
        return {
            "window_start_ms": newest,
            "top": [{"sku": sku, "units": n} for sku, n in top_skus(units)],
        }

    async def sold_out(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent sell-outs (by event time), with each SKU's time to sell out."""
        states = await self.states()
        rows: list[dict[str, Any]] = []
        for state in states.values():
            for sku, ts, *_ in state.sell_outs:
                since = state.restocked_at.get(sku)
                rows.append(
                    {
                        "sku": sku,
                        "event_ts_ms": ts,
                        "time_to_sell_out_s": None if since is None else (ts - since) / 1000,
                        "stock_now": state.stock.get(sku, 0),
                    }
                )
        rows.sort(key=lambda r: (-r["event_ts_ms"], r["sku"]))
        return rows[:limit]


def add_pages(
    app: faust.App, processor: OrderProcessor, views: RunViews, registry: CollectorRegistry
) -> None:
    """Serve `/metrics` (of `registry`), `/totals` and the `/views/...` pages on `app`."""
    settings = processor.settings

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

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside `content_type`; the header carries it whole.
            return self.bytes(
                generate_latest(registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )

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
            for name in (*STATE_COUNTERS, "open_lines"):
                body[name] = sum(p[name] for p in parts)
            body["sold_out_skus"] = sum(p["sold_out"] for p in parts)
            body["partitions"] = parts
            return self.bytes(orjson.dumps(body), content_type="application/json")
