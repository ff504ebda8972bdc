"""The live dashboard in real headless Chromium, against a real worker on the embedded broker."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from flashsale.cli.processes import free_port
from flashsale.settings import Settings
from flashsale.verify import verify_live
from producers.generator import Generator
from tests.integration.conftest import StartWorker
from tests.integration.helpers import SELL_OUT, produce

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Where the screenshot goes (CI keeps it as an artifact).
ARTIFACTS = Path(os.environ.get("FLASHSALE_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))
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
        if os.environ.get("FLASHSALE_REQUIRE_ALL"):
            pytest.fail("Debian chromium and the playwright package are needed (see .ci/run)")
        pytest.skip("needs Debian chromium and playwright")


@pytest.fixture
def dashboard(run_settings: Settings, start_worker: StartWorker) -> Iterator[str]:
    """A worker, and `flashsale dashboard` on it as a child process; yields the page URL."""
    worker = start_worker()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flashsale",
            "dashboard",
            "--worker",
            worker.url,
            "--bootstrap-servers",
            run_settings.bootstrap_servers or "",
            "--port",
            str(port),
        ],
        env={**os.environ, **run_settings.to_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "snapshot", timeout=2) as resp:
                    if orjson.loads(resp.read()).get("ready"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not come up"
            assert proc.poll() is None, "the dashboard exited"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_page_counts_up_to_the_reconciled_gmv_and_shows_sell_outs(
    run_settings: Settings, dashboard: str
) -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    produced: list[int] = []
    producer = threading.Thread(
        target=lambda: produced.append(asyncio.run(produce(run_settings, SELL_OUT, 6_000)))
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(dashboard)
            page.wait_for_selector("#status.live", timeout=15_000)

            def target() -> int:
                return int(page.get_attribute("#gmv", "data-target") or 0)

            producer.start()
            seen = [target()]
            while producer.is_alive():
                time.sleep(1.0)
                seen.append(target())
            producer.join()
            assert produced, "the producer failed"
            # The number went up while orders flowed, and never down.
            assert seen[-1] > seen[0]
            assert seen == sorted(seen)

            # Playwright's sync API holds this thread's event loop: verify in another thread.
            with ThreadPoolExecutor(1) as pool:
                bootstrap = run_settings.bootstrap_servers or ""
                result = pool.submit(
                    lambda: asyncio.run(verify_live(run_settings, bootstrap))
                ).result()
            assert result.reconciled, result.differences
            expected = result.summary["gmv_cents_expected"]
            # Once the worker has applied everything, the counter settles on the truth.
            page.wait_for_function(
                "want => document.getElementById('gmv').dataset.cents === String(want)",
                arg=expected,
                timeout=30_000,
            )
            shown = page.inner_text("#gmv")
            assert shown == f"€{expected / 100:,.2f}"

            flash = {
                Generator(SELL_OUT).catalog.skus[i].sku
                for i in Generator(SELL_OUT).catalog.flash_indices
            }
            page.wait_for_function(
                "() => document.querySelectorAll('#sold-out tr').length > 0", timeout=15_000
            )
            sold = page.eval_on_selector_all(
                "#sold-out tr td:first-child", "cells => cells.map(c => c.textContent)"
            )
            assert flash & set(sold), (sold, sorted(flash)[:5])
            # The chart has been drawn: the canvas is not blank.
            drawn = page.evaluate(
                "() => { const c = document.getElementById('chart');"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; }"
            )
            assert drawn

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    assert errors == []
