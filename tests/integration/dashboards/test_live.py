"""`flashsale demo`'s live dashboard in real headless Chromium, on the embedded broker, with a
fault on the scenario's timeline (the producer stalled) marked on the page: uPlot's charts over
the run, numbered repeat sell-outs, every time in the scenario's zone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue
from typing import TYPE_CHECKING

import orjson
import pytest
import yaml

from flashsale.scenario.faults import FaultSpec
from flashsale.settings import Settings
from producers.generator import Generator
from tests.conftest import skip_or_fail
from tests.integration.helpers import SELL_OUT
from tests.paths import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.integration

STALL = FaultSpec.model_validate({"at": 3, "action": "stall", "target": "producer", "for": 2})

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Where the screenshot goes (CI keeps it as an artifact).
ARTIFACTS = Path(os.environ.get("FLASHSALE_ARTIFACTS", ROOT / "artifacts"))
# This machine's network is closed: without these Chromium keeps trying to reach Google.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_browser() -> None:
    missing = CHROMIUM is None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        skip_or_fail("Debian chromium and the playwright package (see .ci/run)")


def _demo(run_settings: Settings, tmp_path: Path) -> tuple[subprocess.Popen[str], Queue[str]]:
    """`flashsale demo` of the sell-out scenario on the test's broker and topics; its lines."""
    scenario = tmp_path / "sell-out.yaml"
    # With a fault on its timeline: the producer stalled 2 s, 3 s in (the page marks it).
    stalled = SELL_OUT.model_copy(update={"faults": (STALL,)})
    scenario.write_text(yaml.safe_dump(stalled.model_dump(mode="json", by_alias=True)))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestration",
            "demo",
            "--scenario",
            str(scenario),
            "--duration",
            "8",
            "--summary-json",
            str(tmp_path / "summary.json"),
            "--bootstrap-servers",
            run_settings.bootstrap_servers or "",
        ],
        env={**os.environ, **run_settings.to_env(), "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: Queue[str] = Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _dashboard_url(proc: subprocess.Popen[str], lines: Queue[str]) -> str:
    deadline = time.monotonic() + 90
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except Empty:
            assert proc.poll() is None, "".join(seen)
            continue
        seen.append(line)
        found = re.search(r"dashboard: (http://\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError("the demo printed no dashboard URL:\n" + "".join(seen))


def _assert_repeat_sell_outs_are_numbered(page: Page) -> None:
    """A SKU that sold out again says which time it is (the scenario's unpaid lines give their
    units back, and the bots buy them out again); a first sell-out says how long it took."""
    feed = page.eval_on_selector_all(
        "#sold-out tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert feed, "no sell-out shown"
    numbers: dict[str, list[int]] = {}
    for sku, at, note in feed:
        assert re.fullmatch(r"\d\d:\d\d:\d\d", at), at
        again = re.fullmatch(r"again \((\d+)(st|nd|rd|th) time\)", note)
        assert again or re.fullmatch(r"after \d+\.\d s", note), note
        numbers.setdefault(sku, []).append(int(again.group(1)) if again else 1)
    # Newest first: each SKU's rows count down one by one, so no repeat goes unexplained
    # (its oldest sell-outs may have scrolled off the feed).
    for sku, ns in numbers.items():
        assert ns == list(range(ns[0], ns[0] - len(ns), -1)), (sku, ns, feed)
    assert any(n > 1 for ns in numbers.values() for n in ns), feed
    assert page.locator("#sold-out tr.again").count() == sum(
        n > 1 for ns in numbers.values() for n in ns
    )


def _assert_one_time_zone(page: Page) -> None:
    """The scenario starts at 16:00 UTC, 00:00 on 11 November in China: every time on the page
    is in UTC+8 and says so, and no other zone appears."""
    text = page.inner_text("body")
    zones = re.findall(r"\b(?:UTC|GMT)[+-]?[\d:]*", text)
    assert zones and set(zones) == {"UTC+8"}, zones
    assert len(zones) >= 3  # the clock, the hot products' minute, the sell-outs
    assert re.fullmatch(r"11 Nov 2020, 00:00:\d\d", page.inner_text("#clock"))
    assert page.inner_text("#clock-zone") == "UTC+8"
    assert re.fullmatch(r"minute of 00:0\d UTC\+8", page.text_content("#minute") or "")


def _assert_charts_fit_the_run(page: Page, elapsed_s: float) -> None:
    """uPlot drew the three charts, their axis runs from the run's start to its end (not a fixed
    window), hovering one shows the values of all, and the fault is shaded where it was."""
    charts = page.evaluate(
        """() => Object.fromEntries(Object.entries(window.flashsaleCharts).map(([k, u]) => [k, {
            labels: u.series.map(s => s.label), min: u.scales.x.min, max: u.scales.x.max,
            t: u.data[0], peaks: u.data.slice(1).map(d => Math.max(...d.filter(v => v !== null)))
        }]))"""
    )
    assert {k: c["labels"] for k, c in charts.items()} == {
        "events": ["run time", "produced/s", "applied/s"],
        "lag": ["run time", "lag"],
        "p99": ["run time", "p99"],
    }
    for name in ("events", "lag", "p99"):
        assert page.locator(f"#chart-{name} .uplot canvas").count() == 1
    events = charts["events"]
    t = events["t"]
    assert len(t) > 5 and t[0] == 0 and t == sorted(t)
    # The axis starts at the run's start and ends at its newest second: the whole run fills it.
    assert events["min"] == 0
    assert events["max"] == max(t[-1], 10)
    assert t[-1] <= elapsed_s + 1, (t[-1], elapsed_s)
    produced_peak, applied_peak = events["peaks"]
    assert produced_peak > 100 and applied_peak > 100, events["peaks"]
    assert charts["lag"]["peaks"][0] >= 0 and charts["p99"]["peaks"][0] > 0

    # Hover the middle of the events chart: its legend and the synced lag chart's show that
    # second's values.
    box = page.locator("#chart-events .u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    shown = page.eval_on_selector_all(
        "#chart-events .u-value, #chart-lag .u-value", "cells => cells.map(c => c.textContent)"
    )
    when, produced, applied, when_lag, _lag = shown
    assert re.fullmatch(r"\d+:\d\d", when) and when == when_lag, shown
    assert produced != "—" and applied != "—", shown

    # The stall is shaded on the chart: the plot's top edge inside the band is amber.
    pixel = page.evaluate(
        """() => {
            const u = window.flashsaleCharts.events;
            const [start, end] = window.flashsaleSnapshot.faults[0];
            const x = Math.round(u.valToPos((start + end) / 2, "x", true));
            const y = Math.round(u.bbox.top + uPlot.pxRatio);
            return [...u.ctx.getImageData(x, y, 1, 1).data];
        }"""
    )
    red, green, blue, alpha = pixel
    assert alpha > 0 and red > green > blue, pixel


def test_the_demo_page_counts_up_to_the_reconciled_gmv_and_shows_sell_outs(
    run_settings: Settings, tmp_path: Path
) -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    started = time.monotonic()
    proc, lines = _demo(run_settings, tmp_path)
    try:
        url = _dashboard_url(proc, lines)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(url)
                page.wait_for_selector("#status.live", timeout=60_000)

                def target() -> int:
                    return int(page.get_attribute("#gmv", "data-target") or 0)

                seen = [target()]
                while proc.poll() is None:
                    page.wait_for_timeout(1_000)
                    seen.append(target())
                # The demo told the page the run was over before it stopped.
                page.wait_for_selector("#status:text('run ended')", timeout=10_000)
                assert proc.returncode == 0, "".join(lines.queue)
                summary = orjson.loads((tmp_path / "summary.json").read_bytes())
                assert summary["reconciled"] is True
                expected = summary["gmv_cents_expected"]
                # The number went up while orders flowed, never down, and the demo showed the
                # drained run before it closed: the page ends on the reconciled GMV.
                assert seen == sorted(seen)
                assert len(set(seen)) > 2
                assert seen[-1] == expected
                page.wait_for_function(
                    "want => document.getElementById('gmv').dataset.cents === String(want)",
                    arg=expected,
                    timeout=10_000,
                )
                assert page.inner_text("#gmv") == f"€{expected / 100:,.2f}"

                catalog = Generator(SELL_OUT).catalog
                flash = {catalog.skus[i].sku for i in catalog.flash_indices}
                sold = page.eval_on_selector_all(
                    "#sold-out tr td:first-child", "cells => cells.map(c => c.textContent)"
                )
                assert flash & set(sold), (sold, sorted(flash)[:5])
                _assert_repeat_sell_outs_are_numbered(page)
                _assert_one_time_zone(page)
                _assert_charts_fit_the_run(page, elapsed_s=time.monotonic() - started)
                # The fault is named under the chart with how long it lasted, and in the summary.
                faults = page.inner_text("#faults")
                assert re.fullmatch(r"faults: stall producer \(2\.\d s\)", faults), faults
                (entry,) = summary["faults"]
                assert (entry["action"], entry["resolved"]) == ("stall", "producer")
                assert entry["ended_s"] - entry["started_s"] >= 2.0

                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                shot = ARTIFACTS / "dashboard.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                assert shot.stat().st_size > 10_000
            finally:
                browser.close()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
    assert errors == []
