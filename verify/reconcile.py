"""The verdict: the workers' decisions, dead letters, states, sell-outs, windows and hot
products compared with the truth recomputed from `orders`, and the run summary.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from flashsale.counters import GMV_DIMENSIONS, MONEY, OUTCOME_COUNTS, gmv_field
from verify.loss import lost_by_broker
from verify.records import (
    MAX_EXAMPLES,
    Position,
    Record,
    at,
    decision_docs,
    position_of,
    source_offsets,
)
from verify.summary import ordered
from verify.truth import Truth, compute_truth
from verify.units import judge_units, negative_stock

if TYPE_CHECKING:
    from verify.acks import AckCheck

__all__ = ["COUNTS", "VerifyResult", "reconcile"]

#: The counts compared three ways: truth, decisions, worker totals (the changelog's names).
COUNTS = tuple(count.field for count in OUTCOME_COUNTS)


@dataclass
class VerifyResult:
    """The run summary (`verify.summary`) and the differences found."""

    summary: dict[str, Any]
    differences: list[str]
    #: The acknowledged writes lost or duplicated, named (`add_ack_check`); apart from the
    #: business `differences`.
    ack_findings: list[str] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        """True when nothing differs."""
        return bool(self.summary["reconciled"])

    @property
    def passed(self) -> bool:
        """Reconciled, and no acknowledged write lost (when acknowledgement logs were
        checked): what `verify` and `demo` exit 0 on."""
        return self.reconciled and not self.summary.get("acked_lost")

    def add_ack_check(self, check: AckCheck) -> None:
        """Put the verdict on the acknowledged writes (`verify.acks`) into the summary."""
        self.summary.update(
            acked_writes=check.writes,
            acked_lost=len(check.lost),
            acked_duplicated=len(check.duplicated),
        )
        self.ack_findings = check.findings()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


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
                where = position_of(one)
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
    dead = source_offsets(dead_letters)

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
                f"{at(where)} {doc['order_id']}/{doc.get('line', 0)} {doc['type']} "
                f"{doc['outcome']} {doc['amount_cents']} != {expected} {cents}"
            )
    if missing:
        diffs.append(
            f"{len(missing)} messages on orders have no decision or dead letter yet, e.g. "
            + ", ".join(at(w) for w in missing[:MAX_EXAMPLES])
        )
    if wrong:
        diffs.append(
            f"{len(wrong)} decisions differ from the truth, e.g. " + "; ".join(wrong[:MAX_EXAMPLES])
        )

    counted = {count.outcome: 0 for count in OUTCOME_COUNTS}
    cents_decided = {outcome: 0 for _, outcome in MONEY}
    for doc in decided.values():
        outcome = doc["outcome"]
        if outcome in counted:
            counted[outcome] += 1
        if outcome in cents_decided:
            cents_decided[outcome] += doc["amount_cents"]
    units_diffs, oversold = judge_units(decided, latest.values())
    oversold_skus = sorted(oversold | negative_stock(latest.values()))
    if oversold_skus:
        diffs.append(f"{len(oversold_skus)} SKUs oversold: {', '.join(oversold_skus[:5])}")
    diffs.extend(units_diffs)

    def state_total(name: str) -> int:
        return sum(int(st.get(name, 0)) for st in latest.values())

    for count in OUTCOME_COUNTS:
        name = count.field
        want = truth.count(name)
        said = counted[count.outcome]
        if said != want:
            diffs.append(f"{name}: decisions say {said}, truth {want}")
        if state_total(name) != want:
            diffs.append(f"{name}: worker totals say {state_total(name)}, truth {want}")
    gmv_state = state_total("gmv_cents")
    for name, outcome in MONEY:
        label = name.replace("_", " ").replace("gmv", "GMV")
        decided_cents, state_cents, want = (
            cents_decided[outcome],
            state_total(name),
            truth.count(name),
        )
        if decided_cents != want:
            diffs.append(f"{label}: decisions say {decided_cents}, truth {want}")
        if state_cents != want:
            diffs.append(f"{label}: worker totals say {state_cents}, truth {want}")
    dlq_state = state_total("dlq")
    if len(dead) != truth.dlq or dlq_state != truth.dlq:
        diffs.append(
            f"dead letters: topic has {len(dead)}, worker totals {dlq_state}, truth {truth.dlq}"
        )
    for dimension in GMV_DIMENSIONS:
        if not all(gmv_field(dimension) in st for st in latest.values()):
            continue  # a state written before this breakdown existed
        summed: dict[str, int] = {}
        for st in latest.values():
            for name, cents in st.get(gmv_field(dimension), {}).items():
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
        sent_late = source_offsets(late)
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

    lost, why = lost_by_broker(orders, truth, list(latest.values()), decided, dead)
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
    summary = ordered(
        {
            "scenario": truth.scenario,
            "seed": truth.seed,
            "orders_produced": truth.orders,
            "orders_processed": orders_decided + len(dead),
            **{count.summary: counted[count.outcome] for count in OUTCOME_COUNTS},
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
            "process_rate_per_s": round(len(event_docs) / processed_span, 1)
            if processed_span
            else 0.0,
            "e2e_latency_p50_ms": _round(_percentile(latencies, 0.50)),
            "e2e_latency_p99_ms": _round(_percentile(latencies, 0.99)),
            "duration_s": round(duration, 3),
            "broker_lost_messages": lost,
            # Checked only against acknowledgement logs (`VerifyResult.add_ack_check`).
            "acked_writes": None,
            "acked_lost": None,
            "acked_duplicated": None,
        }
    )
    return VerifyResult(summary=summary, differences=diffs)


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
            if streamed.setdefault(position_of(doc), one) != one:
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
                + ", ".join(f"{at(w)} {named[w][0]}" for w in positions[:MAX_EXAMPLES])
                + ")"
            )
    diffs.append(f"sell-outs: {where} has {len(said)}, truth {len(truth)}: " + ", ".join(parts))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
