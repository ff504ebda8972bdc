"""Safe defaults: every server flashsale starts listens on 127.0.0.1 unless told otherwise —
the broker, a worker (views and /metrics), the gateway, the dashboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

from flashsale.processes import free_port, stop_process, wait_http
from flashsale.scenario import load_scenario
from flashsale.settings import Settings
from orchestration.processes import start_gateway
from tests.conftest import TestBroker
from tests.integration.conftest import StartWorker


def _snapshot(url: str) -> dict[str, Any]:
    """The dashboard's first full snapshot (it answers before its first poll is done)."""
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(url, timeout=10) as resp:
            snap: dict[str, Any] = json.loads(resp.read())
        if "zone" in snap or time.monotonic() > deadline:
            return snap
        time.sleep(0.2)


def listening(pid: int) -> set[str]:
    """The addresses a process (and its threads) listens on for TCP."""
    return {
        conn.laddr.ip
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN
    }


def test_broker_worker_gateway_and_dashboard_listen_on_loopback_only(
    broker: TestBroker, run_settings: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    assert Settings().web_host == "127.0.0.1"
    worker = start_worker()
    scenario_file = tmp_path / "scenario.yaml"
    scenario_file.write_text(yaml.safe_dump(load_scenario("steady").model_dump(mode="json")))
    env = {**os.environ, **run_settings.to_env()}
    env.pop("FLASHSALE_WEB_HOST", None)
    gateway = start_gateway(
        run_settings.bootstrap_servers or "",
        worker.url,
        scenario_file,
        run_settings.web_host,  # what the commands pass: the default
        free_port(),
        env,
        tmp_path,
        "--no-restock",
    )
    dashboard_port = free_port()
    dashboard = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestration",
            "dashboard",
            "--worker",
            worker.url,
            "--port",
            str(dashboard_port),
            # Started by hand for a Singles' Day run: its times in China's zone.
            "--scenario",
            "singles-day-2020",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{dashboard_port}/", dashboard, 60)
        assert worker.proc is not None and broker.pid is not None
        for name, pid in (
            ("broker", broker.pid),
            ("worker", worker.proc.pid),
            ("gateway", gateway.pid),
            ("dashboard", dashboard.pid),
        ):
            addresses = listening(pid)
            assert addresses, f"{name} listens nowhere"
            assert addresses == {"127.0.0.1"}, f"{name} listens on {addresses}"
        snapshot = _snapshot(f"http://127.0.0.1:{dashboard_port}/snapshot")
        assert snapshot["zone"] == {"offset_s": 8 * 3600, "label": "UTC+8"}
        start = load_scenario("singles-day-2020").start
        assert snapshot["scenario_start_ms"] == round(start.timestamp() * 1000)
    finally:
        stop_process(dashboard, 10.0)
        stop_process(gateway, 10.0)
