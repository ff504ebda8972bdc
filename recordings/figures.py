"""The figures of a recorded run's report: what `flashsale report` and `flashsale compare`
plot (`recordings.plots`) and tabulate, with `verify.reconcile` on the recorded topics.

Every time axis counts wall seconds from the first message on `orders`, by broker timestamp;
the scenario's curve is drawn on the same axis (wall second `w` of the producer is scenario
second `w * compression`).

The figures:
- orders per second: order baskets produced (the first `created` line 0 of each order id on
  `orders`) and processed (decisions of those lines that are not duplicates), beside the
  curve's emitted rate;
- cumulative GMV: the amounts of paid decisions;
- GMV by country and by category: the workers' final states (verify checks them against the
  truth recomputed from `orders`);
- sell-outs: each SKU's first sell-out on `inventory-events` (checked by verify too), in
  scenario seconds after its restock;
- end-to-end latency p50/p90/p99 per time bucket: `processed_ns - emit_ns` of each decision,
  as verify measures it, bucketed by the decision's broker timestamp;
- dead letters and late events per second, and in total.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from flashsale.events import MalformedEvent, decode_packed, packed_count
from flashsale.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from recordings.format import RecordedMessage, RecordedRun, RunDirError, read_faults
from recordings.offline import verify_recorded
from verify.records import decision_docs

__all__ = [
    "MAX_LATENCY_BUCKETS",
    "Difference",
    "LatencyBucket",
    "RunFigures",
    "cumulative_per_second",
    "differences",
    "figures_of",
    "latency_buckets",
    "per_second",
    "scenario_of",
]

#: The most latency buckets a run is cut into (longer runs get wider buckets).
MAX_LATENCY_BUCKETS: Final = 120


def per_second(ts_ms: Sequence[int] | npt.NDArray[np.int64], t0_ms: int, seconds: int) -> Any:
    """Counts per wall second [t0 + i s, t0 + (i + 1) s) for i in 0..seconds-1 (int array).

    Timestamps before `t0_ms` count in second 0, later ones in the last second.
    """
    return _bucketed(ts_ms, None, t0_ms, seconds)


def cumulative_per_second(
    ts_ms: Sequence[int] | npt.NDArray[np.int64],
    cents: Sequence[int] | npt.NDArray[np.int64],
    t0_ms: int,
    seconds: int,
) -> Any:
    """The running total of `cents` at the end of each wall second (int array)."""
    return np.cumsum(_bucketed(ts_ms, cents, t0_ms, seconds))


def _bucketed(
    ts_ms: Sequence[int] | npt.NDArray[np.int64],
    weights: Sequence[int] | npt.NDArray[np.int64] | None,
    t0_ms: int,
    seconds: int,
) -> Any:
    seconds = max(int(seconds), 1)
    ts = np.asarray(ts_ms, dtype=np.int64)
    idx = np.clip((ts - t0_ms) // 1000, 0, seconds - 1)
    if weights is None:
        return np.bincount(idx, minlength=seconds).astype(np.int64)
    w = np.asarray(weights, dtype=np.int64)
    out = np.zeros(seconds, dtype=np.int64)
    np.add.at(out, idx, w)  # exact integer cents (bincount would go through floats)
    return out


@dataclass(frozen=True)
class LatencyBucket:
    """End-to-end latency percentiles of the decisions in one time bucket."""

    start_s: float
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float


def latency_buckets(
    ts_ms: Sequence[int] | npt.NDArray[np.int64],
    latency_ms: Sequence[float] | npt.NDArray[np.float64],
    t0_ms: int,
    bucket_s: int,
) -> list[LatencyBucket]:
    """p50/p90/p99 of `latency_ms` per `bucket_s` seconds of `ts_ms` (empty buckets left out).

    Percentiles interpolate linearly between ranks, as verify's do.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    lat = np.asarray(latency_ms, dtype=np.float64)
    if not len(ts):
        return []
    which = np.maximum((ts - t0_ms) // (1000 * bucket_s), 0)
    order = np.argsort(which, kind="stable")
    which, lat = which[order], lat[order]
    starts = np.flatnonzero(np.r_[True, which[1:] != which[:-1]])
    out = []
    for begin, end in zip(starts, [*starts[1:], len(which)], strict=True):
        p50, p90, p99 = np.percentile(lat[begin:end], [50, 90, 99])
        out.append(
            LatencyBucket(
                start_s=float(which[begin] * bucket_s),
                count=int(end - begin),
                p50_ms=float(p50),
                p90_ms=float(p90),
                p99_ms=float(p99),
            )
        )
    return out


@dataclass(frozen=True)
class Difference:
    """One summary figure that differs between two runs."""

    name: str
    a: Any
    b: Any
    #: b - a, for numbers.
    diff: float | None
    #: (b - a) / |a|, for numbers with a != 0.
    relative: float | None


def _flat(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            out[f"{prefix}{key}"] = value
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Difference]:
    """The summary figures (nested keys flattened to `run.name`) whose values differ."""
    fa, fb = _flat(a), _flat(b)
    out = []
    for name in [*fa, *(k for k in fb if k not in fa)]:
        va, vb = fa.get(name), fb.get(name)
        if va == vb:
            continue
        diff: float | None = None
        rel: float | None = None
        if (
            isinstance(va, int | float)
            and isinstance(vb, int | float)
            and _number(va)
            and _number(vb)
        ):
            diff = vb - va
            rel = diff / abs(va) if va else None
        out.append(Difference(name, va, vb, diff, rel))
    return out


@dataclass
class RunFigures:
    """Everything a report plots and summarises of one recorded run."""

    label: str
    scenario: Scenario | None
    #: Length of the per-second series: from the first message on `orders` to the last of
    #: any topic plotted.
    seconds: int
    #: Wall seconds from the first to the last message on `orders` (the curve is drawn over
    #: them).
    produce_span_s: float
    orders_per_s: Any
    processed_per_s: Any
    gmv_cumulative_cents: Any
    dlq_per_s: Any
    late_per_s: Any
    latency: list[LatencyBucket]
    latency_bucket_s: int
    gmv_by: dict[str, dict[str, int]]
    #: Each sold-out SKU's first sell-out: (SKU, scenario seconds after its restock).
    sell_outs: list[tuple[str, float]]
    summary: dict[str, Any] = field(default_factory=dict)
    verify_differences: list[str] = field(default_factory=list)
    #: The run's faults on the same axis: (start, end or None, label), wall seconds after
    #: the first message on `orders` (`faults.json` of the run directory).
    faults: list[tuple[float, float | None, str]] = field(default_factory=list)


def scenario_of(run: RecordedRun) -> Scenario | None:
    """The run's scenario, when the manifest holds its definition or names a preset."""
    manifest = run.manifest
    seed = manifest.get("seed")
    for key in ("scenario_spec", "scenario"):
        value = manifest.get(key)
        try:
            if isinstance(value, Mapping):
                found = parse_scenario(value)
            elif isinstance(value, str) and key == "scenario":
                found = load_scenario(value)  # a preset by name; a test scenario is not one
            else:
                continue
        except ScenarioError:
            continue
        return found.with_seed(seed if isinstance(seed, int) else None)
    return None


def _label(run: RecordedRun, scenario: Scenario | None) -> str:
    name = run.manifest.get("scenario") if scenario is None else scenario.name
    if isinstance(name, Mapping):
        name = name.get("name")
    seed = run.manifest.get("seed") if scenario is None else scenario.seed
    return f"{Path(run.path).name} ({name or 'unknown scenario'}, seed {seed})"


def _timestamps(records: Mapping[int, Sequence[RecordedMessage]]) -> list[int]:
    return [r.timestamp_ms for part in sorted(records) for r in records[part]]


def _order_baskets(records: Mapping[int, Sequence[RecordedMessage]]) -> Iterator[tuple[int, str]]:
    """(broker timestamp, event type) of each event on `orders` that counts toward a rate:
    `created` line 0 of an order id seen for the first time ("order"), any other valid event
    but restocks ("event")."""
    seen: set[str] = set()
    for part in sorted(records):
        for rec in records[part]:
            ts = rec.timestamp_ms
            if rec.headers and packed_count(rec.headers) is not None:
                try:
                    batch = decode_packed(rec.value)
                except MalformedEvent:
                    continue
                cols = batch.columns
                for i in range(batch.n):
                    if i in batch.bad or cols["type"][i] == "restock":
                        continue
                    if cols["type"][i] == "created" and cols["line"][i] == 0:
                        oid = cols["order_id"][i]
                        if oid not in seen:
                            seen.add(oid)
                            yield ts, "order"
                            continue
                    yield ts, "event"
                continue
            # Only the type, line and order id matter here: verify judges the schema.
            try:
                doc = orjson.loads(rec.value or b"")
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict) or doc.get("type") in (None, "restock"):
                continue
            oid = str(doc.get("order_id"))
            if doc["type"] == "created" and doc.get("line") == 0 and oid not in seen:
                seen.add(oid)
                yield ts, "order"
            else:
                yield ts, "event"


def _decisions(
    records: Mapping[int, Sequence[RecordedMessage]],
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(broker timestamp, decision) of the first decision of each source position."""
    seen: set[tuple[int, ...]] = set()
    for part in sorted(records):
        for rec in records[part]:
            for doc in decision_docs(orjson.loads(rec.value or b"{}")):
                where = (int(doc["partition"]), int(doc["offset"]), int(doc.get("index", -1)))
                if where in seen:
                    continue  # a re-delivered decision (verify checks that it agrees)
                seen.add(where)
                yield rec.timestamp_ms, doc


def figures_of(
    run: RecordedRun, label: str | None = None, step: Callable[[str], None] | None = None
) -> RunFigures:
    """Reconcile `run` and compute every series and figure a report shows."""
    tick = step or (lambda _: None)
    orders_name = run.role("orders")
    if orders_name is None or not any(run.topic(orders_name).values()):
        raise RunDirError(f"{run.path}: the run has no messages on topic orders to report on")

    def topic(role: str) -> Mapping[int, Sequence[RecordedMessage]]:
        return run.topic(run.role(role) or "")

    orders, decisions = topic("orders"), topic("decisions")
    tick("reconciling with the truth recomputed from orders")
    # The same verdict as `flashsale verify RUN_DIR` (it refuses an incomplete capture).
    result = verify_recorded(run)
    # GMV by country and category from the workers' final states, and sell-outs from
    # inventory-events: verify has just checked both against the truth.
    latest = {r.key: r.value for part in topic("states").values() for r in part if r.value}
    gmv_by: dict[str, dict[str, int]] = {"country": {}, "category": {}}
    for state in map(orjson.loads, latest.values()):
        for dimension, by in gmv_by.items():
            for name, cents in state.get(f"gmv_by_{dimension}", {}).items():
                by[name] = by.get(name, 0) + int(cents)
    sold: set[tuple[str, int, float | None]] = set()
    for part in topic("inventory").values():
        for rec in part:
            doc = orjson.loads(rec.value or b"{}")
            if doc.get("type") == "sold_out":
                sold.add((doc["sku"], int(doc["event_ts_ms"]), doc.get("time_to_sell_out_s")))

    tick("computing rates, GMV and latency per second")
    order_ts = _timestamps(orders)
    t0 = min(order_ts)
    basket_ts: list[int] = []
    event_ts: list[int] = []
    for ts, kind in _order_baskets(orders):
        (basket_ts if kind == "order" else event_ts).append(ts)
    processed_ts: list[int] = []
    paid_ts: list[int] = []
    paid_cents: list[int] = []
    lat_ts: list[int] = []
    lat_ms: list[float] = []
    decided_ts: list[int] = []
    for ts, doc in _decisions(decisions):
        kind = doc.get("type", "created")
        if kind == "restock":
            continue
        decided_ts.append(ts)
        outcome = doc["outcome"]
        if kind == "created" and int(doc.get("line", 0)) == 0 and outcome != "duplicate":
            processed_ts.append(ts)
        if outcome == "paid":
            paid_ts.append(ts)
            paid_cents.append(int(doc["amount_cents"]))
        if doc.get("emit_ns", 0) > 0:
            lat_ts.append(ts)
            lat_ms.append((doc["processed_ns"] - doc["emit_ns"]) / 1e6)
    dlq_ts, late_ts = _timestamps(topic("dlq")), _timestamps(topic("late"))
    last = max([*order_ts, *decided_ts, *dlq_ts, *late_ts])
    seconds = (last - t0) // 1000 + 1
    produce_seconds = (max(order_ts) - t0) // 1000 + 1
    bucket_s = max(1, math.ceil(seconds / MAX_LATENCY_BUCKETS))

    orders_per_s = per_second(basket_ts, t0, seconds)
    processed_per_s = per_second(processed_ts, t0, seconds)
    events_per_s = per_second(basket_ts + event_ts, t0, seconds)
    decisions_per_s = per_second(decided_ts, t0, seconds)
    gmv = cumulative_per_second(paid_ts, paid_cents, t0, seconds)
    latency = latency_buckets(lat_ts, lat_ms, t0, bucket_s)

    first: dict[str, float] = {}
    for sku, _, took in sorted(sold, key=lambda s: (s[1], s[0])):
        if took is not None and sku not in first:
            first[sku] = float(took)
    sell_outs = sorted(first.items(), key=lambda s: (s[1], s[0]))

    scenario = scenario_of(run)
    expected_peak = None
    if scenario is not None:
        from flashsale.scenario.curves import Curve

        curve = Curve(scenario)
        span = (max(order_ts) - t0) / 1000
        steps = int(span * 10) + 1
        expected_peak = round(max(curve.wall_rate(span * k / steps) for k in range(steps + 1)), 1)
    lat_all = np.asarray(lat_ms, dtype=np.float64)
    p90 = round(float(np.percentile(lat_all, 90)), 2) if len(lat_all) else None
    times = [t for _, t in sell_outs]
    own = {
        "run_seconds": int(seconds),
        "produce_seconds": int(produce_seconds),
        "order_baskets_produced": len(basket_ts),
        "order_baskets_processed": len(processed_ts),
        "peak_orders_produced_per_s": int(orders_per_s.max()),
        "peak_orders_processed_per_s": int(processed_per_s.max()),
        "peak_orders_expected_per_s": expected_peak,
        "peak_events_produced_per_s": int(events_per_s.max()),
        "peak_decisions_per_s": int(decisions_per_s.max()),
        "gmv_cents_paid_decisions": int(gmv[-1]),
        # p50 and p99 are the run's own (verify measures them the same way).
        "e2e_latency_p90_ms": p90,
        "e2e_latency_max_ms": round(float(lat_all.max()), 2) if len(lat_all) else None,
        "latency_bucket_s": bucket_s,
        "skus_sold_out": len(sell_outs),
        "sell_outs": len(sold),
        "first_sell_out_s": times[0] if times else None,
        "median_time_to_sell_out_s": float(np.median(times)) if times else None,
        "dlq_total": len(dlq_ts),
        "late_total": len(late_ts),
        "peak_dlq_per_s": int(per_second(dlq_ts, t0, seconds).max()) if dlq_ts else 0,
        "peak_late_per_s": int(per_second(late_ts, t0, seconds).max()) if late_ts else 0,
    }
    for dimension in ("country", "category"):
        for name, cents in sorted(gmv_by[dimension].items()):
            own[f"gmv_cents_by_{dimension}.{name}"] = cents
    # Flat keys with dots read better nested in the JSON.
    report: dict[str, Any] = {}
    for key, value in own.items():
        head, _, rest = key.partition(".")
        if rest:
            report.setdefault(head, {})[rest] = value
        else:
            report[key] = value
    return RunFigures(
        label=label or _label(run, scenario),
        scenario=scenario,
        seconds=int(seconds),
        produce_span_s=(max(order_ts) - t0) / 1000,
        orders_per_s=orders_per_s,
        processed_per_s=processed_per_s,
        gmv_cumulative_cents=gmv,
        dlq_per_s=per_second(dlq_ts, t0, seconds) if dlq_ts else np.zeros(seconds, np.int64),
        late_per_s=per_second(late_ts, t0, seconds) if late_ts else np.zeros(seconds, np.int64),
        latency=latency,
        latency_bucket_s=bucket_s,
        gmv_by=gmv_by,
        sell_outs=sell_outs,
        summary={"run": result.summary, "report": report},
        verify_differences=list(result.differences),
        faults=faults_on_axis(read_faults(run.path), t0),
    )


def faults_on_axis(
    log: Sequence[Mapping[str, Any]], t0_ms: int
) -> list[tuple[float, float | None, str]]:
    """A run's fault log on its plots' axis: (start, end or None, label), wall seconds after
    `t0_ms`, the first message on `orders`; entries without a start are left out."""
    out: list[tuple[float, float | None, str]] = []
    for entry in log:
        start = entry.get("started_unix_s")
        if not isinstance(start, int | float):
            continue
        end = entry.get("ended_unix_s")
        label = f"{entry.get('action', '?')} {entry.get('resolved') or entry.get('target', '?')}"
        out.append(
            (
                round(start - t0_ms / 1000, 3),
                round(end - t0_ms / 1000, 3) if isinstance(end, int | float) else None,
                label,
            )
        )
    return out
