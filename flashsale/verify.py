"""Reconciliation: recompute the truth from topic `orders` and compare what the workers produced.

The truth is a plain-Python re-implementation of the order rules, deliberately independent of
the Faust code in `streams/`. Per partition in offset order: an event whose (order id, line,
type) is among the last `window` distinct ones of its partition is a duplicate; a restock adds
units; `created` reserves the line's quantity if the SKU's stock covers it, else is rejected as
oversell; `paid` turns a reserved line into GMV; `cancelled` gives its units back; `refunded`
names a paid line among the last `window` paid ones (stock and GMV stay); a step that
describes its line otherwise than it was reserved is a mismatch (a `created` of a line still
held: a duplicate if it repeats the line, else a mismatch); a lifecycle event with nothing to
act on is an orphan; anything that breaks the schema is a dead letter.

Oversell is judged apart from the rules: the decisions alone are replayed (`judge_units`),
restocks in, reservations out and releases back on the SKU each line was reserved on, and
checked against the workers' stock and the conservation of units.
"""

from __future__ import annotations

import statistics
import zlib
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

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
    "judge_units",
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
    "mismatches",
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
    "mismatches": "mismatch",
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
    mismatches: int = 0
    dlq: int = 0
    #: `created` events (duplicates included) and malformed messages.
    orders: int = 0
    #: Every message but restocks: all lifecycle events and malformed messages.
    events: int = 0
    emit_ns: list[int] = field(default_factory=list)
    #: Paid GMV by dimension ("country", "category", "merchant", "province") and value.
    gmv_by: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Every sell-out, by the position of the event that took the last unit: (SKU, its event
    #: time, order id, line).
    sell_outs: dict[Position, tuple[str, int, str, int]] = field(default_factory=dict)
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

    @property
    def sold_out(self) -> set[str]:
        """The SKUs that sold out at least once."""
        return {sku for sku, *_ in self.sell_outs.values()}

    @property
    def sold_out_times(self) -> int:
        """Times a SKU's stock reached zero (a SKU can sell out again after a cancellation)."""
        return len(self.sell_outs)


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
        # line -> what a later step must repeat, as created: (units, cents, sku, country,
        # category, merchant, province)
        reserved: dict[tuple[str, int], _Line] = {}
        paid: OrderedDict[tuple[str, int], _Line] = OrderedDict()  # oldest first
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
            described = _Line(
                ev.quantity,
                ev.quantity * ev.unit_price_cents,
                ev.sku,
                ev.country,
                ev.category,
                ev.merchant,
                ev.province,
            )
            # The line a step names: held open, or paid (a refund; a `created` retried late).
            held = None
            if ev.type in ("created", "paid", "cancelled"):
                held = reserved.get(line)
            if held is None and ev.type in ("created", "refunded"):
                held = paid.get(line)
            outcome, cents = "orphan", 0
            if ev.type == "restock":
                stock[ev.sku] = stock.get(ev.sku, 0) + ev.quantity
                truth.restocked_at.setdefault(ev.sku, ev.event_ts_ms)
                outcome = "restocked"
            elif held is not None and held != described:
                outcome = "mismatch"
                truth.mismatches += 1
            elif ev.type == "created" and held is not None:
                truth.outcomes[where] = "duplicate"  # a retry later than the window
                truth.duplicates += 1
                continue
            elif ev.type == "created":
                have = stock.get(ev.sku, 0)
                if have >= ev.quantity:
                    stock[ev.sku] = have - ev.quantity
                    cents = described.cents
                    reserved[line] = described
                    outcome = "accepted"
                    truth.accepted += 1
                    if have == ev.quantity:
                        truth.sell_outs[where] = (ev.sku, ev.event_ts_ms, ev.order_id, ev.line)
                else:
                    outcome = "rejected_oversell"
                    truth.rejected_oversell += 1
            elif held is None:
                truth.orphans += 1
            elif ev.type == "paid":
                del reserved[line]
                cents = held.cents
                for dimension in _DIMENSIONS:
                    by = truth.gmv_by.setdefault(dimension, {})
                    name = getattr(held, dimension)
                    by[name] = by.get(name, 0) + cents
                paid[line] = held
                if len(paid) > window:
                    paid.popitem(last=False)
                outcome = "paid"
                truth.paid += 1
                truth.gmv_cents += cents
            elif ev.type == "cancelled":
                del reserved[line]
                stock[held.sku] = stock.get(held.sku, 0) + held.units
                cents = held.cents
                outcome = "cancelled"
                truth.cancelled += 1
            else:  # refunded
                del paid[line]
                cents = held.cents
                outcome = "refunded"
                truth.refunded += 1
                truth.refunded_cents += cents
            truth.outcomes[where] = outcome
            if cents:
                truth.amounts[where] = cents
            if ev.type != "restock":
                windows.add(where, ev, outcome, cents)
    return truth


_DIMENSIONS = ("country", "category", "merchant", "province")


class _Line(NamedTuple):
    """An order line as its `created` described it: what every later step must repeat."""

    units: int
    cents: int
    sku: str
    country: str
    category: str
    merchant: str
    province: str


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
    units_diffs, oversold = judge_units(decided, latest.values())
    oversold_skus = sorted(oversold | _negative_stock(latest.values()))
    if oversold_skus:
        diffs.append(f"{len(oversold_skus)} SKUs oversold: {', '.join(oversold_skus[:5])}")
    diffs.extend(units_diffs)

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
    sold_out_streamed = _compare_sell_outs(truth, inventory, latest.values(), diffs)

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

    lost, why = _lost_by_broker(orders, truth, list(latest.values()), decided, dead)
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
        "mismatched_events": counted["mismatch"],
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
    orders: Mapping[int, Sequence[Record]],
    truth: Truth,
    states: Sequence[Mapping[str, Any]],
    decided: Collection[Position],
    dead: Collection[Position],
) -> tuple[int, str]:
    """Messages of `orders` the workers applied that the topic no longer holds, at least, and
    how that shows (0 and "" when no offset is missing).

    Only missing offsets count as evidence: a worker's state that applied an offset beyond
    the partition's end; a state whose first or last applied offset now holds other bytes
    than it applied there (its CRC-32 differs: the topic was recreated and written again);
    decisions or dead letters of positions the topic does not hold. The number is a lower
    bound: the offsets beyond the end, the positions up to a rewritten state's offset whose
    message has neither decision nor dead letter (at least one), or the positions decided
    but not held, whichever is most.
    """
    newest: dict[int, int] = {}
    for partition, records in orders.items():
        if records:
            newest[partition] = max(rec.offset for rec in records)
    evidence: list[str] = []
    by_state = 0
    for st in states:
        partition, last = int(st["partition"]), int(st.get("last_offset", -1))
        if last < 0:
            continue
        end = newest.get(partition, -1)
        if last > end:
            evidence.append(
                f"partition {partition} ends at offset {end}, its worker applied up to {last}"
            )
            by_state += last - end
            continue
        rewritten = _rewritten(st, orders.get(partition, ()))
        if rewritten is not None:
            evidence.append(
                f"offset {rewritten} of partition {partition} no longer holds the message "
                "its worker applied there"
            )
            # Each offset the state covers whose message now has neither decision nor dead
            # letter held another message when the worker applied it.
            undecided = sum(
                1
                for where in truth.outcomes
                if where[0] == partition
                and where[1] <= last
                and where not in decided
                and where not in dead
            )
            by_state += max(undecided, 1)
    unheld = {where[:2] for where in (*decided, *dead) if where not in truth.outcomes}
    if unheld:
        evidence.append(
            f"{len(unheld):,} messages have decisions or dead letters but are not on the "
            "topic, e.g. " + ", ".join(_at(w) for w in sorted(unheld)[:MAX_EXAMPLES])
        )
    lost = max(by_state, len(unheld))
    return lost, "; ".join(evidence)


def _rewritten(st: Mapping[str, Any], records: Sequence[Record]) -> int | None:
    """The first of a state's fingerprinted offsets (its first and last applied) whose
    message the partition no longer holds with the same CRC-32 of its value, if any."""
    marks = [
        (int(offset), int(crc))
        for offset, crc in (
            (st.get("first_offset"), st.get("first_crc32")),
            (st.get("last_offset"), st.get("last_crc32")),
        )
        if offset is not None and crc is not None and int(offset) >= 0
    ]
    held = {rec.offset: rec for rec in records if rec.offset in {o for o, _ in marks}}
    for offset, crc in marks:
        rec = held.get(offset)
        if rec is None or zlib.crc32(rec.value or b"") != crc:
            return offset
    return None


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


class _Ledger:
    """Units of one partition's SKUs as its decisions alone move them."""

    def __init__(self) -> None:
        self.stock: dict[str, int] = {}
        self.restocked: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.sold: dict[str, int] = {}
        self.open: dict[tuple[str, int], tuple[str, int, Position]] = {}
        self.paid: set[tuple[str, int]] = set()
        #: Where each SKU went below zero: the positions of the reservations that took it.
        self.below: dict[str, list[Position]] = {}
        #: Anomalies by kind: a description of each.
        self.anomalies: dict[str, list[str]] = {}

    def snapshot(self) -> tuple[dict[str, int], ...]:
        return (dict(self.stock), dict(self.restocked), dict(self.reserved), dict(self.sold))

    def _note(self, kind: str, text: str) -> None:
        self.anomalies.setdefault(kind, []).append(text)

    def apply(self, where: Position, doc: Mapping[str, Any]) -> None:
        outcome = doc["outcome"]
        sku, units = str(doc["sku"]), int(doc["quantity"])
        line = (str(doc["order_id"]), int(doc.get("line", 0)))
        name = f"{_at(where)} {outcome} {line[0]}/{line[1]}"
        if outcome == "restocked":
            self.stock[sku] = self.stock.get(sku, 0) + units
            self.restocked[sku] = self.restocked.get(sku, 0) + units
        elif outcome == "accepted":
            held = self.open.get(line)
            if held is not None:
                self._note(
                    "reserved again while its earlier reservation is open",
                    f"{name} ({held[1]} of {held[0]} reserved at {_at(held[2])})",
                )
            self.open[line] = (sku, units, where)
            self.reserved[sku] = self.reserved.get(sku, 0) + units
            left = self.stock[sku] = self.stock.get(sku, 0) - units
            if left < 0:
                self.below.setdefault(sku, []).append(where)
        elif outcome in ("paid", "cancelled"):
            held = self.open.pop(line, None)
            if held is None:
                self._note("settle a line that holds no reservation", name)
                return
            held_sku, held_units, reserved_at = held
            if (sku, units) != (held_sku, held_units):
                self._note(
                    "name another SKU or quantity than their line reserved",
                    f"{name} names {units} of {sku}, the line reserved {held_units} of "
                    f"{held_sku} at {_at(reserved_at)}",
                )
            self.reserved[held_sku] = self.reserved.get(held_sku, 0) - held_units
            if outcome == "paid":
                self.sold[held_sku] = self.sold.get(held_sku, 0) + held_units
                self.paid.add(line)
            else:  # the units go back on sale, on the SKU the line took them from
                self.stock[held_sku] = self.stock.get(held_sku, 0) + held_units
        elif outcome == "refunded":
            if line not in self.paid:
                self._note("refund a line that was never paid", name)
            self.paid.discard(line)


def judge_units(
    decided: Mapping[Position, Mapping[str, Any]], states: Iterable[Mapping[str, Any]]
) -> tuple[list[str], set[str]]:
    """Judge oversell from the decisions alone, without the rules; return the differences
    found and the SKUs oversold.

    Per partition in source order: restocks add units, accepted lines take them, paid lines
    keep them (sold), cancelled lines give back what their reservation took, on the SKU it
    took them from. A SKU whose units go below zero is oversold (named with the positions of
    the reservations that took it there); a settlement of a line with no reservation, or one
    naming another SKU or quantity, is named too. At each worker state's `last_offset` the
    replay must hold exactly the state's stock, restocked, reserved and sold units per SKU,
    and the state itself must conserve units: restocked = in stock + reserved + sold.
    """
    by_partition: dict[int, list[tuple[Position, Mapping[str, Any]]]] = {}
    for where, doc in sorted(decided.items()):
        by_partition.setdefault(where[0], []).append((where, doc))
    of_partition = {int(st["partition"]): st for st in states}
    diffs: list[str] = []
    oversold: set[str] = set()
    anomalies: dict[str, list[str]] = {}
    for partition in sorted(by_partition.keys() | of_partition.keys()):
        ledger = _Ledger()
        st = of_partition.get(partition)
        upto = int(st.get("last_offset", -1)) if st is not None else None
        held_at_state = None
        for where, doc in by_partition.get(partition, ()):
            if held_at_state is None and upto is not None and where[1] > upto:
                held_at_state = ledger.snapshot()
            ledger.apply(where, doc)
        for sku, below in sorted(ledger.below.items()):
            oversold.add(sku)
            diffs.append(
                f"SKU {sku} oversold on partition {partition}: its units went below zero at "
                + ", ".join(_at(w) for w in below[:MAX_EXAMPLES])
                + (f" and {len(below) - MAX_EXAMPLES} more" if len(below) > MAX_EXAMPLES else "")
            )
        for kind, names in ledger.anomalies.items():
            anomalies.setdefault(kind, []).extend(names)
        if st is not None:
            diffs.extend(_state_units(partition, st, held_at_state or ledger.snapshot()))
    for kind, names in anomalies.items():
        diffs.append(f"{len(names)} decisions {kind}, e.g. " + "; ".join(names[:MAX_EXAMPLES]))
    return diffs, oversold


def _state_units(
    partition: int, st: Mapping[str, Any], replayed: tuple[dict[str, int], ...]
) -> list[str]:
    """How a worker state's units per SKU differ from the decisions replayed up to its
    offset, and where the state breaks the conservation of units."""
    stock, restocked, reserved, sold = replayed
    state_reserved: dict[str, int] = {}
    for record in st.get("open", {}).values():
        if len(record) > 6:  # a state written before lines kept their SKU has none
            state_reserved[record[6]] = state_reserved.get(record[6], 0) + int(record[0])
    parts = [("in stock", "stock", stock, st.get("stock"))]
    if "restocked" in st:  # a state written before units were tracked has only stock
        parts += [
            ("restocked", "restocked", restocked, st["restocked"]),
            ("reserved", "open", reserved, state_reserved),
            ("sold", "sold", sold, st.get("sold", {})),
        ]
    diffs = []
    for label, field_name, want, said in parts:
        if said is None:
            continue
        off = sorted(k for k in want.keys() | said.keys() if want.get(k, 0) != said.get(k, 0))
        if off:
            diffs.append(
                f"units {label} on partition {partition}: the worker state's `{field_name}` "
                f"differs from the decisions for {len(off)} SKUs, e.g. "
                + ", ".join(f"{k} {said.get(k, 0)} != {want.get(k, 0)}" for k in off[:3])
            )
    if "restocked" in st:
        state_stock, state_restocked, state_sold = (
            st.get("stock", {}),
            st["restocked"],
            st.get("sold", {}),
        )
        broken = []
        for sku in sorted(
            state_stock.keys() | state_restocked.keys() | state_reserved.keys() | state_sold.keys()
        ):
            held = (state_stock.get(sku, 0), state_reserved.get(sku, 0), state_sold.get(sku, 0))
            if state_restocked.get(sku, 0) != sum(held):
                broken.append(
                    f"{sku} restocked {state_restocked.get(sku, 0)} != in stock {held[0]} + "
                    f"reserved {held[1]} + sold {held[2]}"
                )
        if broken:
            diffs.append(
                f"units not conserved in the worker state of partition {partition} for "
                f"{len(broken)} SKUs, e.g. " + "; ".join(broken[:3])
            )
    return diffs


def _compare_sell_outs(
    truth: Truth,
    inventory: Mapping[int, Sequence[Record]],
    states: Iterable[Mapping[str, Any]],
    diffs: list[str],
) -> set[str]:
    """Match the sell-outs of `inventory-events` and of the worker states with the truth's one
    by one, by the position of the event that took the last unit (a re-delivered batch
    repeats its records: repeats must agree); add what differs to `diffs`. Return the SKUs
    `inventory-events` names."""
    skus: set[str] = set()
    streamed: dict[Position, tuple[str, int, str, int]] = {}
    unplaced: list[tuple[str, int]] = []  # records of workers older than positions
    disagree = bad_times = 0
    for part in sorted(inventory):
        for rec in inventory[part]:
            doc = orjson.loads(rec.value or b"{}")
            if doc.get("type") != "sold_out":
                continue
            skus.add(doc["sku"])
            ts = int(doc.get("event_ts_ms", -1))
            since = truth.restocked_at.get(doc["sku"])
            if (
                since is not None
                and "event_ts_ms" in doc
                and doc.get("time_to_sell_out_s") != ((ts - since) / 1000)
            ):
                bad_times += 1
            if "order_id" not in doc:
                unplaced.append((doc["sku"], ts))
                continue
            one = (str(doc["sku"]), ts, str(doc["order_id"]), int(doc["line"]))
            if streamed.setdefault(_position(doc), one) != one:
                disagree += 1
    if disagree:
        diffs.append(f"{disagree} re-published sold-out records disagree with the first")
    if bad_times:
        diffs.append(f"{bad_times} sold-out events carry a wrong time to sell out")
    if unplaced:
        if sorted(unplaced) != sorted((sku, ts) for sku, ts, *_ in truth.sell_outs.values()):
            diffs.append(
                f"sell-outs: inventory-events has {len(unplaced)} (SKU, time) pairs, truth "
                f"{len(truth.sell_outs)}"
            )
    else:
        _differ_by_position("inventory-events", streamed, truth.sell_outs, diffs)
    in_states: dict[Position, tuple[str, int, str, int]] = {}
    times = 0
    for st in states:
        if "sell_outs" not in st:  # a state written before sell-outs had positions
            times += len(st.get("sold_out", ()))
            continue
        for sku, ts, offset, index, order_id, line in st["sell_outs"]:
            where = (int(st["partition"]), int(offset))
            in_states[where if index is None else (*where, int(index))] = (
                sku,
                ts,
                order_id,
                line,
            )
    if times:
        if times + len(in_states) != truth.sold_out_times:
            diffs.append(
                f"sell-outs: worker totals say {times + len(in_states)}, truth "
                f"{truth.sold_out_times}"
            )
    else:
        _differ_by_position("the worker states", in_states, truth.sell_outs, diffs)
    return skus


def _differ_by_position(
    where: str,
    said: Mapping[Position, tuple[str, int, str, int]],
    truth: Mapping[Position, tuple[str, int, str, int]],
    diffs: list[str],
) -> None:
    """Add to `diffs` how the sell-outs `where` holds differ from the truth's."""
    missing = sorted(w for w in truth if w not in said)
    extra = sorted(w for w in said if w not in truth)
    wrong = sorted(w for w in said if w in truth and said[w] != truth[w])
    if not (missing or extra or wrong):
        return
    parts = []
    for label, positions, named in (
        ("missing", missing, truth),
        ("not in the truth", extra, said),
        ("other than the truth", wrong, said),
    ):
        if positions:
            parts.append(
                f"{len(positions)} {label} (e.g. "
                + ", ".join(f"{_at(w)} {named[w][0]}" for w in positions[:MAX_EXAMPLES])
                + ")"
            )
    diffs.append(f"sell-outs: {where} has {len(said)}, truth {len(truth)}: " + ", ".join(parts))


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
