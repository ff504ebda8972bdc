"""Reconciliation: recompute the truth from topic `orders` and compare what the workers produced.

The truth is a plain-Python re-implementation of the order rules, deliberately independent of
the Faust code in `streams/`. Per partition in offset order: an event whose (order id, line,
type) is among the last `window` distinct ones of its partition is a duplicate; a restock adds
units; `created` reserves the line's quantity if the SKU's stock covers it, else is rejected as
oversell; `paid` turns a reserved line into GMV; `cancelled` gives its units back; `refunded`
names a paid line among the last `window` paid ones (stock and GMV stay); a lifecycle event
with nothing to act on is an orphan; anything that breaks the schema is a dead letter.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from flashsale.events import (
    MalformedEvent,
    OrderEvent,
    decode_event,
    decode_packed,
    packed_count,
)
from flashsale.kafka import read_newest, read_topic
from flashsale.settings import Settings

__all__ = [
    "Record",
    "Truth",
    "VerifyResult",
    "compute_truth",
    "decision_docs",
    "reconcile",
    "verify_live",
]

MAX_EXAMPLES = 5

#: The counts compared three ways: truth, decisions, worker totals (the changelog's names).
COUNTS = (
    "accepted",
    "rejected_oversell",
    "duplicates",
    "paid",
    "cancelled",
    "refunded",
    "orphans",
)
#: The decision outcome each count counts.
_OUTCOME_OF = {
    "accepted": "accepted",
    "rejected_oversell": "rejected_oversell",
    "duplicates": "duplicate",
    "paid": "paid",
    "cancelled": "cancelled",
    "refunded": "refunded",
    "orphans": "orphan",
}


#: Where an event sits on `orders`: (partition, offset) for a message of its own,
#: (partition, offset, index) for a row of a packed message.
Position = tuple[int, ...]


class Record(Protocol):
    """What verify needs of a Kafka record (aiokafka's ConsumerRecord has it)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass
class Truth:
    """The outcome every message on `orders` must have, and the totals that follow."""

    outcomes: dict[Position, str] = field(default_factory=dict)
    #: The line amount a decision must carry, where it is not 0 (accepted, paid, ...).
    amounts: dict[Position, int] = field(default_factory=dict)
    gmv_cents: int = 0
    accepted: int = 0
    rejected_oversell: int = 0
    duplicates: int = 0
    paid: int = 0
    cancelled: int = 0
    refunded: int = 0
    refunded_cents: int = 0
    orphans: int = 0
    dlq: int = 0
    #: `created` events (duplicates included) and malformed messages.
    orders: int = 0
    #: Every message but restocks: all lifecycle events and malformed messages.
    events: int = 0
    restocked: dict[str, int] = field(default_factory=dict)
    sold_out: set[str] = field(default_factory=set)
    #: Times a SKU's stock reached zero (a SKU can sell out again after a cancellation).
    sold_out_times: int = 0
    emit_ns: list[int] = field(default_factory=list)
    #: Paid GMV by dimension ("country", "category", "merchant", "province") and value.
    gmv_by: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Every sell-out: (SKU, event time of the order that took the last unit).
    sell_outs: set[tuple[str, int]] = field(default_factory=set)
    #: Event time of each SKU's first restock.
    restocked_at: dict[str, int] = field(default_factory=dict)
    #: Events later than the window grace, by (partition, offset).
    late_at: set[Position] = field(default_factory=set)
    #: Each closed minute's hot products: (partition, start_ms) -> [(sku, units)] (top 10).
    hot: dict[tuple[int, int], list[tuple[str, int]]] = field(default_factory=dict)
    #: Closed event-time windows: (partition, size_s, start_ms) -> (accepted, paid, gmv_cents).
    windows: dict[tuple[int, int, int], tuple[int, int, int]] = field(default_factory=dict)
    scenario: str | None = None
    seed: int | None = None

    def count(self, name: str) -> int:
        """One of `COUNTS` by name."""
        return int(getattr(self, name))


def compute_truth(
    orders: Mapping[int, Sequence[Record]],
    window: int,
    grace_ms: Mapping[int, int] | None = None,
) -> Truth:
    """Apply the rules to every message of `orders`, partition by partition.

    `grace_ms` is each partition's window grace (as its worker ran; default 2,000 ms).
    """
    truth = Truth()
    for partition in sorted(orders):
        windows = _Windows(partition, (grace_ms or {}).get(partition, 2_000), truth)
        # Each partition has its own stock, lines and dedupe window.
        seen: OrderedDict[tuple[str, int, str], None] = OrderedDict()
        stock: dict[str, int] = {}
        # line -> (units, cents, country, category, merchant, province), as created
        reserved: dict[tuple[str, int], tuple[int, int, str, str, str, str]] = {}
        paid: OrderedDict[tuple[str, int], int] = OrderedDict()  # line -> cents, oldest first
        for where, ev, rec in _events_of(partition, orders[partition]):
            if ev is None:
                truth.outcomes[where] = "dlq"
                truth.dlq += 1
                truth.orders += 1
                truth.events += 1
                continue
            if ev.type == "restock":
                if truth.scenario is None:
                    for name, value in rec.headers or ():
                        if name == "flashsale.scenario":
                            truth.scenario = value.decode(errors="replace")
                        elif name == "flashsale.seed":
                            truth.seed = int(value)
            else:
                truth.events += 1
                truth.emit_ns.append(ev.emit_ns)
                if ev.type == "created":
                    truth.orders += 1
            mark = (ev.order_id, ev.line, ev.type)
            if mark in seen:
                truth.outcomes[where] = "duplicate"
                truth.duplicates += 1
                continue
            seen[mark] = None
            if len(seen) > window:
                seen.popitem(last=False)
            line = (ev.order_id, ev.line)
            outcome, cents = "orphan", 0
            if ev.type == "restock":
                stock[ev.sku] = stock.get(ev.sku, 0) + ev.quantity
                truth.restocked[ev.sku] = truth.restocked.get(ev.sku, 0) + ev.quantity
                truth.restocked_at.setdefault(ev.sku, ev.event_ts_ms)
                outcome = "restocked"
            elif ev.type == "created":
                have = stock.get(ev.sku, 0)
                if have >= ev.quantity:
                    stock[ev.sku] = have - ev.quantity
                    cents = ev.quantity * ev.unit_price_cents
                    reserved[line] = (
                        ev.quantity,
                        cents,
                        ev.country,
                        ev.category,
                        ev.merchant,
                        ev.province,
                    )
                    outcome = "accepted"
                    truth.accepted += 1
                    if have == ev.quantity:
                        truth.sold_out.add(ev.sku)
                        truth.sold_out_times += 1
                        truth.sell_outs.add((ev.sku, ev.event_ts_ms))
                else:
                    outcome = "rejected_oversell"
                    truth.rejected_oversell += 1
            elif ev.type == "paid" and line in reserved:
                _, cents, *names = reserved.pop(line)
                for dimension, name in zip(_DIMENSIONS, names, strict=True):
                    by = truth.gmv_by.setdefault(dimension, {})
                    by[name] = by.get(name, 0) + cents
                paid[line] = cents
                if len(paid) > window:
                    paid.popitem(last=False)
                outcome = "paid"
                truth.paid += 1
                truth.gmv_cents += cents
            elif ev.type == "cancelled" and line in reserved:
                units, cents, *_ = reserved.pop(line)
                stock[ev.sku] = stock.get(ev.sku, 0) + units
                outcome = "cancelled"
                truth.cancelled += 1
            elif ev.type == "refunded" and line in paid:
                cents = paid.pop(line)
                outcome = "refunded"
                truth.refunded += 1
                truth.refunded_cents += cents
            else:
                truth.orphans += 1
            truth.outcomes[where] = outcome
            if cents:
                truth.amounts[where] = cents
            if ev.type != "restock":
                windows.add(where, ev, outcome, cents)
    return truth


_DIMENSIONS = ("country", "category", "merchant", "province")


def _events_of(
    partition: int, records: Sequence[Record]
) -> Iterator[tuple[Position, OrderEvent | None, Record]]:
    """Each event of a partition in order, with its position; None for a dead letter.

    A packed message yields its rows (a row that breaks the schema is a dead letter of its
    own); one that cannot be read at all is a single dead letter.
    """
    for rec in records:
        where = (partition, rec.offset)
        if rec.headers and packed_count(rec.headers) is not None:
            try:
                batch = decode_packed(rec.value)
            except MalformedEvent:
                yield where, None, rec
                continue
            for i in range(batch.n):
                yield (*where, i), None if i in batch.bad else batch.event(i), rec
            continue
        try:
            yield where, decode_event(rec.value), rec
        except MalformedEvent:
            yield where, None, rec


def decision_docs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The per-event decisions one decision message carries (a packed one, one per row)."""
    if "packed" not in doc:
        yield doc
        return
    columns = [k for k, v in doc.items() if isinstance(v, list) and k != "index"]
    for j, index in enumerate(doc["index"]):
        row = {k: doc[k][j] for k in columns}
        row.update(
            partition=doc["partition"],
            offset=doc["offset"],
            index=index,
            processed_ns=doc["processed_ns"],
        )
        yield row


def _at(where: Position) -> str:
    """`partition:offset` (`:index` for a packed row), as messages name a position."""
    return ":".join(map(str, where))


def _position(doc: Mapping[str, Any]) -> Position:
    where = (int(doc["partition"]), int(doc["offset"]))
    return (*where, int(doc["index"])) if "index" in doc else where


class _Windows:
    """1 s and 60 s event-time windows of one partition (the rules of docs/streams.md)."""

    SIZES_MS = (1_000, 60_000)

    def __init__(self, partition: int, grace_ms: int, truth: Truth) -> None:
        self.partition = partition
        self.grace_ms = grace_ms
        self.truth = truth
        self.newest = -1
        self.open: dict[tuple[int, int], list[int]] = {}  # (size_ms, start) -> counts
        self.units: dict[int, dict[str, int]] = {}  # minute start -> {sku: units accepted}

    def add(self, where: Position, ev: OrderEvent, outcome: str, cents: int) -> None:
        ts = ev.event_ts_ms
        if self.newest >= 0 and ts < self.newest - self.grace_ms:
            self.truth.late_at.add(where)
            return
        if outcome in ("accepted", "paid"):
            for size in self.SIZES_MS:
                start = ts // size * size
                counts = self.open.setdefault((size, start), [0, 0, 0])
                if outcome == "accepted":
                    counts[0] += 1
                    if size == 60_000:
                        units = self.units.setdefault(start, {})
                        units[ev.sku] = units.get(ev.sku, 0) + ev.quantity
                else:
                    counts[1] += 1
                    counts[2] += cents
        if ts > self.newest:
            self.newest = ts
            mark = ts - self.grace_ms
            for size, start in [k for k in self.open if k[0] + k[1] <= mark]:
                accepted, paid, gmv = self.open.pop((size, start))
                key = (self.partition, size // 1000, start)
                self.truth.windows[key] = (accepted, paid, gmv)
                if size == 60_000:
                    units = self.units.pop(start, {})
                    ranked = sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))
                    self.truth.hot[(self.partition, start)] = ranked[:10]


@dataclass
class VerifyResult:
    """The run summary (ARCHITECTURE.md) and the differences found."""

    summary: dict[str, Any]
    differences: list[str]

    @property
    def reconciled(self) -> bool:
        """True when nothing differs."""
        return bool(self.summary["reconciled"])


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def _header(rec: Record, name: str) -> bytes | None:
    for key, value in rec.headers or ():
        if key == name:
            return value
    return None


def reconcile(
    orders: Mapping[int, Sequence[Record]],
    decisions: Mapping[int, Sequence[Record]],
    dead_letters: Mapping[int, Sequence[Record]],
    inventory: Mapping[int, Sequence[Record]],
    states: Mapping[int, Sequence[Record]],
    default_window: int,
    late: Mapping[int, Sequence[Record]] | None = None,
    revenue: Sequence[Mapping[int, Sequence[Record]]] | None = None,
    hot: Mapping[int, Sequence[Record]] | None = None,
) -> VerifyResult:
    """Compare the workers' outputs with the truth recomputed from `orders`.

    `late` (topic `orders-late`) and `revenue` (the two window topics) are compared when
    given.
    """
    diffs: list[str] = []
    # Latest worker state per source partition (the changelog is keyed by partition).
    latest: dict[bytes, dict[str, Any]] = {}
    for part in sorted(states):
        for rec in states[part]:
            if rec.key is not None and rec.value is not None:
                latest[rec.key] = orjson.loads(rec.value)
    windows = {int(st["window"]) for st in latest.values()}
    if len(windows) > 1:
        diffs.append(f"workers used different dedupe windows: {sorted(windows)}")
    window = windows.pop() if windows else default_window
    graces = {int(st["partition"]): int(st.get("grace_ms", 2_000)) for st in latest.values()}
    truth = compute_truth(orders, window, graces)

    # Decisions: re-deliveries repeat a decision for the same source offset; they must agree.
    decided: dict[Position, dict[str, Any]] = {}
    conflicts = 0
    for part in sorted(decisions):
        for rec in decisions[part]:
            for one in decision_docs(orjson.loads(rec.value or b"{}")):
                where = _position(one)
                before = decided.get(where)
                if before is None:
                    decided[where] = one
                elif (before["outcome"], before["amount_cents"]) != (
                    one["outcome"],
                    one["amount_cents"],
                ):
                    conflicts += 1
    if conflicts:
        diffs.append(f"{conflicts} re-delivered decisions disagree with the first")
    dead = _source_offsets(dead_letters)

    missing: list[Position] = []
    wrong: list[str] = []
    for where, expected in truth.outcomes.items():
        if expected == "dlq":
            if where not in dead:
                missing.append(where)
            continue
        doc = decided.get(where)
        if doc is None:
            missing.append(where)
            continue
        cents = truth.amounts.get(where, 0)
        if (doc["outcome"], doc["amount_cents"]) != (expected, cents):
            wrong.append(
                f"{_at(where)} {doc['order_id']}/{doc.get('line', 0)} {doc['type']} "
                f"{doc['outcome']} {doc['amount_cents']} != {expected} {cents}"
            )
    if missing:
        diffs.append(
            f"{len(missing)} messages on orders have no decision or dead letter yet, e.g. "
            + ", ".join(_at(w) for w in missing[:MAX_EXAMPLES])
        )
    if wrong:
        diffs.append(
            f"{len(wrong)} decisions differ from the truth, e.g. " + "; ".join(wrong[:MAX_EXAMPLES])
        )

    counted = dict.fromkeys(_OUTCOME_OF.values(), 0)
    cents_decided = {"paid": 0, "refunded": 0}
    for doc in decided.values():
        outcome = doc["outcome"]
        if outcome in counted:
            counted[outcome] += 1
        if outcome in cents_decided:
            cents_decided[outcome] += doc["amount_cents"]
    oversold_skus = sorted(set(_oversold(decided)) | set(_negative_stock(latest.values())))
    if oversold_skus:
        diffs.append(f"{len(oversold_skus)} SKUs oversold: {', '.join(oversold_skus[:5])}")

    def state_total(name: str) -> int:
        return sum(int(st.get(name, 0)) for st in latest.values())

    for name in COUNTS:
        want = truth.count(name)
        said = counted[_OUTCOME_OF[name]]
        if said != want:
            diffs.append(f"{name}: decisions say {said}, truth {want}")
        if state_total(name) != want:
            diffs.append(f"{name}: worker totals say {state_total(name)}, truth {want}")
    gmv_state = state_total("gmv_cents")
    for label, decided_cents, state_cents, want in (
        ("GMV cents", cents_decided["paid"], gmv_state, truth.gmv_cents),
        (
            "refunded cents",
            cents_decided["refunded"],
            state_total("refunded_cents"),
            truth.refunded_cents,
        ),
    ):
        if decided_cents != want:
            diffs.append(f"{label}: decisions say {decided_cents}, truth {want}")
        if state_cents != want:
            diffs.append(f"{label}: worker totals say {state_cents}, truth {want}")
    dlq_state = state_total("dlq")
    if len(dead) != truth.dlq or dlq_state != truth.dlq:
        diffs.append(
            f"dead letters: topic has {len(dead)}, worker totals {dlq_state}, truth {truth.dlq}"
        )
    sold_out_streamed: set[str] = set()
    for part in sorted(inventory):
        for rec in inventory[part]:
            doc = orjson.loads(rec.value or b"{}")
            if doc.get("type") == "sold_out":
                sold_out_streamed.add(doc["sku"])
    if sold_out_streamed != truth.sold_out:
        diffs.append(
            f"sold-out SKUs: inventory-events has {len(sold_out_streamed)}, "
            f"truth {len(truth.sold_out)}"
        )
    for dimension in _DIMENSIONS:
        if not all(f"gmv_by_{dimension}" in st for st in latest.values()):
            continue  # a state written before this breakdown existed
        summed: dict[str, int] = {}
        for st in latest.values():
            for name, cents in st.get(f"gmv_by_{dimension}", {}).items():
                summed[name] = summed.get(name, 0) + cents
        want_by = truth.gmv_by.get(dimension, {})
        if summed != want_by:
            names = sorted(k for k in set(summed) | set(want_by) if summed.get(k) != want_by.get(k))
            diffs.append(
                f"GMV by {dimension}: worker totals differ for {len(names)}, e.g. "
                + ", ".join(f"{k} {summed.get(k)} != {want_by.get(k)}" for k in names[:3])
            )
    streamed_sell_outs: set[tuple[str, int]] = set()
    bad_times = 0
    for part in sorted(inventory):
        for rec in inventory[part]:
            doc = orjson.loads(rec.value or b"{}")
            if doc.get("type") == "sold_out" and "event_ts_ms" in doc:
                streamed_sell_outs.add((doc["sku"], doc["event_ts_ms"]))
                since = truth.restocked_at.get(doc["sku"])
                if since is not None and doc.get("time_to_sell_out_s") != (
                    (doc["event_ts_ms"] - since) / 1000
                ):
                    bad_times += 1
    if streamed_sell_outs and streamed_sell_outs != truth.sell_outs:
        diffs.append(
            f"sell-outs: inventory-events has {len(streamed_sell_outs)} (SKU, time) pairs, "
            f"truth {len(truth.sell_outs)}"
        )
    if bad_times:
        diffs.append(f"{bad_times} sold-out events carry a wrong time to sell out")
    sold_out_times = sum(len(st.get("sold_out", ())) for st in latest.values())
    if sold_out_times != truth.sold_out_times:
        diffs.append(f"sell-outs: worker totals say {sold_out_times}, truth {truth.sold_out_times}")

    late_state = state_total("late")
    if late_state != len(truth.late_at):
        diffs.append(f"late events: worker totals say {late_state}, truth {len(truth.late_at)}")
    if late is not None:
        sent_late = _source_offsets(late)
        if sent_late != truth.late_at:
            diffs.append(
                f"late events: orders-late has {len(sent_late)}, truth {len(truth.late_at)}"
            )
    published: dict[tuple[int, int, int], tuple[int, int, int]] = {}
    if revenue is not None:
        disagree = 0
        for rec in (r for topic in revenue for part in sorted(topic) for r in topic[part]):
            doc = orjson.loads(rec.value or b"{}")
            key = (int(doc["partition"]), int(doc["size_s"]), int(doc["window_start_ms"]))
            counts = (int(doc["accepted"]), int(doc["paid"]), int(doc["gmv_cents"]))
            if published.setdefault(key, counts) != counts:
                disagree += 1
        if disagree:
            diffs.append(f"{disagree} re-published windows disagree with the first")
        if published != truth.windows:
            off = [
                k
                for k in set(published) | set(truth.windows)
                if published.get(k) != truth.windows.get(k)
            ]
            diffs.append(
                f"{len(off)} closed windows differ from the truth (published {len(published)}, "
                f"truth {len(truth.windows)}), e.g. "
                + ", ".join(
                    f"p{p} {size}s@{start}: {published.get((p, size, start))} != "
                    f"{truth.windows.get((p, size, start))}"
                    for p, size, start in sorted(off)[:MAX_EXAMPLES]
                )
            )

    if hot is not None:
        named: dict[tuple[int, int], list[tuple[str, int]]] = {}
        for part in sorted(hot):
            for rec in hot[part]:
                doc = orjson.loads(rec.value or b"{}")
                named[(int(doc["partition"]), int(doc["window_start_ms"]))] = [
                    (str(sku), int(units)) for sku, units in doc["top"]
                ]
        if named != truth.hot:
            diffs.append(
                f"hot products: {len(named)} minutes published, truth {len(truth.hot)}; "
                f"{sum(1 for k in named if named[k] != truth.hot.get(k))} differ"
            )

    lost, why = _lost_by_broker(truth, list(latest.values()), decided.values())
    if lost:
        # Every count below follows from the loss: say that, not that the counts disagree.
        diffs = [
            f"the broker lost at least {lost:,} messages of orders (its topics were "
            f"recreated?): {why}; the {len(diffs)} count differences that follow from it "
            "are not listed"
        ]

    # Orders are `created` lines; events are every message but restocks.
    event_docs = [d for d in decided.values() if d.get("type", "created") != "restock"]
    orders_decided = sum(1 for d in event_docs if d.get("type", "created") == "created")
    latencies = sorted(
        (d["processed_ns"] - d["emit_ns"]) / 1e6 for d in event_docs if d["emit_ns"] > 0
    )
    processed_ns = [d["processed_ns"] for d in event_docs]
    produced_span = (max(truth.emit_ns) - min(truth.emit_ns)) / 1e9 if truth.emit_ns else 0.0
    processed_span = (max(processed_ns) - min(processed_ns)) / 1e9 if processed_ns else 0.0
    duration = (
        (max(processed_ns) - min(truth.emit_ns)) / 1e9 if processed_ns and truth.emit_ns else 0.0
    )
    summary: dict[str, Any] = {
        "scenario": truth.scenario,
        "seed": truth.seed,
        "orders_produced": truth.orders,
        "orders_processed": orders_decided + len(dead),
        "orders_accepted": counted["accepted"],
        "orders_rejected_oversell": counted["rejected_oversell"],
        "orders_paid": counted["paid"],
        "orders_cancelled": counted["cancelled"],
        "orders_refunded": counted["refunded"],
        "duplicates_dropped": counted["duplicate"],
        "orphan_events": counted["orphan"],
        "dlq_messages": len(dead),
        "events_produced": truth.events,
        "events_processed": len(event_docs) + len(dead),
        "gmv_cents_expected": truth.gmv_cents,
        "gmv_cents_streamed": gmv_state,
        "refunded_cents": truth.refunded_cents,
        "oversold_skus": len(oversold_skus),
        "sold_out_skus": len(sold_out_streamed),
        "late_events": late_state,
        "windows_closed": len(truth.windows),
        "reconciled": not diffs,
        "produce_rate_per_s": round(truth.events / produced_span, 1) if produced_span else 0.0,
        "process_rate_per_s": round(len(event_docs) / processed_span, 1) if processed_span else 0.0,
        "e2e_latency_p50_ms": _round(_percentile(latencies, 0.50)),
        "e2e_latency_p99_ms": _round(_percentile(latencies, 0.99)),
        "duration_s": round(duration, 3),
        "broker_lost_messages": lost,
    }
    return VerifyResult(summary=summary, differences=diffs)


def _lost_by_broker(
    truth: Truth, states: Sequence[Mapping[str, Any]], decided: Iterable[Mapping[str, Any]]
) -> tuple[int, str]:
    """Messages of `orders` the workers saw that the topic no longer holds, at least, and how
    that shows (0 and "" when nothing shows it).

    Every run's `orders` begins with the catalog's restocks, and a worker's state counts
    each event it applied on its partition up to `last_offset`. A broker that loses its
    topics (memory storage restarted, a topic deleted and recreated) leaves states that
    count more events or restocks than the partition now holds up to that offset, or
    decisions accepting lines of SKUs that no restock on the topic ever stocked.
    """
    held: dict[int, int] = {}
    restocks: dict[int, int] = {}
    last = {int(st["partition"]): int(st.get("last_offset", -1)) for st in states}
    ends: dict[int, int] = {}
    for where, outcome in truth.outcomes.items():
        partition, offset = where[0], where[1]
        ends[partition] = max(ends.get(partition, 0), offset + 1)
        if offset <= last.get(partition, -1):
            held[partition] = held.get(partition, 0) + 1
            if outcome == "restocked":
                restocks[partition] = restocks.get(partition, 0) + 1
    by_state = 0
    for st in states:
        partition = int(st["partition"])
        missing_restocks = int(st.get("restocks", 0)) - restocks.get(partition, 0)
        beyond = last[partition] >= ends.get(partition, 0)
        applied = sum(int(st.get(name, 0)) for name in (*COUNTS, "restocks", "dlq"))
        by_state += max(applied - held.get(partition, 0) if beyond else 0, missing_restocks, 0)
    unstocked = {
        doc["sku"]
        for doc in decided
        if doc["outcome"] == "accepted" and doc["sku"] not in truth.restocked
    }
    if by_state >= len(unstocked) and by_state:
        return by_state, (
            f"the workers' state counts {by_state:,} more events or restocks than the "
            "topic holds up to the offsets it has applied"
        )
    if unstocked:
        return len(unstocked), (
            f"the workers accepted lines of {len(unstocked):,} SKUs that no restock on the "
            "topic stocked (every run begins with them)"
        )
    return 0, ""


def _source_offsets(records: Mapping[int, Sequence[Record]]) -> set[Position]:
    """The position on `orders` each record names in its `flashsale.*` headers (with the
    row index for a row of a packed message)."""
    out: set[Position] = set()
    for part in sorted(records):
        for rec in records[part]:
            p, o = _header(rec, "flashsale.partition"), _header(rec, "flashsale.offset")
            if p is not None and o is not None:
                i = _header(rec, "flashsale.index")
                out.add((int(p), int(o)) if i is None else (int(p), int(o), int(i)))
    return out


def _oversold(decided: Mapping[Position, Mapping[str, Any]]) -> set[str]:
    """SKUs whose units, replaying the decisions in offset order, ever went below zero.

    Restocks add units, accepted lines take them, cancelled lines give back what they took.
    """
    units: dict[tuple[int, str], int] = {}
    taken: dict[tuple[int, str, int], int] = {}
    oversold: set[str] = set()
    for (partition, *_), doc in sorted(decided.items()):
        outcome = doc["outcome"]
        key = (partition, doc["sku"])
        line = (partition, doc["order_id"], int(doc.get("line", 0)))
        if outcome == "restocked":
            units[key] = units.get(key, 0) + doc["quantity"]
        elif outcome == "accepted":
            units[key] = units.get(key, 0) - doc["quantity"]
            taken[line] = doc["quantity"]
            if units[key] < 0:
                oversold.add(doc["sku"])
        elif outcome == "cancelled":
            units[key] = units.get(key, 0) + taken.pop(line, doc["quantity"])
    return oversold


def _negative_stock(states: Iterable[Mapping[str, Any]]) -> set[str]:
    """SKUs a worker state holds below zero units."""
    return {sku for st in states for sku, units in st.get("stock", {}).items() if units < 0}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def verify_live(settings: Settings, bootstrap: str) -> VerifyResult:
    """Read every topic of the run from the broker and reconcile."""
    return reconcile(
        orders=await read_topic(bootstrap, settings.topic_orders),
        decisions=await read_topic(bootstrap, settings.topic_decisions),
        dead_letters=await read_topic(bootstrap, settings.topic_dlq),
        inventory=await read_topic(bootstrap, settings.topic_inventory),
        # Each changelog partition holds one source partition's successive states: its newest
        # record is the one compared, and a long run's thousands of snapshots stay unread.
        states=await read_newest(bootstrap, settings.state_changelog_topic()),
        default_window=settings.dedupe_window,
        late=await read_topic(bootstrap, settings.topic_late),
        revenue=[
            await read_topic(bootstrap, settings.topic_revenue_second),
            await read_topic(bootstrap, settings.topic_revenue_minute),
        ],
        hot=await read_topic(bootstrap, settings.topic_hot),
    )
