"""`flashsale gateway` on the embedded broker with a real worker: checkouts reconcile."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from flashsale.processes import free_port
from flashsale.scenario import load_scenario
from flashsale.scenario.catalog import Catalog
from flashsale.settings import Settings
from streams.process import WorkerProcess
from tests.conftest import skip_or_fail
from tests.integration.conftest import StartWorker
from verify.live import verify_live

pytestmark = pytest.mark.integration

CATALOG = Catalog.for_scenario(load_scenario("singles-day-2020"))


def _call(url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@pytest.fixture
def gateway(
    run_settings: Settings, start_worker: StartWorker
) -> Iterator[tuple[str, WorkerProcess]]:
    worker = start_worker()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestration",
            "gateway",
            "--bootstrap-servers",
            run_settings.bootstrap_servers or "",
            "--worker",
            worker.url,
            "--port",
            str(port),
        ],
        env={**os.environ, **run_settings.to_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _call(url + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "the gateway exited"
            assert time.monotonic() < deadline, "the gateway did not come up"
            time.sleep(0.2)
        yield url, worker
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_checkouts_through_the_gateway_reconcile_and_schemathesis_finds_no_server_error(
    run_settings: Settings, gateway: tuple[str, WorkerProcess]
) -> None:
    url, worker = gateway
    rng = random.Random(3)
    lines = 0
    for i in range(60):
        basket = rng.sample(CATALOG.skus, rng.randint(1, 3))
        status, body = _call(
            url + "/orders",
            {
                "order_id": f"shopper-{i}",
                "lines": [{"sku": s.sku, "quantity": rng.randint(1, 3)} for s in basket],
                "buyer": {"province": "Zhejiang", "channel": "app", "payment": "alipay"},
            },
        )
        assert status == 202, body
        lines += body["lines"]
    status, body = _call(url + "/orders", {"lines": [], "buyer": {}})
    assert status == 422
    worker.wait_drained()

    sku = CATALOG.skus[0].sku
    status, stock = _call(f"{url}/products/{sku}/stock")
    assert status == 200 and stock["sku"] == sku
    result = asyncio.run(verify_live(run_settings, run_settings.bootstrap_servers or ""))
    assert result.differences == [], "\n".join(result.differences)
    assert result.summary["orders_produced"] == lines
    assert result.summary["orders_processed"] == lines
    assert result.summary["orders_accepted"] + result.summary["orders_rejected_oversell"] == lines

    # Then schemathesis, through the OpenAPI document, on the same live gateway: no 5xx.
    schemathesis = Path(sys.executable).with_name("schemathesis")
    if not schemathesis.exists():
        skip_or_fail("schemathesis (a dev dependency)")
    done = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "60",
            "--generation-deterministic",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    # Every generated case ran and none got a 5xx; the valid ones reached the real producer.
    cases = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert cases is not None, done.stdout[-2000:]
    assert int(cases.group(1)) == int(cases.group(2)) >= 100, done.stdout[-2000:]
