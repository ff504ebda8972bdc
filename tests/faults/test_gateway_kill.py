"""A gateway SIGKILLed while shoppers check out, then restarted: every checkout that got a 202
is on `orders`, line for line, and the run reconciles (202 means the broker acknowledged)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from flashsale.kafka.reading import read_topic
from flashsale.processes import free_port
from flashsale.scenario import load_scenario
from flashsale.scenario.catalog import Catalog
from flashsale.settings import Settings
from streams.process import WorkerProcess
from tests.paths import ROOT
from verify.live import verify_live

pytestmark = pytest.mark.integration

CATALOG = Catalog.for_scenario(load_scenario("singles-day-2020"))
SHOPPERS = 8
#: Checkouts confirmed before the kill, and in all.
BEFORE_KILL, TOTAL = 150, 300


class Gateway:
    """`flashsale gateway` as a child process on a port of its own."""

    def __init__(self, settings: Settings, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings
        self.log = log
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, restock: bool = True) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestration", "gateway", "--port", str(self.port),
                 "--bootstrap-servers", self.settings.bootstrap_servers or "",
                 *([] if restock else ["--no-restock"]), *self.extra],
                env={**os.environ, **self.settings.to_env(), "PYTHONPATH": str(ROOT)},
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket_connect(self.port):
                    return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, "the gateway did not come up in 30 s"
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def socket_connect(port: int) -> object:
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=1)


@pytest.fixture
def gateway(run_settings: Settings, tmp_path: Path) -> Iterator[Gateway]:
    # A longer linger widens the window between queueing a line and the broker holding it,
    # where a gateway that answered before the acknowledgement would lose confirmed orders.
    gw = Gateway(run_settings.model_copy(update={"linger_ms": 30}), tmp_path / "gateway.log")
    try:
        yield gw
    finally:
        gw.stop()


def checkout(n: int) -> dict[str, object]:
    skus = CATALOG.skus
    return {
        "order_id": f"kill-{n}",
        "lines": [
            {"sku": skus[n % len(skus)].sku, "quantity": 1},
            {"sku": skus[(n * 7 + 3) % len(skus)].sku, "quantity": 2},
        ],
        "buyer": {"province": "Zhejiang", "channel": "app", "payment": "alipay"},
    }


async def shop(gw: Gateway) -> tuple[set[str], int]:
    """Shoppers post checkouts; the gateway is killed mid-run and restarted. The order ids
    that got a 202, and how many posts got no answer or a refusal."""
    confirmed: set[str] = set()
    unanswered = 0
    counter = iter(range(1_000_000))
    killed = asyncio.Event()

    async def shopper(session: aiohttp.ClientSession) -> None:
        nonlocal unanswered
        while len(confirmed) < TOTAL:
            n = next(counter)
            try:
                async with session.post(f"{gw.url}/orders", json=checkout(n)) as resp:
                    if resp.status == 202:
                        confirmed.add((await resp.json())["order_id"])
                        continue
            except (aiohttp.ClientError, TimeoutError):
                pass
            unanswered += 1
            await asyncio.sleep(0.05)

    async def killer() -> None:
        while len(confirmed) < BEFORE_KILL:
            await asyncio.sleep(0.01)
        gw.kill()  # with checkouts of every shopper in flight
        killed.set()
        await asyncio.to_thread(gw.start, False)

    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(killer(), *(shopper(session) for _ in range(SHOPPERS)))
    assert killed.is_set()
    return confirmed, unanswered


def test_gateway_sigkilled_mid_run_loses_no_confirmed_checkout(
    run_settings: Settings, gateway: Gateway, tmp_path: Path
) -> None:
    gateway.start()
    confirmed, unanswered = asyncio.run(shop(gateway))
    assert len(confirmed) >= TOTAL
    assert unanswered > 0  # the kill did cut checkouts short

    orders = asyncio.run(
        read_topic(run_settings.bootstrap_servers or "", run_settings.topic_orders)
    )
    lines: Counter[str] = Counter()
    for records in orders.values():
        for r in records:
            doc = orjson.loads(r.value)
            if doc["type"] == "created":
                lines[doc["order_id"]] += 1
    lost = sorted(o for o in confirmed if lines[o] < 2)
    assert not lost, f"{len(lost)} confirmed checkouts are not on orders: {lost[:5]}"

    worker = WorkerProcess(run_settings, free_port(), log_path=tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready()
        worker.wait_drained(timeout_s=60)
        result = asyncio.run(verify_live(run_settings, run_settings.bootstrap_servers or ""))
    finally:
        worker.stop()
    assert result.differences == [], "\n".join(result.differences)
    assert result.summary["reconciled"] is True
