"""Judge a system that is not flashsale's: its output topic, written to the contract
(`verify.contract`, docs/contract.md), against the truth recomputed from `orders`.

`judge` compares and names each anomaly by class, with its first offenders; the latency runs
from each event's `emit_ns` to the Kafka timestamp of the output record that first carried its
effect.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, Protocol

from pydantic import ValidationError

from flashsale.counters import ACCEPTED, CANCELLED, PAID, REFUNDED, RESTOCKED
from verify.contract import LEVELS, parse_decision, parse_total
from verify.records import MAX_EXAMPLES, Position, Record, at
from verify.truth import Truth, compute_truth, events_of

__all__ = ["ANOMALIES", "Judgement", "TimedRecord", "classes", "judge"]


class TimedRecord(Record, Protocol):
    """An output record: what verify reads of any record, and its Kafka timestamp (ms)."""

    timestamp: int


#: Every anomaly class, in the verdict's order: what it means, and the levels it is judged
#: at (docs/contract.md).
ANOMALIES: Final = {
    "lost": ("events of orders with no decision", ("decisions",)),
    "double_counted": (
        "retries (duplicates by the rules) counted as events of their own",
        ("decisions",),
    ),
    "oversold": ("SKUs whose units went below zero", LEVELS),
    "wrong_outcome": ("decisions with another outcome than the rules give", ("decisions",)),
    "wrong_amount": ("decisions with the right outcome and another amount", ("decisions",)),
    "conflicting": ("repeated decisions that disagree with the first", ("decisions",)),
    "phantom": ("decisions naming a position orders does not hold", ("decisions",)),
    "gmv_window": ("minute x country x category cells of GMV that differ", LEVELS),
    "late_window": (
        "GMV cells short by exactly their events later than the window grace",
        LEVELS,
    ),
    "units_sold": ("SKUs whose units sold differ", ("totals",)),
    "stock": ("SKUs whose stock differs", ("totals",)),
    "sell_outs": ("sell-outs missing, or not in the truth", ("totals",)),
    "malformed": ("output records that break the contract's schema", LEVELS),
}


def classes(level: str) -> dict[str, str]:
    """The anomaly classes judged at `level`, in order, with what each means."""
    return {name: meaning for name, (meaning, levels) in ANOMALIES.items() if level in levels}


#: The outcomes that count an event: a duplicate decided as one of these was counted twice.
_COUNTING: Final = frozenset({ACCEPTED, PAID, CANCELLED, REFUNDED, RESTOCKED})

Cell = tuple[int, str, str]  # (minute start ms, country, category)


class _Event(NamedTuple):
    """What the verdict needs of one valid event of `orders`."""

    type: str
    sku: str
    quantity: int
    minute_ms: int
    country: str
    category: str
    emit_ns: int


@dataclass
class Judgement:
    """The verdict on a system's output topic."""

    level: str
    topic: str
    #: Events on `orders` (messages, and rows of packed ones), restocks and dead letters in.
    events: int
    #: Records read from the system's topic.
    records: int
    #: Offenders by anomaly class (every class of `ANOMALIES`, in order): count, examples
    #: (a class not judged at the level stays at 0).
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ANOMALIES, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in ANOMALIES})
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, anomaly: str, example: str) -> None:
        """Count one offender of `anomaly`, naming it among the first few."""
        self.counts[anomaly] += 1
        if len(self.examples[anomaly]) < MAX_EXAMPLES:
            self.examples[anomaly].append(example)

    @property
    def passed(self) -> bool:
        """No anomaly of any class."""
        return not any(self.counts.values())

    def latency(self, q: float) -> float | None:
        """The `q` quantile of the latencies, ms (None without any)."""
        values = self.latencies_ms
        if not values:
            return None
        if len(values) == 1:
            return round(values[0], 2)
        cuts = statistics.quantiles(values, n=1000, method="inclusive")
        return round(cuts[round(q * 1000) - 1], 2)

    def to_json(self) -> dict[str, Any]:
        """`verify --against --json`: the verdict as docs/contract.md describes it."""
        return {
            "level": self.level,
            "topic": self.topic,
            "events": self.events,
            "records": self.records,
            "anomalies": {
                name: {"count": self.counts[name], "examples": self.examples[name]}
                for name in classes(self.level)
            },
            "latency_p50_ms": self.latency(0.50),
            "latency_p99_ms": self.latency(0.99),
            "latency_p999_ms": self.latency(0.999),
            "passed": self.passed,
        }


def judge(
    orders: Mapping[int, Sequence[Record]],
    output: Mapping[int, Sequence[TimedRecord]],
    level: str,
    topic: str,
    window: int,
    grace_ms: int,
) -> Judgement:
    """Judge `output` (a system's topic, per partition in offset order) at `level` against
    the truth of `orders`, recomputed with dedupe `window` and window grace `grace_ms`."""
    if level not in LEVELS:
        raise ValueError(f"{level!r} is not one of {', '.join(LEVELS)}")
    truth = compute_truth(orders, window, dict.fromkeys(orders, grace_ms))
    events: dict[Position, _Event] = {}
    for partition in sorted(orders):
        for where, ev, _ in events_of(partition, orders[partition]):
            if ev is not None:
                events[where] = _Event(
                    ev.type,
                    ev.sku,
                    ev.quantity,
                    ev.event_ts_ms // 60_000 * 60_000,
                    ev.country,
                    ev.category,
                    ev.emit_ns,
                )
    verdict = Judgement(level, topic, len(truth.outcomes), sum(len(r) for r in output.values()))
    if level == "decisions":
        _judge_decisions(truth, events, output, verdict)
    else:
        _judge_totals(truth, events, output, verdict)
    return verdict


def _where(topic: str, rec: Record) -> str:
    return f"{topic} {rec.partition}:{rec.offset}"


def _minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _cell_name(cell: Cell) -> str:
    return f"{_minute(cell[0])} {cell[1]} {cell[2]}"


def _truth_cells(
    truth: Truth, events: Mapping[Position, _Event]
) -> tuple[dict[Cell, int], dict[Cell, int], dict[Cell, int]]:
    """Paid GMV by cell; the part of it from events later than the grace; and the newest
    emit time (ns) of the `paid` events of each cell."""
    cells: dict[Cell, int] = {}
    late: dict[Cell, int] = {}
    newest: dict[Cell, int] = {}
    for where, outcome in truth.outcomes.items():
        if outcome != PAID:
            continue
        ev = events[where]
        cell = (ev.minute_ms, ev.country, ev.category)
        cents = truth.amounts.get(where, 0)
        cells[cell] = cells.get(cell, 0) + cents
        if where in truth.late_at:
            late[cell] = late.get(cell, 0) + cents
        newest[cell] = max(newest.get(cell, 0), ev.emit_ns)
    return cells, late, newest


def _compare_cells(
    said: Mapping[Cell, int],
    truth: Mapping[Cell, int],
    late: Mapping[Cell, int],
    verdict: Judgement,
) -> None:
    for cell in sorted(set(said) | set(truth)):
        got, want = said.get(cell, 0), truth.get(cell, 0)
        if got == want:
            continue
        name = f"{_cell_name(cell)}: {got:,} != {want:,} cents"
        if late.get(cell) and got == want - late[cell]:
            verdict.add("late_window", f"{name} (late events: {late[cell]:,})")
        else:
            verdict.add("gmv_window", name)


def _judge_decisions(
    truth: Truth,
    events: Mapping[Position, _Event],
    output: Mapping[int, Sequence[TimedRecord]],
    verdict: Judgement,
) -> None:
    topic = verdict.topic
    decided: dict[Position, tuple[str, int, int]] = {}  # outcome, amount, timestamp ms
    for part in sorted(output):
        for rec in output[part]:
            try:
                doc = parse_decision(rec.value)
            except ValidationError as exc:
                verdict.add("malformed", f"{_where(topic, rec)}: {_first_error(exc)}")
                continue
            where = doc.position
            one = (doc.outcome, doc.amount_cents, rec.timestamp)
            before = decided.setdefault(where, one)
            if before is not one and before[:2] != one[:2]:
                verdict.add(
                    "conflicting",
                    f"{at(where)}: {one[0]} {one[1]} after {before[0]} {before[1]} "
                    f"({_where(topic, rec)})",
                )
    for where in sorted(decided):
        if where not in truth.outcomes:
            verdict.add("phantom", f"{at(where)} ({decided[where][0]})")

    said_cells: dict[Cell, int] = {}
    stock: dict[str, int] = {}
    below: set[str] = set()
    for where in sorted(truth.outcomes):
        expected = truth.outcomes[where]
        got = decided.get(where)
        if got is None:
            verdict.add("lost", f"{at(where)} ({expected})")
            continue
        outcome, amount, ts_ms = got
        want = truth.amounts.get(where, 0)
        if expected == "duplicate" and outcome in _COUNTING:
            verdict.add("double_counted", f"{at(where)}: {outcome} {amount}, a retry")
        elif outcome != expected:
            verdict.add("wrong_outcome", f"{at(where)}: {outcome} != {expected}")
        elif amount != want:
            verdict.add("wrong_amount", f"{at(where)} {outcome}: {amount} != {want}")
        ev = events.get(where)
        if ev is None:
            continue  # a dead letter
        if ev.emit_ns > 0 and ev.type != "restock":
            verdict.latencies_ms.append(ts_ms - ev.emit_ns / 1e6)
        # Units and GMV as the system's own decisions move them.
        if outcome == RESTOCKED:
            stock[ev.sku] = stock.get(ev.sku, 0) + ev.quantity
        elif outcome == ACCEPTED:
            left = stock[ev.sku] = stock.get(ev.sku, 0) - ev.quantity
            if left < 0 and ev.sku not in below:  # a SKU counts once
                below.add(ev.sku)
                verdict.add("oversold", f"{ev.sku}: {left} units after {at(where)}")
        elif outcome == CANCELLED:
            stock[ev.sku] = stock.get(ev.sku, 0) + ev.quantity
        elif outcome == PAID:
            cell = (ev.minute_ms, ev.country, ev.category)
            said_cells[cell] = said_cells.get(cell, 0) + amount
    cells, late, _ = _truth_cells(truth, events)
    _compare_cells(said_cells, cells, late, verdict)


def _judge_totals(
    truth: Truth,
    events: Mapping[Position, _Event],
    output: Mapping[int, Sequence[TimedRecord]],
    verdict: Judgement,
) -> None:
    topic = verdict.topic
    # Each key's values in the order they were written: (timestamp ms, value), and the
    # partition the newest came from.
    history: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
    newest: dict[tuple[Any, ...], tuple[int, int, Any]] = {}  # key -> (ts, partition, value)
    for part in sorted(output):
        for rec in output[part]:
            try:
                doc = parse_total(rec.value)
            except ValidationError as exc:
                verdict.add("malformed", f"{_where(topic, rec)}: {_first_error(exc)}")
                continue
            if doc.kind == "gmv":
                value: Any = doc.gmv_cents
            elif doc.kind == "sku":
                value = (doc.units_sold, doc.stock)
            else:
                value = True
            history.setdefault(doc.key, []).append((rec.timestamp, value))
            held = newest.get(doc.key)
            if held is None or held[1] == part or rec.timestamp >= held[0]:
                newest[doc.key] = (rec.timestamp, part, value)

    def first_at(key: tuple[Any, ...], value: Any) -> int | None:
        for ts, said in sorted(history.get(key, ()), key=lambda tv: tv[0]):
            if said == value:
                return ts
        return None

    # GMV cells.
    cells, late, newest_emit = _truth_cells(truth, events)
    said_cells = {
        (key[1], key[2], key[3]): value for key, (_, _, value) in newest.items() if key[0] == "gmv"
    }
    _compare_cells(said_cells, cells, late, verdict)
    for cell, cents in cells.items():
        ts = first_at(("gmv", *cell), cents)
        if ts is not None and newest_emit.get(cell, 0) > 0:
            verdict.latencies_ms.append(ts - newest_emit[cell] / 1e6)

    # Units sold and stock per SKU, and the newest event that moved them.
    sold: dict[str, int] = {}
    stock: dict[str, int] = {}
    moved: dict[str, int] = {}
    for where, outcome in truth.outcomes.items():
        ev = events.get(where)
        if ev is None or outcome not in (RESTOCKED, ACCEPTED, CANCELLED, PAID):
            continue
        stock.setdefault(ev.sku, 0)
        sold.setdefault(ev.sku, 0)
        if outcome in (RESTOCKED, CANCELLED):
            stock[ev.sku] += ev.quantity
        elif outcome == ACCEPTED:
            stock[ev.sku] -= ev.quantity
        else:
            sold[ev.sku] += ev.quantity
        moved[ev.sku] = max(moved.get(ev.sku, 0), ev.emit_ns)
    said_skus = {key[1]: value for key, (_, _, value) in newest.items() if key[0] == "sku"}
    for sku in sorted(set(stock) | set(said_skus)):
        units, left = said_skus.get(sku, (0, 0))
        if units != sold.get(sku, 0):
            verdict.add("units_sold", f"{sku}: {units:,} != {sold.get(sku, 0):,}")
        if left != stock.get(sku, 0):
            verdict.add("stock", f"{sku}: {left:,} != {stock.get(sku, 0):,}")
        if left < 0:
            verdict.add("oversold", f"{sku}: stock {left:,}")
        if sku in stock and moved.get(sku, 0) > 0:
            ts = first_at(("sku", sku), (sold[sku], stock[sku]))
            if ts is not None:
                verdict.latencies_ms.append(ts - moved[sku] / 1e6)

    # Sell-outs, each by SKU and event time.
    want_outs: dict[tuple[str, int], Position] = {}
    for where in sorted(truth.sell_outs):
        sku, ts, *_ = truth.sell_outs[where]
        want_outs.setdefault((sku, ts), where)
    said_outs = {(key[1], key[2]) for key in newest if key[0] == "sold_out"}
    for sku, ts in sorted(set(want_outs) - said_outs):
        verdict.add("sell_outs", f"{sku} at {ts} missing (orders {at(want_outs[(sku, ts)])})")
    for sku, ts in sorted(said_outs - set(want_outs)):
        verdict.add("sell_outs", f"{sku} at {ts} not in the truth")
    for (sku, ts), where in want_outs.items():
        first = first_at(("sold_out", sku, ts), True)
        ev = events.get(where)
        if first is not None and ev is not None and ev.emit_ns > 0:
            verdict.latencies_ms.append(first - ev.emit_ns / 1e6)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err.get("loc", ())) or "value"
    return f"{where}: {err.get('msg', 'invalid')}"
