"""`flashsale report` and `compare` on a real recorded demo, the pages opened in headless
Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from recordings.format import MANIFEST
from tests.integration.dashboards.test_live import CHROMIUM, CHROMIUM_ARGS, _require_browser
from verify.summary import BUSINESS_FIELDS

# One test process takes this file whole, with test_runs.py: both use the session's
# recorded run, made once per process.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("recorded_run")]

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = 6


def flashsale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def _check_pngs(folder: Path) -> None:
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == PLOTS, pngs
    for png in pngs:
        assert png.read_bytes()[:8] == PNG, png
        height, width, _ = imread(png).shape
        assert width >= 600 and height >= 300, (png, width, height)


def _open_in_chromium(pages: list[Path]) -> None:
    """Each page loads offline with no console error and every image decoded."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for page_path in pages:
                _check_page(browser, page_path)
        finally:
            browser.close()


def _check_page(browser: Any, page_path: Path) -> None:
    errors: list[str] = []
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])"
    )
    assert len(images) == PLOTS, images
    assert all(done and width > 0 for done, width, _ in images), images
    assert {src for *_, src in images} == {"data:image/png;base64,"}
    assert errors == [], (page_path, errors)
    # The page and its data URIs only: nothing from the network.
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    page.close()


def test_report_and_compare_of_a_recorded_demo_open_in_chromium(
    recorded_run: Path, tmp_path: Path
) -> None:
    # Into folders that do not exist yet: they are created.
    page = tmp_path / "report" / "nested" / "report.html"
    done = flashsale("report", str(recorded_run), "--out", str(page))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((page.parent / "summary.json").read_text())
    live = json.loads((recorded_run.parent / "demo-summary.json").read_text())
    # The report's run summary is the live demo's verdict, recomputed from the files.
    assert {k: summary["run"][k] for k in BUSINESS_FIELDS} == {k: live[k] for k in BUSINESS_FIELDS}
    own = summary["report"]
    assert summary["run"]["reconciled"] is True
    assert own["gmv_cents_paid_decisions"] == live["gmv_cents_expected"] > 0
    assert sum(own["gmv_cents_by_country"].values()) == live["gmv_cents_expected"]
    assert own["order_baskets_processed"] == own["order_baskets_produced"] > 0
    assert 0 < own["peak_orders_produced_per_s"] <= own["order_baskets_produced"]
    # The demo's preset is known: its curve is drawn and its peak within the run is positive.
    assert own["peak_orders_expected_per_s"] > 0
    assert own["late_total"] == live["late_events"]
    assert own["e2e_latency_p90_ms"] > 0
    _check_pngs(page.parent)

    compare = tmp_path / "compare" / "compare.html"
    done = flashsale("compare", str(recorded_run), str(recorded_run), "--out", str(compare))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no differences" in done.stdout
    assert "no differences" in compare.read_text()
    _check_pngs(compare.parent)

    _open_in_chromium([page, compare])


def test_report_of_a_tampered_run_is_a_one_line_error(recorded_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(recorded_run, copy)
    part = next((copy / "topics").rglob("*.parquet"))
    part.write_bytes(part.read_bytes()[:-100])
    for args in (["report", str(copy)], ["compare", str(recorded_run), str(copy)]):
        done = flashsale(*args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("flashsale: error: ")
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert part.name in done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    assert not (copy / "report.html").exists()
    (copy / MANIFEST).unlink()
    done = flashsale("report", str(copy))
    assert done.returncode == 2
    assert f"{copy / MANIFEST}" in done.stderr
