"""`flashsale demo`'s live dashboard in real headless Chromium, on the embedded broker, with a
fault on the scenario's timeline (the producer stalled) marked on the page."""

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

import orjson
import pytest
import yaml

from flashsale.scenario.faults import FaultSpec
from flashsale.settings import Settings
from producers.generator import Generator
from tests.conftest import skip_or_fail
from tests.integration.helpers import SELL_OUT
from tests.paths import ROOT

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


def test_the_demo_page_counts_up_to_the_reconciled_gmv_and_shows_sell_outs(
    run_settings: Settings, tmp_path: Path
) -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
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
                assert page.inner_text("#clock").startswith("00:00 + 00:00:")
                # The chart has been drawn: the canvas is not blank.
                drawn = page.evaluate(
                    "() => { const c = document.getElementById('chart');"
                    " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                    " for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; }"
                )
                assert drawn
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
