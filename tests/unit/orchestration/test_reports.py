"""`flashsale report` and `compare`: the pages, PNGs and summaries written for runs built by
hand, what is printed, and a bad run directory as one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import orchestration.reports as report
from recordings.format import RecordedRun, RunDirError
from recordings.report import PLOTS
from tests.unit.recordings.test_figures import PNG, _run


def test_compare_a_run_with_itself_shows_no_differences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {"a": _run(name="a"), "b": _run(name="b")}
    monkeypatch.setattr(report, "load_run", lambda p: runs[Path(p).name])
    out = tmp_path / "new" / "compare.html"
    assert report.run_compare(Path("a"), Path("b"), out) == 0
    page = out.read_text()
    assert "no differences" in page
    assert "no differences between A: a (test-small" in capsys.readouterr().out
    pngs = sorted(tmp_path.glob("new/compare-*.png"))
    assert len(pngs) == len(PLOTS)
    assert all(p.read_bytes().startswith(PNG) for p in pngs)
    assert page.count("data:image/png;base64,") == len(PLOTS)
    assert orjson.loads((tmp_path / "new" / "compare.json").read_bytes())["differences"] == []


def test_compare_prints_the_table_of_differences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _run(name="b")
    other.topics["orders-dlq"][0].clear()  # B lost its dead letter
    runs = {"a": _run(name="a"), "b": other}
    monkeypatch.setattr(report, "load_run", lambda p: runs[Path(p).name])
    assert report.run_compare(Path("a"), Path("b"), tmp_path / "c.html") == 0
    printed = capsys.readouterr().out
    assert "report.dlq_total" in printed
    assert "-100.00%" in printed
    page = (tmp_path / "c.html").read_text()
    assert "<td>report.dlq_total</td>" in page


def test_report_writes_the_page_pngs_and_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "load_run", lambda p: _run())
    assert report.run_report(tmp_path, None) == 0
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["run"]["orders_accepted"] == 2
    assert summary["report"]["peak_orders_produced_per_s"] == 1
    page = (tmp_path / "report.html").read_text()
    assert "FR-WIN-0001" in page
    assert "http" not in page.replace("http-equiv", "")  # nothing from the network
    for suffix, *_ in PLOTS:
        assert (tmp_path / f"report-{suffix}.png").read_bytes().startswith(PNG)


def test_a_bad_run_dir_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(path: Any) -> RecordedRun:
        raise RunDirError(f"{path}/manifest.json: missing")

    monkeypatch.setattr(report, "load_run", broken)
    assert report.run_report(tmp_path, None) == 2
    err = capsys.readouterr().err
    assert err == f"flashsale: error: {tmp_path}/manifest.json: missing\n"
    assert not (tmp_path / "report.html").exists()
