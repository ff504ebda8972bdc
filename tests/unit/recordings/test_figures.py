"""`flashsale report` and `compare`: the computations, on small runs built by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from flashsale.events import PACKED_COLUMNS, PACKED_HEADER, OrderEvent, encode_event, encode_packed
from recordings.figures import (
    Difference,
    cumulative_per_second,
    differences,
    figures_of,
    latency_buckets,
    per_second,
)
from recordings.format import RecordedMessage, RecordedRun
from tests.factories import make_order, make_restock, make_step

T0 = 1_700_000_000_000  # broker time of the first message on orders, ms
PNG = b"\x89PNG\r\n\x1a\n"


def _decision(ev: OrderEvent, offset: int, outcome: str, amount: int, latency_ms: int) -> bytes:
    """A decision as the worker writes one (streams/outputs.py)."""
    return orjson.dumps(
        {
            "order_id": ev.order_id,
            "line": ev.line,
            "type": ev.type,
            "outcome": outcome,
            "sku": ev.sku,
            "quantity": ev.quantity,
            "amount_cents": amount,
            "partition": 0,
            "offset": offset,
            "event_ts_ms": ev.event_ts_ms,
            "emit_ns": ev.emit_ns,
            "processed_ns": ev.emit_ns + latency_ms * 1_000_000,
        }
    )


def _message(topic: str, doc: dict[str, Any], ts: int) -> RecordedMessage:
    return RecordedMessage(topic, 0, 0, b"0", orjson.dumps(doc), [], ts)


def _run(name: str = "run-a") -> RecordedRun:
    """Two units of one SKU: two orders take them (it sells out 1.5 s after its restock) and
    are paid; a third is rejected; one message is malformed. Decisions follow 50 ms later."""
    first = make_order(order_id="o1", quantity=1, unit_price_cents=1_000)
    second = make_order(order_id="o2", quantity=1, unit_price_cents=2_500)
    third = make_order(order_id="o3", quantity=1)
    start = first.event_ts_ms
    # (broker ms after T0, event or None for a malformed message, outcome, amount, latency)
    script: list[tuple[int, OrderEvent | None, str, int, int]] = [
        (0, make_restock(first, 2, event_ts_ms=start, emit_ns=0), "restocked", 0, 0),
        (100, replace(first, event_ts_ms=start + 100), "accepted", 0, 10),
        (1_200, make_step(first, "paid", event_ts_ms=start + 1_200), "paid", 1_000, 20),
        (1_500, replace(second, event_ts_ms=start + 1_500), "accepted", 0, 30),
        (2_500, make_step(second, "paid", event_ts_ms=start + 2_500), "paid", 2_500, 40),
        (2_600, replace(third, event_ts_ms=start + 2_600), "", 0, 50),
        (2_700, None, "", 0, 0),
    ]
    orders: list[RecordedMessage] = []
    decisions: list[RecordedMessage] = []
    dead: list[RecordedMessage] = []
    for offset, (at, ev, outcome, amount, latency) in enumerate(script):
        value = b"{not json" if ev is None else encode_event(ev)
        orders.append(RecordedMessage("orders", 0, offset, b"k", value, [], T0 + at))
        if ev is None:
            headers = [("flashsale.partition", b"0"), ("flashsale.offset", str(offset).encode())]
            dead.append(RecordedMessage("orders-dlq", 0, 0, b"k", value, headers, T0 + at + 50))
            continue
        outcome = outcome or "rejected_oversell"
        decisions.append(
            RecordedMessage(
                "order-decisions",
                0,
                len(decisions),
                b"k",
                _decision(ev, offset, outcome, amount, latency),
                [],
                T0 + at + 50,
            )
        )
    # What the worker publishes: the sell-out, and its partition's state (GMV breakdowns).
    sold_out = {
        "type": "sold_out",
        "sku": first.sku,
        "partition": 0,
        "offset": 3,
        "event_ts_ms": start + 1_500,
        "time_to_sell_out_s": 1.5,
    }
    state = {
        "partition": 0,
        "window": 5000,
        "gmv_by_country": {"FR": 3_500},
        "gmv_by_category": {"wine": 3_500},
    }
    topics: dict[str, dict[int, list[RecordedMessage]]] = {
        "orders": {0: orders},
        "order-decisions": {0: decisions},
        "orders-dlq": {0: dead},
        "inventory-events": {0: [_message("inventory-events", sold_out, T0 + 1_560)]},
        "flashsale-partition-state-changelog": {
            0: [_message("flashsale-partition-state-changelog", state, T0 + 3_000)]
        },
    }
    roles = ("orders", "decisions", "dlq", "inventory", "states")
    return RecordedRun(
        path=Path("/runs") / name,
        manifest={
            "scenario": "test-small",
            "seed": 5,
            "complete": True,
            "roles": dict(zip(roles, topics, strict=True)),
        },
        topics=topics,
    )


def test_rates_count_each_message_in_its_wall_second() -> None:
    counts = per_second([T0, T0 + 999, T0 + 1_000, T0 + 2_500, T0 - 5, T0 + 9_000], T0, 3)
    # Before the start counts in the first second, after the end in the last.
    assert counts.tolist() == [3, 1, 2]


def test_cumulative_gmv_is_the_running_sum_of_cents_per_second() -> None:
    cum = cumulative_per_second([T0 + 100, T0 + 2_100, T0 + 2_200], [1_000, 2_500, 1], T0, 4)
    assert cum.tolist() == [1_000, 1_000, 3_501, 3_501]
    assert cum.dtype.kind == "i"


def test_latency_percentiles_are_per_bucket_and_skip_empty_buckets() -> None:
    ts = [T0 + 10] * 100 + [T0 + 4_500] * 3
    lat = [float(v) for v in range(1, 101)] + [7.0, 8.0, 9.0]
    got = latency_buckets(ts, lat, T0, bucket_s=2)
    assert [(b.start_s, b.count) for b in got] == [(0.0, 100), (4.0, 3)]
    first = got[0]
    assert (first.p50_ms, first.p90_ms, first.p99_ms) == pytest.approx((50.5, 90.1, 99.01))
    assert (got[1].p50_ms, got[1].p99_ms) == pytest.approx((8.0, 8.98))
    assert latency_buckets([], [], T0, 1) == []


def test_differences_name_each_changed_figure_with_its_relative_change() -> None:
    a = {"run": {"gmv": 1_000, "scenario": "x", "zero": 0, "same": 3}, "report": {"p50": 2.0}}
    b = {"run": {"gmv": 1_100, "scenario": "y", "zero": 5, "same": 3}, "report": {"p50": 1.0}}
    assert differences(a, b) == [
        Difference("run.gmv", 1_000, 1_100, 100, 0.1),
        Difference("run.scenario", "x", "y", None, None),
        Difference("run.zero", 0, 5, 5, None),
        Difference("report.p50", 2.0, 1.0, -1.0, -0.5),
    ]
    assert differences(a, a) == []


def test_a_run_s_figures_follow_its_messages() -> None:
    fig = figures_of(_run())
    assert fig.seconds == 3
    # Orders o1, o2 in second 0 and 1, o3 in second 2; the rejected one is processed too.
    assert fig.orders_per_s.tolist() == [1, 1, 1]
    assert fig.processed_per_s.tolist() == [1, 1, 1]
    assert fig.gmv_cumulative_cents.tolist() == [0, 1_000, 3_500]
    assert fig.sell_outs == [("FR-WIN-0001", 1.5)]
    assert fig.gmv_by["country"] == {"FR": 3_500}
    assert fig.dlq_per_s.tolist() == [0, 0, 1]
    assert [(b.start_s, b.count) for b in fig.latency] == [(0.0, 1), (1.0, 2), (2.0, 2)]
    assert fig.latency[1].p50_ms == pytest.approx(25.0)
    run, own = fig.summary["run"], fig.summary["report"]
    assert run["orders_accepted"] == 2
    assert run["orders_rejected_oversell"] == 1
    assert run["gmv_cents_expected"] == 3_500
    assert own["gmv_cents_paid_decisions"] == 3_500
    assert run["e2e_latency_p50_ms"] == pytest.approx(30.0)
    assert own["e2e_latency_p90_ms"] == pytest.approx(46.0)
    assert own["dlq_total"] == 1
    assert own["gmv_cents_by_category"] == {"wine": 3_500}
    assert fig.scenario is None  # test-small is not a preset: no curve
    # No worker states were recorded: verify says so.
    assert any("worker totals" in d for d in fig.verify_differences)


def test_packed_orders_and_decisions_count_row_by_row() -> None:
    line0 = make_order(order_id="p1", line=0)
    rows = [make_restock(line0, 5, emit_ns=0), line0, replace(line0, line=1)]
    columns = {name: [getattr(ev, name) for ev in rows] for name in PACKED_COLUMNS}
    packed = RecordedMessage(
        "orders", 0, 0, None, encode_packed(columns), [(PACKED_HEADER, b"3")], T0 + 10
    )
    decision = orjson.dumps(
        {
            "packed": 3,
            "partition": 0,
            "offset": 0,
            "index": [0, 1, 2],
            **{name: columns[name] for name in ("order_id", "line", "type", "sku", "quantity")},
            "event_ts_ms": columns["event_ts_ms"],
            "emit_ns": columns["emit_ns"],
            "outcome": ["restocked", "accepted", "accepted"],
            "amount_cents": [0, 0, 0],
            "processed_ns": line0.emit_ns + 7_000_000,
        }
    )
    run = _run()
    run.topics["orders"][0][:] = [packed]
    run.topics["order-decisions"][0][:] = [
        RecordedMessage("order-decisions", 0, 0, b"0", decision, [], T0 + 1_020)
    ]
    run.topics["orders-dlq"][0].clear()
    fig = figures_of(run)
    assert fig.orders_per_s.tolist() == [1, 0]  # one basket of two lines
    assert fig.processed_per_s.tolist() == [0, 1]
    assert fig.summary["report"]["peak_events_produced_per_s"] == 2
    assert [(b.start_s, b.count, b.p50_ms) for b in fig.latency] == [(1.0, 2, 7.0)]
    assert fig.summary["run"]["orders_accepted"] == 2


def test_a_run_s_faults_land_on_its_time_axis_and_are_shaded_on_its_plots(
    tmp_path: Path,
) -> None:
    from recordings.format import FAULTS_FILE
    from recordings.plots import plot_rates

    log = [
        {"action": "kill", "target": "broker-leader-of:orders/0",
         "resolved": "broker-2 (broker-leader-of:orders/0)",
         "started_unix_s": T0 / 1000 + 1.25, "ended_unix_s": T0 / 1000 + 2.5},
        {"action": "stall", "target": "producer", "resolved": "producer",
         "started_unix_s": T0 / 1000 + 2.0, "ended_unix_s": None},
        {"action": "kill", "target": "worker-1", "error": "not done", "started_unix_s": None},
    ]  # fmt: skip
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / FAULTS_FILE).write_bytes(orjson.dumps(log))
    plain = figures_of(_run())
    faulty = figures_of(replace(_run(), path=run_dir))
    assert plain.faults == []
    assert faulty.faults == [
        (1.25, 2.5, "kill broker-2 (broker-leader-of:orders/0)"),
        (2.0, None, "stall producer"),
    ]
    a = plot_rates([plain], tmp_path / "plain.png").read_bytes()
    b = plot_rates([faulty], tmp_path / "faulty.png").read_bytes()
    assert a != b


def test_a_fault_log_that_is_not_one_is_a_run_dir_error(tmp_path: Path) -> None:
    from recordings.format import FAULTS_FILE, RunDirError, read_faults

    assert read_faults(tmp_path) == []
    (tmp_path / FAULTS_FILE).write_text('{"not": "a list"}')
    with pytest.raises(RunDirError, match=r"faults\.json: not a fault log"):
        read_faults(tmp_path)
    (tmp_path / FAULTS_FILE).write_text("{")
    with pytest.raises(RunDirError, match=r"faults\.json: not a fault log"):
        read_faults(tmp_path)
