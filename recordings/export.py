"""`flashsale export`: a recorded run as typed tables for analysis (docs/research.md).

The export folder holds:

    events.parquet     one row per event on `orders` (a packed message gives one row per row),
                       typed (`EVENT_COLUMNS`), with the decision on it joined: the workers'
                       own (`order-decisions`, `orders-dlq`, `orders-late`, `inventory-events`
                       of the run), or, for a run recorded without those topics, the truth
                       recomputed from `orders` (`verify.truth`)
    series/*.csv       the per-second series of each plot of `flashsale report`
                       (`recordings.series`)
    export.json        what was exported from which run, row counts, where the decisions come
                       from, and the run's offline verdict

The folder is written beside its target and renamed into place when complete, so an
interrupted export leaves nothing that looks like an export. An earlier export is replaced
only when asked (`force`), and a folder holding anything else is never written into.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

import orjson

from flashsale.events import MalformedEvent, decode_event, decode_packed, packed_count
from recordings.format import MANIFEST, RecordedMessage, RecordedRun, RunDirError
from verify.records import Position, Record, decision_docs, position_of, source_offsets
from verify.truth import compute_truth, events_of

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DEAD_LETTER",
    "EVENTS_FILE",
    "EVENT_COLUMNS",
    "EXPORT_FORMAT",
    "EXPORT_MANIFEST",
    "SERIES_DIR",
    "ExportError",
    "ExportReport",
    "check_out",
    "events_schema",
    "export_run",
]

EXPORT_FORMAT: Final = "flashsale-export"
EXPORT_VERSION: Final = 1
EVENTS_FILE: Final = "events.parquet"
SERIES_DIR: Final = "series"
EXPORT_MANIFEST: Final = "export.json"
#: The outcome of an event the workers sent to the dead-letter topic (verify's word for it).
DEAD_LETTER: Final = "dlq"
#: Rows of events.parquet held in memory before they are written as one row group.
ROW_GROUP_ROWS: Final = 100_000
#: Messages of `orders` between two progress reports.
PROGRESS_EVERY: Final = 5_000
#: The topics whose records are the workers' decisions on each event.
WORKER_ROLES: Final = ("decisions", "dlq", "late", "inventory")
#: The topics the series need (those of `flashsale report`).
SERIES_ROLES: Final = ("orders", "decisions", "dlq", "inventory", "states")


class Column(NamedTuple):
    """One column of events.parquet: its name, its type (`_TYPES`) and what it holds."""

    name: str
    kind: str
    what: str


#: The columns of events.parquet, in order (docs/research.md shows the same table).
EVENT_COLUMNS: Final = (
    Column("partition", "int32", "partition of the message on `orders`"),
    Column("offset", "int64", "offset of the message on `orders`"),
    Column("index", "int32", "row within a packed message; null for a message of one event"),
    Column("broker_time", "ts_ms", "the message's broker timestamp"),
    Column("event_type", "string", "created, paid, cancelled, refunded or restock"),
    Column("order_id", "string", "the order"),
    Column("line", "int32", "the line within its order, 0..99"),
    Column("sku", "string", "the SKU (the message key)"),
    Column("merchant", "string", "who sells it"),
    Column("country", "string", "country of origin of the SKU"),
    Column("category", "string", "product category"),
    Column("province", "string", "the buyer's province (empty for a restock)"),
    Column("channel", "string", "app or web channel (empty for a restock)"),
    Column("payment", "string", "payment method (empty for a restock)"),
    Column("quantity", "int32", "units"),
    Column("unit_price_cents", "int64", "euro cents per unit"),
    Column("amount_cents", "int64", "quantity × unit price, euro cents, as the event says"),
    Column("event_time", "ts_ms", "event time on the scenario clock"),
    Column("emit_time", "ts_us", "when the producer sent it (null when not stamped)"),
    Column("dead_letter_reason", "string", "why the event breaks the schema; null when valid"),
    Column("outcome", "string", "the decision: accepted, ..., restocked, or dlq"),
    Column("amount_decided_cents", "int64", "the decision's amount, euro cents"),
    Column("processed_time", "ts_us", "when a worker decided it (null from the truth)"),
    Column("latency_ms", "float64", "processed − emitted, ms (verify's end-to-end latency)"),
    Column("late", "bool", "later than the window grace (sent to orders-late)"),
    Column("sold_out", "bool", "this line took its SKU's last unit"),
)
_NAMES: Final = tuple(c.name for c in EVENT_COLUMNS)
#: The event's own columns of a row whose event breaks the schema (event_type..emit_time).
_NO_EVENT: Final = (None,) * (_NAMES.index("dead_letter_reason") - _NAMES.index("event_type"))


def _arrow(kind: str) -> pa.DataType:
    import pyarrow as pa

    if kind == "ts_ms":
        return pa.timestamp("ms", tz="UTC")
    if kind == "ts_us":
        # Not ns: DuckDB reads microseconds as TIMESTAMPTZ, which its time functions all take.
        return pa.timestamp("us", tz="UTC")
    return pa.type_for_alias(kind)


def events_schema() -> pa.Schema:
    """The Arrow schema of events.parquet."""
    import pyarrow as pa

    return pa.schema([(c.name, _arrow(c.kind)) for c in EVENT_COLUMNS])


class ExportError(Exception):
    """An export that cannot be written: the message says why, in one line."""


@dataclass
class ExportReport:
    """What one export wrote."""

    out: Path
    rows: int = 0
    messages: int = 0
    packed_messages: int = 0
    dead_letters: int = 0
    #: "workers" (the run's own decisions) or "truth" (recomputed from `orders`).
    decisions_from: str = "workers"
    series: list[str] = field(default_factory=list)
    #: Why no series were written (the run lacks a topic the report needs), or None.
    series_skipped: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


#: `progress(stage, done, total)`: how far a stage of the export is.
Progress = Callable[[str, int, int], None]


def _files_of_an_export(out: Path) -> list[str]:
    """What `out` holds that an export does not write (empty: it is an export's folder)."""
    foreign = []
    for entry in sorted(out.iterdir()):
        if entry.name in (EXPORT_MANIFEST, EVENTS_FILE) and entry.is_file():
            continue
        if entry.name == SERIES_DIR and entry.is_dir():
            foreign += [
                f"{SERIES_DIR}/{f.name}"
                for f in sorted(entry.iterdir())
                if not (f.is_file() and f.suffix == ".csv")
            ]
            continue
        foreign.append(entry.name)
    return foreign


def check_out(out: Path, force: bool) -> None:
    """Refuse an export folder that cannot be written: a file, a folder holding anything but
    an earlier export, or an earlier export without `force` (`ExportError`, one line)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if (out / MANIFEST).exists():
        raise ExportError(f"--out {out} is a run directory: export into another folder")
    try:
        doc = orjson.loads((out / EXPORT_MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ExportError(
            f"--out {out} is not empty and holds no export: choose a new or empty folder"
        )
    foreign = _files_of_an_export(out)
    if foreign:
        raise ExportError(
            f"--out {out} holds an export and {', '.join(foreign[:3])}, which an export does "
            "not write: choose another folder"
        )
    if not force:
        raise ExportError(f"--out {out} holds an export already: pass --force to replace it")


class _Joined(NamedTuple):
    """The decision on every event, by its position on `orders`."""

    #: position -> (outcome, amount in cents, processed_ns: None for the truth)
    decided: dict[Position, tuple[str, int, int | None]]
    dead: set[Position]
    late: set[Position]
    sold_out: set[Position]
    source: str


def _records(run: RecordedRun, role: str) -> Mapping[int, Sequence[RecordedMessage]]:
    return run.topic(run.role(role) or "")


def _as_records(
    messages: Mapping[int, Sequence[RecordedMessage]],
) -> Mapping[int, Sequence[Record]]:
    # A RecordedMessage is a Record; mypy cannot see it through the protocol's settable
    # `headers: Sequence[...]` (a list here).
    return cast("Mapping[int, Sequence[Record]]", messages)


def _workers_decisions(run: RecordedRun, progress: Progress) -> _Joined:
    """The decisions the workers recorded; the first of each position wins, as in verify
    (a re-delivered message repeats its decision, and verify checks that repeats agree)."""
    decided: dict[Position, tuple[str, int, int | None]] = {}
    records = _records(run, "decisions")
    total = sum(map(len, records.values()))
    done = 0
    for part in sorted(records):
        for rec in records[part]:
            for doc in decision_docs(orjson.loads(rec.value or b"{}")):
                where = position_of(doc)
                if where not in decided:
                    decided[where] = (doc["outcome"], int(doc["amount_cents"]), doc["processed_ns"])
            done += 1
            if done % PROGRESS_EVERY == 0:
                progress("reading decisions", done, total)
    progress("reading decisions", done, total)
    sold_out = set()
    for sold in _records(run, "inventory").values():
        for rec in sold:
            doc = orjson.loads(rec.value or b"{}")
            if doc.get("type") == "sold_out":
                sold_out.add(position_of(doc))
    return _Joined(
        decided,
        source_offsets(_as_records(_records(run, "dlq"))),
        source_offsets(_as_records(_records(run, "late"))),
        sold_out,
        "workers",
    )


def _recomputed(run: RecordedRun, orders: Mapping[int, Sequence[RecordedMessage]]) -> _Joined:
    """The truth recomputed from `orders` with the settings the workers ran with."""
    settings = run.manifest.get("settings", {})
    grace_ms = round(float(settings.get("window_grace_s", 2.0)) * 1000)
    truth = compute_truth(
        _as_records(orders),
        int(settings.get("dedupe_window", 5000)),
        dict.fromkeys(orders, grace_ms),
    )
    decided: dict[Position, tuple[str, int, int | None]] = {
        where: (outcome, truth.amounts.get(where, 0), None)
        for where, outcome in truth.outcomes.items()
        if outcome != DEAD_LETTER
    }
    dead = {where for where, outcome in truth.outcomes.items() if outcome == DEAD_LETTER}
    return _Joined(decided, dead, set(truth.late_at), set(truth.sell_outs), "truth")


def _reason(rec: RecordedMessage, where: Position) -> str:
    """Why the event at `where` breaks the schema (its dead letter's `flashsale.reason`)."""
    try:
        if packed_count(rec.headers) is None:
            decode_event(rec.value)
        else:
            bad = decode_packed(rec.value).bad
            if len(where) == 3 and where[2] in bad:
                return bad[where[2]].reason
    except MalformedEvent as exc:
        return exc.reason
    return "unknown"


def event_rows(
    orders: Mapping[int, Sequence[RecordedMessage]],
    joined: _Joined,
    progress: Progress | None = None,
) -> Iterator[tuple[Any, ...]]:
    """One tuple per event of `orders` (the values of `EVENT_COLUMNS`), in partition and
    offset order, a packed message's rows in their order."""
    total = sum(map(len, orders.values()))
    done = 0
    decided, dead, late, sold_out = joined.decided, joined.dead, joined.late, joined.sold_out
    no_decision = (None, None, None)
    for partition in sorted(orders):
        for rec in orders[partition]:
            done += 1
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress("decoding orders", done, total)
            # verify's decoding: a packed message gives its rows, a bad row or message None.
            for where, ev, _ in events_of(partition, _as_records({partition: [rec]})[partition]):
                index = where[2] if len(where) == 3 else None
                if ev is None:
                    dlq = (DEAD_LETTER, 0, None) if where in dead else decided.get(where)
                    yield (
                        partition,
                        rec.offset,
                        index,
                        rec.timestamp_ms,
                        *_NO_EVENT,
                        _reason(rec, where),
                        *(dlq or no_decision),
                        None,
                        where in late,
                        False,
                    )
                    continue
                outcome, amount, processed_ns = decided.get(where) or no_decision
                emit_ns = ev.emit_ns or None
                latency = (
                    (processed_ns - emit_ns) / 1e6
                    if processed_ns is not None and emit_ns is not None
                    else None
                )
                yield (
                    partition,
                    rec.offset,
                    index,
                    rec.timestamp_ms,
                    ev.type,
                    ev.order_id,
                    ev.line,
                    ev.sku,
                    ev.merchant,
                    ev.country,
                    ev.category,
                    ev.province,
                    ev.channel,
                    ev.payment,
                    ev.quantity,
                    ev.unit_price_cents,
                    ev.quantity * ev.unit_price_cents,
                    ev.event_ts_ms,
                    None if emit_ns is None else emit_ns // 1000,
                    None,
                    outcome,
                    amount,
                    None if processed_ns is None else processed_ns // 1000,
                    latency,
                    where in late,
                    where in sold_out,
                )
    if progress is not None:
        progress("decoding orders", done, total)


def _write_events(path: Path, rows: Iterator[tuple[Any, ...]], report: ExportReport) -> None:
    """Write `rows` to `path` as Parquet (zstd), a row group per `ROW_GROUP_ROWS` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = events_schema()
    width = len(EVENT_COLUMNS)
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        columns: list[list[Any]] = [[] for _ in range(width)]

        def flush() -> None:
            arrays = [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            for col in columns:
                col.clear()

        dead_at = _NAMES.index("dead_letter_reason")
        for row in rows:
            for col, value in zip(columns, row, strict=True):
                col.append(value)
            report.rows += 1
            if row[dead_at] is not None:
                report.dead_letters += 1
            if len(columns[0]) >= ROW_GROUP_ROWS:
                flush()
        # Also when no row came: the file then has its schema and no rows.
        flush()


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def export_run(
    run: RecordedRun, out: Path, force: bool = False, progress: Progress | None = None
) -> ExportReport:
    """Export `run` into the folder `out` (created; see `check_out` for what it may hold)."""
    from flashsale import __version__
    from recordings.series import write_series

    tick = progress or (lambda *_: None)
    check_out(out, force)
    if not run.manifest.get("complete"):
        raise RunDirError(
            f"{run.path / MANIFEST}: the capture is incomplete (interrupted): run "
            "`flashsale record` on it again to finish it"
        )
    orders = _records(run, "orders")
    if run.role("orders") is None or not any(orders.values()):
        raise RunDirError(f"{run.path}: the run has no messages on topic orders to export")
    report = ExportReport(out=out)
    out = out.resolve()  # `.` has no name to put a folder beside
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        missing = [r for r in WORKER_ROLES if run.role(r) is None]
        joined = _recomputed(run, orders) if missing else _workers_decisions(run, tick)
        report.decisions_from = joined.source
        report.messages = sum(map(len, orders.values()))
        report.packed_messages = sum(
            packed_count(r.headers) is not None for part in orders.values() for r in part
        )
        _write_events(work / EVENTS_FILE, event_rows(orders, joined, tick), report)
        figures = None
        lacking = [r for r in SERIES_ROLES if run.role(r) is None]
        if lacking:
            report.series_skipped = (
                f"the run has no {', '.join(lacking)} topic(s), which the report's series need"
            )
        else:
            from recordings.figures import figures_of

            steps = 3
            tick("computing the series", 0, steps)
            done = [0]

            def step(_: str) -> None:
                done[0] += 1
                tick("computing the series", done[0], steps)

            figures = figures_of(run, step=step)
            report.series = [
                f"{SERIES_DIR}/{p.name}" for p in write_series(figures, work / SERIES_DIR)
            ]
            tick("computing the series", steps, steps)
        report.manifest = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_VERSION,
            "flashsale_version": __version__,
            "exported_at": _now_iso(),
            "run_dir": str(run.path.resolve()),
            "scenario": run.manifest.get("scenario"),
            "seed": run.manifest.get("seed"),
            "events": {
                "file": EVENTS_FILE,
                "rows": report.rows,
                "messages": report.messages,
                "packed_messages": report.packed_messages,
                "dead_letters": report.dead_letters,
            },
            "decisions_from": report.decisions_from,
            "first_order_broker_ms": min(r.timestamp_ms for part in orders.values() for r in part),
            "series": report.series,
            "series_skipped": report.series_skipped,
            "run_summary": None if figures is None else figures.summary["run"],
            "report": None if figures is None else figures.summary["report"],
        }
        (work / EXPORT_MANIFEST).write_bytes(
            orjson.dumps(report.manifest, option=orjson.OPT_INDENT_2)
        )
        _put_in_place(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _put_in_place(work: Path, out: Path) -> None:
    """Rename the finished export `work` to `out` (an empty folder, or an earlier export
    that `check_out` allowed to be replaced)."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    moved = False
    if out.is_dir():
        if any(out.iterdir()):
            os.replace(out, old)
            moved = True
        else:
            out.rmdir()
    try:
        os.replace(work, out)
    except BaseException:
        if moved:  # the earlier export goes back where it was
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
