"""Reports on recorded runs: `flashsale report RUN_DIR` and `flashsale compare RUN_A RUN_B`.

A report is one self-contained HTML page (its PNGs embedded as data URIs and also written
beside it) and a JSON summary: `verify.reconcile` on the recorded topics, plus the report's
own figures. Every time axis counts wall seconds from the first message on `orders`, by
broker timestamp; the scenario's curve is drawn on the same axis (wall second `w` of the
producer is scenario second `w * compression`).

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

import base64
import html
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flashsale.events import MalformedEvent, decode_packed, packed_count
from flashsale.runs import RecordedMessage, RecordedRun, RunDirError, load_run, verify_recorded
from flashsale.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from flashsale.verify import decision_docs

__all__ = [
    "Difference",
    "LatencyBucket",
    "RunFigures",
    "cumulative_per_second",
    "differences",
    "figures_of",
    "latency_buckets",
    "per_second",
    "run_compare",
    "run_report",
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

#: The most latency buckets a run is cut into (longer runs get wider buckets).
MAX_LATENCY_BUCKETS: Final = 120
#: The plots of a page, in order: (file suffix, title, plot function name in flashsale.plots).
PLOTS: Final = (
    ("rates", "Orders per second: the scenario's curve, produced and processed", "plot_rates"),
    ("gmv", "Cumulative GMV (paid decisions)", "plot_gmv"),
    ("gmv-by", "GMV by country and by category", "plot_gmv_by"),
    ("sell-outs", "Sell-out timeline of flash-sale SKUs", "plot_sell_outs"),
    ("latency", "End-to-end latency percentiles over time", "plot_latency"),
    ("dlq-late", "Dead letters and late events", "plot_dead_and_late"),
)

# --- computations ----------------------------------------------------------------------------


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


# --- a run's figures ------------------------------------------------------------------------


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
        from producers.curves import Curve

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
    )


# --- pages -----------------------------------------------------------------------------------

_CSS: Final = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;
background:#f6f6f4}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.15em;margin:28px 0 8px}
.sub{color:#666;margin:0 0 16px}
.ok{color:#1e7d32;font-weight:600}.bad{color:#b71c1c;font-weight:600}
figure{background:#fff;border:1px solid #ddd;border-radius:6px;margin:0 0 18px;padding:10px}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#555;font-size:.9em;margin-top:6px}
table{border-collapse:collapse;background:#fff;font-size:.92em}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;overflow:auto;
font-size:.85em}
"""


def _page(title: str, subtitle: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        # No favicon request: the page must not reach for anything.
        '<link rel=icon href="data:,">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body><main>"
        f"<h1>{html.escape(title)}</h1><p class=sub>{html.escape(subtitle)}</p>\n"
        f"{body}</main></body></html>\n"
    )


def _figure(png: Path, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)} ({html.escape(png.name)})</figcaption></figure>\n"
    )


def _verdict(fig: RunFigures) -> str:
    if not fig.verify_differences:
        return f"<p class=ok>{html.escape(fig.label)}: reconciled with the truth</p>"
    items = "".join(f"<li>{html.escape(d)}</li>" for d in fig.verify_differences)
    return f"<p class=bad>{html.escape(fig.label)}: NOT reconciled</p><ul>{items}</ul>"


def _plots(runs: Sequence[RunFigures], out: Path, tick: Callable[[str], None]) -> list[Path]:
    from flashsale import plots

    written = []
    for suffix, title, function in PLOTS:
        tick(f"plotting {title.lower()}")
        path = out.with_name(f"{out.stem}-{suffix}.png")
        getattr(plots, function)(runs, path)
        written.append(path)
    return written


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "—"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _relative(d: Difference) -> str:
    return "—" if d.relative is None else f"{d.relative:+.2%}"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # Piped output gets the result lines only.
        disable=not console.is_terminal,
    )


def _output(out: Path, default_name: str) -> Path:
    """Where a page goes: `out` (inside it when it is a folder); its folder is created."""
    if out.is_dir():
        out = out / default_name
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _UsageError(f"cannot create the folder of --out {out}: {exc.strerror}") from None
    return out


class _UsageError(Exception):
    """Bad input: one line on stderr, exit 2."""


def _fail(message: str) -> int:
    err_console.print(f"flashsale: error: {message}", markup=False, soft_wrap=True)
    return 2


def run_report(run_dir: Path, out: Path | None) -> int:
    """`flashsale report`: the page, its PNGs and summary.json; 0 when written, 2 on bad input."""
    try:
        page = _output(out if out is not None else run_dir / "report.html", "report.html")
        with _progress() as progress:
            task = progress.add_task(f"report {run_dir.name}", total=3 + len(PLOTS), step="")

            def tick(what: str) -> None:
                progress.update(task, advance=1, step=what)

            progress.update(task, step=f"reading {run_dir}")
            run = load_run(run_dir)
            fig = figures_of(run, step=tick)
            pngs = _plots([fig], page, tick)
            summary_path = page.with_name("summary.json")
            summary = {**fig.summary, "verify_differences": fig.verify_differences}
            summary_path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
            body = [_verdict(fig)]
            body += [_figure(p, title) for p, (_, title, _) in zip(pngs, PLOTS, strict=True)]
            body.append(_sell_out_table(fig))
            body.append(
                f"<h2>Summary ({html.escape(summary_path.name)})</h2><pre>"
                f"{html.escape(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())}</pre>"
            )
            page.write_text(
                _page(f"flashsale report: {run_dir.name}", _subtitle(fig), "".join(body)),
                encoding="utf-8",
            )
            progress.update(task, advance=1, step="written")
    except RunDirError as exc:
        return _fail(str(exc))
    except (_UsageError, OSError) as exc:
        return _fail(str(exc))
    console.print(f"report: {page} ({len(pngs)} PNGs and {summary_path.name} beside it)")
    return 0


def _subtitle(fig: RunFigures) -> str:
    run = fig.summary["run"]
    return (
        f"{fig.label}: {run['orders_produced']:,} order lines, "
        f"GMV €{run['gmv_cents_expected'] / 100:,.2f}, {fig.seconds} s from the first order "
        f"to the last message"
    )


def _sell_out_table(fig: RunFigures, limit: int = 20) -> str:
    if not fig.sell_outs:
        return "<h2>Sell-outs</h2><p>No SKU sold out.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(sku)}</td><td class=n>{t:,.1f}</td></tr>"
        for sku, t in fig.sell_outs[:limit]
    )
    more = len(fig.sell_outs) - limit
    tail = f"<p>… and {more} more.</p>" if more > 0 else ""
    return (
        f"<h2>Sell-outs ({len(fig.sell_outs)} SKUs, first {min(limit, len(fig.sell_outs))})</h2>"
        "<table><tr><th>SKU</th><th>scenario seconds after restock</th></tr>"
        f"{rows}</table>{tail}"
    )


def run_compare(run_a: Path, run_b: Path, out: Path) -> int:
    """`flashsale compare`: both runs overlaid, and the differences of their summaries."""
    try:
        page = _output(out, "compare.html")
        with _progress() as progress:
            task = progress.add_task("compare", total=5 + len(PLOTS), step="")

            def tick(what: str) -> None:
                progress.update(task, advance=1, step=what)

            runs = []
            for letter, path in (("A", run_a), ("B", run_b)):
                progress.update(task, step=f"reading {path}")
                run = load_run(path)
                fig = figures_of(run, step=tick)
                fig.label = f"{letter}: {fig.label}"
                runs.append(fig)
            diffs = differences(runs[0].summary, runs[1].summary)
            pngs = _plots(runs, page, tick)
            table = _difference_html(diffs, runs)
            body = [table, *(_verdict(f) for f in runs)]
            body += [_figure(p, title) for p, (_, title, _) in zip(pngs, PLOTS, strict=True)]
            for fig in runs:
                body.append(
                    f"<h2>Summary of {html.escape(fig.label)}</h2><pre>"
                    + html.escape(orjson.dumps(fig.summary, option=orjson.OPT_INDENT_2).decode())
                    + "</pre>"
                )
            page.write_text(
                _page(
                    f"flashsale compare: {run_a.name} vs {run_b.name}",
                    f"{runs[0].label} against {runs[1].label}",
                    "".join(body),
                ),
                encoding="utf-8",
            )
            page.with_name(f"{page.stem}.json").write_bytes(
                orjson.dumps(
                    {
                        "a": str(run_a),
                        "b": str(run_b),
                        "differences": [d.__dict__ for d in diffs],
                    },
                    option=orjson.OPT_INDENT_2,
                )
            )
            progress.update(task, advance=1, step="written")
    except RunDirError as exc:
        return _fail(str(exc))
    except (_UsageError, OSError) as exc:
        return _fail(str(exc))
    _print_differences(diffs, runs)
    console.print(f"compare: {page} ({len(pngs)} PNGs and {page.stem}.json beside it)")
    return 0


def _difference_html(diffs: Sequence[Difference], runs: Sequence[RunFigures]) -> str:
    head = "<h2>Differences of the summary figures</h2>"
    if not diffs:
        return head + "<p class=ok>no differences</p>"
    rows = "".join(
        f"<tr><td>{html.escape(d.name)}</td><td class=n>{html.escape(_shown(d.a))}</td>"
        f"<td class=n>{html.escape(_shown(d.b))}</td>"
        f"<td class=n>{'—' if d.diff is None else html.escape(_shown(d.diff))}</td>"
        f"<td class=n>{_relative(d)}</td></tr>"
        for d in diffs
    )
    return (
        f"{head}<p>{html.escape(runs[0].label)}; {html.escape(runs[1].label)}</p>"
        "<table><tr><th>figure</th><th>A</th><th>B</th><th>B − A</th><th>relative</th></tr>"
        f"{rows}</table>"
    )


def _print_differences(diffs: Sequence[Difference], runs: Sequence[RunFigures]) -> None:
    if not diffs:
        console.print(f"no differences between {runs[0].label} and {runs[1].label}")
        return
    table = Table(title="differences of the summary figures (B − A)", title_justify="left")
    table.add_column("figure")
    for name in ("A", "B", "B − A", "relative"):
        table.add_column(name, justify="right")
    for d in diffs:
        table.add_row(
            d.name,
            _shown(d.a),
            _shown(d.b),
            "—" if d.diff is None else _shown(d.diff),
            _relative(d),
        )
    console.print(table)
    console.print(f"{runs[0].label}\n{runs[1].label}")
