"""`flashsale export` on runs built by hand: packed messages expanded row by row, each event
typed and joined to its decision (the workers' own, or the truth recomputed), the series of
the report's plots, and where an export may be written."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flashsale.events import (
    PACKED_COLUMNS,
    PACKED_HEADER,
    OrderEvent,
    dictionary_coded,
    encode_event,
    encode_packed,
)
from recordings import export as export_module
from recordings.export import (
    EVENT_COLUMNS,
    EVENTS_FILE,
    EXPORT_MANIFEST,
    SERIES_DIR,
    ExportError,
    check_out,
    events_schema,
    export_run,
)
from recordings.format import RecordedMessage, RecordedRun, RunDirError
from recordings.report import PLOTS
from recordings.series import SERIES
from streams.outputs import DECISION_COLUMNS, decision_record, packed_decision_record
from tests.factories import make_order, make_restock, make_step
from tests.paths import ROOT
from tests.unit.recordings.test_figures import _run

T0 = 1_700_000_000_000  # broker time of the first message on orders, ms
PROCESSED_NS = (T0 + 50) * 1_000_000
IDENTITY = [("flashsale.scenario", b"test-small"), ("flashsale.seed", b"5")]


def _source(offset: int, index: int | None = None) -> list[tuple[str, bytes]]:
    """The headers naming a position on `orders` (dead letters, late events)."""
    where = [("flashsale.partition", b"0"), ("flashsale.offset", str(offset).encode())]
    return where + ([] if index is None else [("flashsale.index", str(index).encode())])


def _packed(events: list[dict[str, Any]]) -> bytes:
    """A dictionary-coded packed message of `events` (dicts of every event field but v)."""
    columns = {name: [ev[name] for ev in events] for name in PACKED_COLUMNS}
    return encode_packed(*dictionary_coded(columns))


def _row(ev: OrderEvent) -> dict[str, Any]:
    return {k: v for k, v in asdict(ev).items() if k in PACKED_COLUMNS}


def _msg(topic: str, offset: int, value: bytes, headers: Any = (), at: int = 0) -> RecordedMessage:
    return RecordedMessage(topic, 0, offset, b"k", value, list(headers), T0 + at)


def run_with_packed_rows(name: str = "packed") -> RecordedRun:
    """Two units of one SKU on partition 0, and what a worker decided:

    0  restock of 2 units
    1  o1 created                       accepted
    2  packed: o2 created               accepted, takes the last unit (sold out)
               a row with quantity 0    dead letter (out_of_range)
               o1 paid                  paid 1,000 cents
    3  not JSON                         dead letter (not_json)
    4  o3 created, 10 s behind          rejected (no stock), late
    """
    o1 = make_order(order_id="o1", quantity=1, unit_price_cents=1_000, emit_ns=T0 * 10**6)
    start = o1.event_ts_ms
    restock = make_restock(o1, 2, event_ts_ms=start - 1_000)
    o2 = replace(o1, order_id="o2", unit_price_cents=2_500, event_ts_ms=start + 500)
    bad = {**_row(replace(o2, order_id="o9")), "quantity": 0}
    paid = make_step(o1, "paid", event_ts_ms=start + 900, payment="card")
    o3 = replace(o1, order_id="o3", event_ts_ms=start - 10_000)
    packed_rows = [_row(o2), bad, _row(paid)]
    orders = [
        _msg("orders", 0, encode_event(restock), IDENTITY),
        _msg("orders", 1, encode_event(o1), at=100),
        _msg("orders", 2, _packed(packed_rows), [(PACKED_HEADER, b"3")], at=600),
        _msg("orders", 3, b"{not json", at=700),
        _msg("orders", 4, encode_event(o3), at=800),
    ]
    picked = {c: [packed_rows[i][c] for i in (0, 2)] for c in DECISION_COLUMNS}
    decisions = [
        decision_record(restock, "restocked", 0, 0, 0, PROCESSED_NS),
        decision_record(o1, "accepted", 1_000, 0, 1, PROCESSED_NS + 7_000_000),
        # Re-delivered after a crash: the first decision of a position counts.
        decision_record(o1, "accepted", 1_000, 0, 1, PROCESSED_NS + 9_000_000),
        packed_decision_record(
            0, 2, [0, 2], picked, ["accepted", "paid"], [2_500, 1_000], PROCESSED_NS
        ),
        decision_record(o3, "rejected_oversell", 0, 0, 4, PROCESSED_NS),
    ]
    sold_out = {
        "type": "sold_out",
        "sku": o1.sku,
        "partition": 0,
        "offset": 2,
        "index": 0,
        "event_ts_ms": o2.event_ts_ms,
        "time_to_sell_out_s": 1.5,
    }
    state = {
        "partition": 0,
        "window": 100,
        "gmv_by_country": {"FR": 1_000},
        "gmv_by_category": {"wine": 1_000},
    }
    topics = {
        "orders": orders,
        "order-decisions": [_msg("order-decisions", i, v) for i, v in enumerate(decisions)],
        "orders-dlq": [
            _msg("orders-dlq", 0, b"{}", _source(2, 1)),
            _msg("orders-dlq", 1, b"{not json", _source(3)),
        ],
        "orders-late": [_msg("orders-late", 0, encode_event(o3), _source(4))],
        "inventory-events": [_msg("inventory-events", 0, orjson.dumps(sold_out))],
        "states": [_msg("states", 0, orjson.dumps(state))],
    }
    roles = ("orders", "decisions", "dlq", "late", "inventory", "states")
    return RecordedRun(
        path=Path("/runs") / name,
        manifest={
            "scenario": "test-small",
            "seed": 5,
            "complete": True,
            "settings": {"dedupe_window": 100, "window_grace_s": 2.0},
            "roles": dict(zip(roles, topics, strict=True)),
        },
        topics={name: {0: msgs} for name, msgs in topics.items()},
    )


def _rows(out: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(out / EVENTS_FILE).to_pylist()
    return rows


JOINED = ("outcome", "amount_decided_cents", "late", "sold_out", "dead_letter_reason")


def test_a_packed_message_gives_one_row_per_event_each_with_its_own_decision(
    tmp_path: Path,
) -> None:
    report = export_run(run_with_packed_rows(), tmp_path / "x")
    rows = _rows(tmp_path / "x")
    assert (report.rows, report.messages, report.packed_messages) == (7, 5, 1)
    where = [(r["offset"], r["index"]) for r in rows]
    assert where == [(0, None), (1, None), (2, 0), (2, 1), (2, 2), (3, None), (4, None)]
    assert [r["order_id"] for r in rows] == [
        "restock-FR-WIN-0001",
        "o1",
        "o2",
        None,
        "o1",
        None,
        "o3",
    ]
    assert [tuple(r[c] for c in JOINED) for r in rows] == [
        ("restocked", 0, False, False, None),
        ("accepted", 1_000, False, False, None),
        ("accepted", 2_500, False, True, None),
        ("dlq", 0, False, False, "out_of_range"),
        ("paid", 1_000, False, False, None),
        ("dlq", 0, False, False, "not_json"),
        ("rejected_oversell", 0, True, False, None),
    ]
    # The packed rows' dictionary-coded text is decoded; the payment of the paid step is its own.
    paid = rows[4]
    assert (paid["event_type"], paid["sku"], paid["country"], paid["payment"]) == (
        "paid",
        "FR-WIN-0001",
        "FR",
        "card",
    )
    assert rows[2]["amount_cents"] == 2_500 and rows[2]["unit_price_cents"] == 2_500
    manifest = orjson.loads((tmp_path / "x" / EXPORT_MANIFEST).read_bytes())
    assert manifest["events"] == {
        "file": EVENTS_FILE,
        "rows": 7,
        "messages": 5,
        "packed_messages": 1,
        "dead_letters": 2,
    }
    assert manifest["decisions_from"] == "workers"


def test_columns_are_typed_times_are_utc_and_latency_is_the_first_decisions(
    tmp_path: Path,
) -> None:
    export_run(run_with_packed_rows(), tmp_path / "x")
    table = pq.read_table(tmp_path / "x" / EVENTS_FILE)
    assert table.schema.equals(events_schema())
    assert table.schema.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("amount_cents").type == pa.int64()
    accepted = table.to_pylist()[1]
    assert accepted["event_time"].timestamp() * 1000 == make_order().event_ts_ms
    assert accepted["broker_time"].timestamp() * 1000 == T0 + 100
    assert accepted["emit_time"].timestamp() == T0 / 1000
    # The re-delivered decision 9 ms after the first one does not count.
    assert accepted["latency_ms"] == pytest.approx(57.0)
    assert accepted["processed_time"].timestamp() == pytest.approx((PROCESSED_NS + 7e6) / 1e9)


def test_without_the_workers_topics_the_truth_recomputed_is_joined_and_agrees(
    tmp_path: Path,
) -> None:
    run = run_with_packed_rows()
    export_run(run, tmp_path / "workers")
    del run.manifest["roles"]["decisions"]
    report = export_run(run, tmp_path / "truth")
    assert report.decisions_from == "truth"
    assert report.series_skipped is not None and "decisions" in report.series_skipped
    workers, truth = _rows(tmp_path / "workers"), _rows(tmp_path / "truth")
    assert [tuple(r[c] for c in JOINED) for r in truth] == [
        tuple(r[c] for c in JOINED) for r in workers
    ]
    # The truth has no processing time: no latency.
    assert {r["latency_ms"] for r in truth} == {None}
    assert not (tmp_path / "truth" / SERIES_DIR).exists()


def _csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def test_one_csv_per_report_plot_with_the_plotted_data(tmp_path: Path) -> None:
    assert list(SERIES) == [suffix for suffix, _, _ in PLOTS]
    report = export_run(_run(), tmp_path / "x")
    folder = tmp_path / "x" / SERIES_DIR
    assert report.series == [f"{SERIES_DIR}/{suffix}.csv" for suffix in SERIES]
    gmv = _csv(folder / "gmv.csv")
    assert gmv[0] == ["second_end_s", "gmv_paid_cumulative_cents"]
    # Paid 1,000 cents at 1.2 s and 2,500 at 2.5 s after the first order message.
    assert gmv[1:] == [["1", "0"], ["2", "1000"], ["3", "3500"]]
    rates = _csv(folder / "rates.csv")
    assert [r[:3] for r in rates[1:]] == [["0", "1", "1"], ["1", "1", "1"], ["2", "1", "1"]]
    # No curve: the scenario is not a preset.
    assert {r[3] for r in rates[1:]} == {""}
    assert _csv(folder / "sell-outs.csv")[1:] == [["FR-WIN-0001", "1.5", "1"]]
    assert _csv(folder / "gmv-by.csv")[1:] == [
        ["country", "FR", "3500"],
        ["category", "wine", "3500"],
    ]
    dlq = _csv(folder / "dlq-late.csv")
    assert [int(r[1]) for r in dlq[1:]] == [0, 0, 1]
    latency = _csv(folder / "latency.csv")
    assert latency[0] == ["bucket_start_s", "bucket_s", "decisions", "p50_ms", "p90_ms", "p99_ms"]
    # Every decision but the restock's (verify's percentiles leave restocks out).
    assert sum(int(r[2]) for r in latency[1:]) == 5


def test_an_earlier_export_is_replaced_only_when_forced(tmp_path: Path) -> None:
    out = tmp_path / "x"
    export_run(run_with_packed_rows(), out)
    first = (out / EXPORT_MANIFEST).read_bytes()
    with pytest.raises(ExportError, match="holds an export already: pass --force"):
        export_run(run_with_packed_rows(), out)
    assert (out / EXPORT_MANIFEST).read_bytes() == first
    export_run(run_with_packed_rows("again"), out, force=True)
    assert b"/runs/again" in (out / EXPORT_MANIFEST).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # nothing left beside it


def test_a_folder_holding_anything_else_is_never_written_into(tmp_path: Path) -> None:
    check_out(tmp_path / "new" / "deeper", force=False)  # missing: created when written
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", force=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        check_out(tmp_path / "file", force=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "analysis.ipynb").write_text("{}")
    with pytest.raises(ExportError, match="not empty and holds no export"):
        check_out(tmp_path / "notes", force=True)
    export_run(run_with_packed_rows(), tmp_path / "x")
    (tmp_path / "x" / "mine.sql").write_text("select 1")
    with pytest.raises(ExportError, match=r"mine\.sql, which an export does not write"):
        check_out(tmp_path / "x", force=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text("{}")
    with pytest.raises(ExportError, match="is a run directory"):
        check_out(tmp_path / "run", force=True)


def test_an_interrupted_export_leaves_no_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: object) -> list[Path]:
        raise KeyboardInterrupt

    monkeypatch.setattr("recordings.series.write_series", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_run(_run(), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_an_incomplete_capture_is_refused(tmp_path: Path) -> None:
    run = run_with_packed_rows()
    run.manifest["complete"] = False
    with pytest.raises(RunDirError, match="incomplete"):
        export_run(run, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_large_exports_are_written_a_row_group_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_module, "ROW_GROUP_ROWS", 3)
    export_run(run_with_packed_rows(), tmp_path / "x")
    meta = pq.ParquetFile(tmp_path / "x" / EVENTS_FILE).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3, 3, 1]


def test_the_documented_schema_is_the_written_one() -> None:
    text = (ROOT / "docs" / "research.md").read_text()
    documented = re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", text, flags=re.MULTILINE)
    schema = events_schema()
    assert documented == [(c.name, str(schema.field(c.name).type)) for c in EVENT_COLUMNS]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_bad_export_arguments_give_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "data.csv").write_text("1")
    cases = [
        (("export", str(tmp_path / "none"), "--out", str(tmp_path / "o")), "none"),
        (("export", str(tmp_path), "--out", str(tmp_path / "busy")), "busy"),
    ]
    for args, named in cases:
        done = _cli(*args)
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], done.stderr
    assert not (tmp_path / "o").exists()
