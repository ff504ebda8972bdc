"""`flashsale export` of a real recorded demo, and the DuckDB queries of docs/research.md run
on it, their answers checked against the run's verdict and its recorded decisions."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pytest

from flashsale.counters import OUTCOME_COUNTS
from flashsale.events import packed_count
from recordings.export import EVENTS_FILE, EXPORT_MANIFEST, SERIES_DIR
from recordings.format import load_run
from tests.paths import ROOT
from verify.records import decision_docs, position_of
from verify.summary import BUSINESS_FIELDS

# One test process takes this file whole, with test_runs.py and test_report.py: all use the
# session's recorded run, made once per process.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("recorded_run")]

QUERIES = (
    "outcome counts",
    "GMV per minute and country",
    "sell-out time per SKU against its stock",
    "latency percentiles per second at the peak",
)


def documented_queries() -> dict[str, str]:
    """The SQL blocks of docs/research.md's analyses, by their first comment line."""
    text = (ROOT / "docs" / "research.md").read_text()
    section = text.split("### Analyses in DuckDB", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
    return {block.splitlines()[0].removeprefix("-- "): block for block in blocks}


def query(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    result = con.sql(sql)
    return [dict(zip(result.columns, row, strict=True)) for row in result.fetchall()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_documented_queries_on_an_export_of_a_recorded_demo_give_its_verdict(
    recorded_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "exports" / "a"
    done = subprocess.run(
        [sys.executable, "-m", "orchestration", "export", str(recorded_run), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "decisions: the workers' own" in done.stdout
    live = json.loads((recorded_run.parent / "demo-summary.json").read_text())
    manifest = orjson.loads((out / EXPORT_MANIFEST).read_bytes())
    assert {k: manifest["run_summary"][k] for k in BUSINESS_FIELDS} == {
        k: live[k] for k in BUSINESS_FIELDS
    }
    run = load_run(recorded_run)
    orders = run.topic(run.role("orders") or "")

    monkeypatch.chdir(out)
    con = duckdb.connect()
    # Every event exported once: each message of orders, a packed one once per event.
    (where,) = query(
        con,
        f'SELECT count(*) AS rows, count(DISTINCT (partition, "offset", index)) AS events, '
        f"count(DISTINCT (partition, \"offset\")) AS messages FROM '{EVENTS_FILE}'",
    )
    messages = [m for part in orders.values() for m in part]
    assert where["messages"] == len(messages)
    assert where["rows"] == where["events"] == sum(packed_count(m.headers) or 1 for m in messages)

    queries = documented_queries()
    assert set(queries) == set(QUERIES)

    outcomes = {r["outcome"]: r for r in query(con, queries["outcome counts"])}
    for count in OUTCOME_COUNTS:
        got = outcomes.get(count.outcome, {"events": 0})["events"]
        assert got == live[count.summary], count
    assert outcomes.get("dlq", {"events": 0})["events"] == live["dlq_messages"]
    assert outcomes["paid"]["cents"] == live["gmv_cents_expected"] > 0
    assert (outcomes.get("refunded") or {"cents": 0})["cents"] == live["refunded_cents"]
    restocks = outcomes.pop("restocked")["events"]
    assert restocks > 0
    assert sum(r["events"] for r in outcomes.values()) == live["events_produced"]

    gmv = query(con, queries["GMV per minute and country"])
    assert sum(r["gmv_cents"] for r in gmv) == live["gmv_cents_expected"]
    assert sum(r["lines_paid"] for r in gmv) == live["orders_paid"]
    by_country: Counter[str] = Counter()
    for r in gmv:
        by_country[r["country"]] += r["gmv_cents"]
    workers = {
        r["name"]: int(r["gmv_paid_cents"])
        for r in read_csv(out / SERIES_DIR / "gmv-by.csv")
        if r["dimension"] == "country"
    }
    assert dict(by_country) == workers

    sell_outs = query(con, queries["sell-out time per SKU against its stock"])
    assert len(sell_outs) == live["sold_out_skus"]
    assert [(r["sku"], r["time_to_sell_out_s"]) for r in sell_outs] == [
        (r["sku"], float(r["time_to_sell_out_scenario_s"]))
        for r in read_csv(out / SERIES_DIR / "sell-outs.csv")
    ]
    assert all(r["units_restocked"] > 0 for r in sell_outs)

    # The latency of each decision, per second of the worker's clock, from the recorded
    # decisions themselves.
    per_second: dict[int, list[float]] = {}
    seen = set()
    for part in run.topic(run.role("decisions") or "").values():
        for rec in part:
            for doc in decision_docs(orjson.loads(rec.value or b"{}")):
                at = position_of(doc)
                if at in seen or doc.get("type") == "restock" or not doc["emit_ns"]:
                    continue
                seen.add(at)
                latency = (doc["processed_ns"] - doc["emit_ns"]) / 1e6
                per_second.setdefault(doc["processed_ns"] // 10**9, []).append(latency)
    peak = query(con, queries["latency percentiles per second at the peak"])
    assert len(peak) == min(5, len(per_second))
    assert peak[0]["decisions"] == max(map(len, per_second.values()))
    for row in peak:
        lat = per_second[int(row["second"].timestamp())]
        assert row["decisions"] == len(lat)
        p50, p99 = np.percentile(lat, [50, 99])
        assert row["p50_ms"] == pytest.approx(p50, abs=0.006)
        assert row["p99_ms"] == pytest.approx(p99, abs=0.006)
        assert row["max_ms"] == pytest.approx(max(lat), abs=0.006)
