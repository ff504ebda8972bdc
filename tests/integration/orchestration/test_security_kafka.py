"""Every part of flashsale on Apache Kafka's SASL_SSL listener (SCRAM-SHA-512 over TLS, the
broker's certificate checked against a CA the test made): a demo that reconciles, records and
replays; `produce` (librdkafka), the worker, the gateway, the dashboard, locust's Kafka users,
`verify` and `record` each as their own command. A wrong password or CA fails in one line; the
password shows nowhere: not in output, the worker's log, the run summary or the recorded run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from flashsale.kafka.reading import end_offsets
from flashsale.processes import free_port, wait_http
from flashsale.scenario import load_scenario
from flashsale.scenario.catalog import Catalog
from flashsale.settings import Settings
from loadtests import locust_command
from streams.process import WorkerProcess
from tests.conftest import SecureKafka
from tests.paths import ROOT
from tests.tls import make_certs

# One test process takes this file whole (secure_kafka, started once per process).
pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.xdist_group("secure_kafka")]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT), "COLUMNS": "200", **extra}


def _flashsale(
    settings: Settings, *args: str, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        env=_env(settings, **extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _spawn(settings: Settings, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestration", *args],
            env=_env(settings),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _get(url: str, body: object = None) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.status, orjson.loads(resp.read())


def _orders(settings: Settings) -> int:
    ends = asyncio.run(end_offsets(settings.bootstrap_list()[0], settings.topic_orders, settings))
    return sum(ends.values())


def assert_password_nowhere(password: str, shown: dict[str, str | bytes]) -> None:
    """`password` in none of these texts (or files' bytes), named by where they come from."""
    for where, text in shown.items():
        found = password.encode() in text if isinstance(text, bytes) else password in text
        assert not found, f"the SASL password shows in {where}"


def _run_files(run_dir: Path) -> dict[str, str | bytes]:
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert files, f"nothing recorded in {run_dir}"
    return {f"the recorded {p.relative_to(run_dir)}": p.read_bytes() for p in files}


def test_a_demo_over_sasl_ssl_reconciles_records_and_replays(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    settings = secure_kafka.settings(web_port=free_port(), dashboard_port=free_port())
    run_dir = tmp_path / "run"
    summary = tmp_path / "summary.json"
    demo = _flashsale(
        settings,
        "demo",
        "--duration",
        "5",
        "--bootstrap-servers",
        secure_kafka.bootstrap,
        "--record",
        str(run_dir),
        "--summary-json",
        str(summary),
        timeout=240,
    )
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-2000:]
    assert f"broker: {secure_kafka.bootstrap} (external)" in demo.stdout
    figures = orjson.loads(summary.read_bytes())
    assert figures["reconciled"] is True
    assert figures["orders_produced"] > 0
    assert figures["events_processed"] == figures["events_produced"]

    # The recorded run, replayed over SASL_SSL into a topic of its own.
    again = secure_kafka.settings()
    replay = _flashsale(
        again,
        "replay",
        str(run_dir),
        "--speed",
        "max",
        "--bootstrap-servers",
        again.bootstrap_servers or "",
    )
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-2000:]
    recorded = orjson.loads((run_dir / "manifest.json").read_bytes())["topics"]
    assert _orders(again) == recorded[settings.topic_orders]["messages"] > 0

    assert_password_nowhere(
        secure_kafka.password,
        {
            "the demo's output": demo.stdout + demo.stderr,
            "the run summary": summary.read_text(),
            "the replay's output": replay.stdout + replay.stderr,
            **_run_files(run_dir),
        },
    )


def test_each_command_connects_over_sasl_ssl_and_the_run_reconciles(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    settings = secure_kafka.settings()
    bootstrap = settings.bootstrap_servers or ""
    shown: dict[str, str | bytes] = {}

    # The librdkafka producer (the aiokafka one runs in the demo).
    produced = _flashsale(settings, "produce", "--events", "1500", "--client", "confluent")
    assert produced.returncode == 0, produced.stdout[-3000:] + produced.stderr[-2000:]
    shown["produce's output"] = produced.stdout + produced.stderr
    before = _orders(settings)
    assert before > 1500  # the orders, and the catalog's restocks before them

    worker = WorkerProcess(settings, free_port(), log_path=tmp_path / "worker.log")
    gateway_port, dashboard_port = free_port(), free_port()
    services: list[subprocess.Popen[bytes]] = []
    worker.start()
    try:
        services.append(
            _spawn(
                settings,
                "gateway",
                "--bootstrap-servers",
                bootstrap,
                "--worker",
                worker.url,
                "--port",
                str(gateway_port),
                "--no-restock",
                log=tmp_path / "gateway.log",
            )
        )
        services.append(
            _spawn(
                settings,
                "dashboard",
                "--bootstrap-servers",
                bootstrap,
                "--worker",
                worker.url,
                "--port",
                str(dashboard_port),
                log=tmp_path / "dashboard.log",
            )
        )
        # Locust's Kafka users (librdkafka, configured from the environment) for 3 s.
        locust = subprocess.run(
            locust_command(
                "--headless",
                "--users",
                "1",
                "--spawn-rate",
                "1",
                "--run-time",
                "3s",
                "--stop-timeout",
                "5",
                "--only-summary",
                "KafkaOrdersUser",
            ),
            env=_env(settings, FLASHSALE_LOADTEST_RATE="500"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert locust.returncode == 0, locust.stdout[-3000:] + locust.stderr[-3000:]
        shown["locust's output"] = locust.stdout + locust.stderr
        after_locust = _orders(settings)
        assert after_locust > before

        gateway = f"http://127.0.0.1:{gateway_port}"
        wait_http(f"{gateway}/healthz", services[0], 60)
        sku = Catalog.for_scenario(load_scenario("singles-day-2020")).skus[0].sku
        status, body = _get(
            f"{gateway}/orders",
            {
                "order_id": "secure-1",
                "lines": [{"sku": sku, "quantity": 1}],
                "buyer": {"province": "Zhejiang", "channel": "app", "payment": "alipay"},
            },
        )
        assert status == 202, body
        worker.wait_ready()
        worker.wait_drained(timeout_s=90)
        assert _orders(settings) == after_locust + 1

        # The dashboard reads the end offsets of orders over SASL_SSL: the lag is known.
        deadline = time.monotonic() + 30
        snapshot: dict[str, Any] = {}
        while snapshot.get("lag") is None:
            assert time.monotonic() < deadline, f"the dashboard shows no lag: {snapshot}"
            assert services[1].poll() is None, (tmp_path / "dashboard.log").read_text()
            with contextlib.suppress(OSError):
                snapshot = _get(f"http://127.0.0.1:{dashboard_port}/snapshot")[1]
            time.sleep(0.3)
        assert "error" not in snapshot, snapshot

        verified = _flashsale(settings, "verify", "--json", str(tmp_path / "summary.json"))
        assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-2000:]
        run_dir = tmp_path / "run"
        recorded = _flashsale(settings, "record", "--out", str(run_dir))
        assert recorded.returncode == 0, recorded.stdout[-3000:] + recorded.stderr[-2000:]
    finally:
        for proc in services:
            proc.terminate()
        for proc in services:
            proc.wait(timeout=20)
        worker.stop()
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["reconciled"] is True
    assert summary["orders_produced"] > 1500
    shown.update(
        {
            "verify's output": verified.stdout + verified.stderr,
            "the run summary": (tmp_path / "summary.json").read_text(),
            "record's output": recorded.stdout + recorded.stderr,
            "the worker's log": (tmp_path / "worker.log").read_text(),
            "the gateway's output": (tmp_path / "gateway.log").read_text(),
            "the dashboard's output": (tmp_path / "dashboard.log").read_text(),
            **_run_files(run_dir),
        }
    )
    assert_password_nowhere(secure_kafka.password, shown)


def test_a_wrong_password_or_an_untrusted_certificate_fails_in_one_line(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    settings = secure_kafka.settings()
    where = secure_kafka.bootstrap
    stranger = make_certs(tmp_path / "other", "a CA the broker's certificate is not from")
    wrong = "not-the-password"
    refused = (
        f"flashsale: error: Kafka at {where} refused the SCRAM-SHA-512 login of user 'shop': "
        "authentication failed (check FLASHSALE_SASL_USERNAME and FLASHSALE_SASL_PASSWORD)"
    )
    untrusted = (
        f"flashsale: error: the TLS certificate of Kafka at {where} is not trusted: unable to "
        "get local issuer certificate (check FLASHSALE_SSL_CAFILE: the CA that signed the "
        "brokers' certificates)"
    )
    cases = [
        (("produce", "--events", "100"), {"FLASHSALE_SASL_PASSWORD": wrong}, refused),
        (
            ("worker", "--web-port", str(free_port())),
            {"FLASHSALE_SASL_PASSWORD": wrong},
            refused,
        ),
        (
            ("produce", "--events", "100", "--client", "confluent"),
            {"FLASHSALE_SSL_CAFILE": str(stranger.cafile)},
            untrusted,
        ),
    ]
    for args, env, line in cases:
        started = time.monotonic()
        done = _flashsale(settings, *args, timeout=60, **env)
        assert (done.returncode, done.stderr.strip()) == (2, line), done.stdout + done.stderr
        assert time.monotonic() - started < 20
        assert wrong not in done.stdout + done.stderr
        assert secure_kafka.password not in done.stdout + done.stderr
