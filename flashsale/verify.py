"""Reconciliation: recompute the truth from topic `orders` and compare what the workers produced.

The truth is a plain-Python re-implementation of the order rules, deliberately independent of
the Faust code in `streams/`: per partition in offset order, an order id seen among the last
`window` distinct ids of its partition is a duplicate; a restock adds units; an order is
accepted only if its SKU's stock covers its quantity, else rejected as oversell; anything that
breaks the schema is a dead letter.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from flashsale.events import MalformedEvent, decode_event
from flashsale.kafka import read_topic
from flashsale.settings import Settings

__all__ = [
    "Record",
    "Truth",
    "VerifyResult",
    "compute_truth",
    "reconcile",
    "verify_live",
]

MAX_EXAMPLES = 5


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

    outcomes: dict[tuple[int, int], str] = field(default_factory=dict)
    gmv_cents: int = 0
    accepted: int = 0
    rejected_oversell: int = 0
    duplicates: int = 0
    dlq: int = 0
    orders: int = 0
    restocked: dict[str, int] = field(default_factory=dict)
    sold_out: set[str] = field(default_factory=set)
    emit_ns: list[int] = field(default_factory=list)
    scenario: str | None = None
    seed: int | None = None


def compute_truth(orders: Mapping[int, Sequence[Record]], window: int) -> Truth:
    """Apply the rules to every message of `orders`, partition by partition."""
    truth = Truth()
    for partition in sorted(orders):
        seen: dict[str, None] = {}
        stock: dict[str, int] = {}
        for rec in orders[partition]:
            where = (partition, rec.offset)
            try:
                ev = decode_event(rec.value)
            except MalformedEvent:
                truth.outcomes[where] = "dlq"
                truth.dlq += 1
                truth.orders += 1
                continue
            if ev.type == "created":
                truth.orders += 1
                truth.emit_ns.append(ev.emit_ns)
            elif truth.scenario is None:
                for name, value in rec.headers or ():
                    if name == "flashsale.scenario":
                        truth.scenario = value.decode(errors="replace")
                    elif name == "flashsale.seed":
                        truth.seed = int(value)
            if ev.order_id in seen:
                truth.outcomes[where] = "duplicate"
                truth.duplicates += 1
                continue
            seen[ev.order_id] = None
            if len(seen) > window:
                seen.pop(next(iter(seen)))
            have = stock.get(ev.sku, 0)
            if ev.type == "restock":
                stock[ev.sku] = have + ev.quantity
                truth.restocked[ev.sku] = truth.restocked.get(ev.sku, 0) + ev.quantity
                truth.outcomes[where] = "restocked"
            elif have >= ev.quantity:
                stock[ev.sku] = have - ev.quantity
                truth.gmv_cents += ev.quantity * ev.unit_price_cents
                truth.accepted += 1
                truth.outcomes[where] = "accepted"
                if stock[ev.sku] == 0:
                    truth.sold_out.add(ev.sku)
            else:
                truth.rejected_oversell += 1
                truth.outcomes[where] = "rejected_oversell"
    return truth


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
) -> VerifyResult:
    """Compare the workers' outputs with the truth recomputed from `orders`."""
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
    truth = compute_truth(orders, window)

    # Decisions: re-deliveries repeat a decision for the same source offset; they must agree.
    decided: dict[tuple[int, int], dict[str, Any]] = {}
    conflicts = 0
    for part in sorted(decisions):
        for rec in decisions[part]:
            doc = orjson.loads(rec.value or b"{}")
            where = (int(doc["partition"]), int(doc["offset"]))
            before = decided.get(where)
            if before is None:
                decided[where] = doc
            elif (before["outcome"], before["amount_cents"]) != (
                doc["outcome"],
                doc["amount_cents"],
            ):
                conflicts += 1
    if conflicts:
        diffs.append(f"{conflicts} re-delivered decisions disagree with the first")
    dead: set[tuple[int, int]] = set()
    for part in sorted(dead_letters):
        for rec in dead_letters[part]:
            p, o = _header(rec, "flashsale.partition"), _header(rec, "flashsale.offset")
            if p is not None and o is not None:
                dead.add((int(p), int(o)))

    missing: list[tuple[int, int]] = []
    wrong: list[str] = []
    for where, expected in truth.outcomes.items():
        if expected == "dlq":
            if where not in dead:
                missing.append(where)
            continue
        doc = decided.get(where)
        if doc is None:
            missing.append(where)
        elif doc["outcome"] != expected:
            wrong.append(f"{where[0]}:{where[1]} {doc['order_id']} {doc['outcome']} != {expected}")
    if missing:
        diffs.append(
            f"{len(missing)} messages on orders have no decision or dead letter yet, e.g. "
            + ", ".join(f"{p}:{o}" for p, o in missing[:MAX_EXAMPLES])
        )
    if wrong:
        diffs.append(f"{len(wrong)} decisions differ from the truth, e.g. " + "; ".join(wrong[:5]))

    order_docs = [d for d in decided.values() if d.get("type", "created") == "created"]
    counted = {"accepted": 0, "rejected_oversell": 0, "duplicate": 0}
    gmv_decided = 0
    sold_qty: dict[str, int] = {}
    for doc in decided.values():
        outcome = doc["outcome"]
        if outcome in counted:
            counted[outcome] += 1
        if outcome == "accepted":
            gmv_decided += doc["amount_cents"]
            sold_qty[doc["sku"]] = sold_qty.get(doc["sku"], 0) + doc["quantity"]
    oversold = sorted(s for s, q in sold_qty.items() if q > truth.restocked.get(s, 0))
    negative = sorted(
        s for st in latest.values() for s, units in st.get("stock", {}).items() if units < 0
    )
    oversold_skus = sorted(set(oversold) | set(negative))
    if oversold_skus:
        diffs.append(f"{len(oversold_skus)} SKUs oversold: {', '.join(oversold_skus[:5])}")

    gmv_state = sum(int(st["gmv_cents"]) for st in latest.values())
    state_counts = {
        "accepted": sum(int(st["accepted"]) for st in latest.values()),
        "rejected_oversell": sum(int(st["rejected_oversell"]) for st in latest.values()),
        "duplicate": sum(int(st["duplicates"]) for st in latest.values()),
    }
    expected_counts = {
        "accepted": truth.accepted,
        "rejected_oversell": truth.rejected_oversell,
        "duplicate": truth.duplicates,
    }
    for name, want in expected_counts.items():
        if counted[name] != want:
            diffs.append(f"{name}: decisions say {counted[name]}, truth {want}")
        if state_counts[name] != want:
            diffs.append(f"{name}: worker totals say {state_counts[name]}, truth {want}")
    if gmv_decided != truth.gmv_cents:
        diffs.append(f"GMV cents: decisions say {gmv_decided}, truth {truth.gmv_cents}")
    if gmv_state != truth.gmv_cents:
        diffs.append(f"GMV cents: worker totals say {gmv_state}, truth {truth.gmv_cents}")
    dlq_state = sum(int(st["dlq"]) for st in latest.values())
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

    latencies = sorted(
        (d["processed_ns"] - d["emit_ns"]) / 1e6 for d in order_docs if d["emit_ns"] > 0
    )
    processed_ns = [d["processed_ns"] for d in order_docs]
    produced_span = (max(truth.emit_ns) - min(truth.emit_ns)) / 1e9 if truth.emit_ns else 0.0
    processed_span = (max(processed_ns) - min(processed_ns)) / 1e9 if processed_ns else 0.0
    orders_processed = len(order_docs) + len(dead)
    duration = (
        (max(processed_ns) - min(truth.emit_ns)) / 1e9 if processed_ns and truth.emit_ns else 0.0
    )
    summary: dict[str, Any] = {
        "scenario": truth.scenario,
        "seed": truth.seed,
        "orders_produced": truth.orders,
        "orders_processed": orders_processed,
        "orders_accepted": counted["accepted"],
        "orders_rejected_oversell": counted["rejected_oversell"],
        "duplicates_dropped": counted["duplicate"],
        "dlq_messages": len(dead),
        "gmv_cents_expected": truth.gmv_cents,
        "gmv_cents_streamed": gmv_state,
        "oversold_skus": len(oversold_skus),
        "sold_out_skus": len(sold_out_streamed),
        "reconciled": not diffs,
        "produce_rate_per_s": round(truth.orders / produced_span, 1) if produced_span else 0.0,
        "process_rate_per_s": round(len(order_docs) / processed_span, 1) if processed_span else 0.0,
        "e2e_latency_p50_ms": _round(_percentile(latencies, 0.50)),
        "e2e_latency_p99_ms": _round(_percentile(latencies, 0.99)),
        "duration_s": round(duration, 3),
    }
    return VerifyResult(summary=summary, differences=diffs)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def verify_live(settings: Settings, bootstrap: str) -> VerifyResult:
    """Read every topic of the run from the broker and reconcile."""
    return reconcile(
        orders=await read_topic(bootstrap, settings.topic_orders),
        decisions=await read_topic(bootstrap, settings.topic_decisions),
        dead_letters=await read_topic(bootstrap, settings.topic_dlq),
        inventory=await read_topic(bootstrap, settings.topic_inventory),
        states=await read_topic(bootstrap, settings.state_changelog_topic()),
        default_window=settings.dedupe_window,
    )
