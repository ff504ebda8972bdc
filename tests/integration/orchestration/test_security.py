"""Security settings against the embedded broker, which speaks PLAINTEXT only (Tansu 0.6: its
`--cert` and `--key` flags exclude each other, so it cannot serve TLS; `--authentication`
offers SCRAM but no way to create a user before one is authenticated): a client speaking
another protocol gets one line and a non-zero exit, not a hang; the SASL password shows
nowhere, not in output, logs or the run summary."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flashsale.processes import free_port
from flashsale.settings import Settings
from streams.process import WorkerProcess
from tests.paths import ROOT

pytestmark = pytest.mark.integration

SECRET = "hunter2-not-for-logs"


def flashsale(
    settings: Settings, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        env={**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _sasl(protocol: str) -> dict[str, str]:
    return {
        "FLASHSALE_SECURITY_PROTOCOL": protocol,
        "FLASHSALE_SASL_MECHANISM": "SCRAM-SHA-256",
        "FLASHSALE_SASL_USERNAME": "shop",
        "FLASHSALE_SASL_PASSWORD": SECRET,
    }


# The bounds say "gives up", not "hangs": the client's own timeouts end it in a few seconds
# alone, and a loaded suite has stretched a 10 s bound to 10.5 s.
@pytest.mark.parametrize(
    ("protocol", "within_s"),
    [
        ("SASL_PLAINTEXT", 30.0),
        # TLS against plaintext: the handshake is never answered; the admin client gives up.
        pytest.param("SSL", 45.0, marks=pytest.mark.slow),
    ],
)
def test_a_protocol_the_broker_does_not_speak_fails_in_one_line(
    run_settings: Settings, protocol: str, within_s: float
) -> None:
    started = time.monotonic()
    done = flashsale(run_settings, "produce", "--events", "100", env=_sasl(protocol))
    took = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == (
        f"flashsale: error: cannot connect to Kafka at {run_settings.bootstrap_servers} with "
        f"security_protocol {protocol} (check FLASHSALE_BOOTSTRAP_SERVERS and "
        "FLASHSALE_SECURITY_PROTOCOL)"
    )
    assert SECRET not in done.stdout + done.stderr
    assert took < within_s


def test_a_secure_protocol_with_the_embedded_broker_is_refused_before_anything_starts(
    run_settings: Settings,
) -> None:
    plain = run_settings.model_copy(update={"bootstrap_servers": None})
    done = flashsale(plain, "produce", "--events", "10", env=_sasl("SASL_SSL"))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "flashsale: error: security_protocol SASL_SSL needs --bootstrap-servers: the "
        "embedded broker speaks PLAINTEXT only"
    )


def test_the_password_shows_nowhere_in_a_whole_run(run_settings: Settings, tmp_path: Path) -> None:
    # PLAINTEXT with a password set: every process gets it through its environment.
    settings = Settings(
        **{**run_settings.model_dump(), "sasl_username": "shop", "sasl_password": SECRET}
    )
    produced = flashsale(settings, "produce", "--events", "2000")
    assert produced.returncode == 0, produced.stderr
    worker = WorkerProcess(settings, free_port(), log_path=tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready()
        worker.wait_drained(timeout_s=60)
        summary = tmp_path / "summary.json"
        verified = flashsale(settings, "verify", "--json", str(summary))
    finally:
        worker.stop()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    shown = {
        "produce": produced.stdout + produced.stderr,
        "verify": verified.stdout + verified.stderr,
        "worker log": (tmp_path / "worker.log").read_text(),
        "summary": summary.read_text(),
    }
    for where, text in shown.items():
        assert SECRET not in text, f"the SASL password shows in the {where}"


def test_a_worker_with_sasl_against_the_plaintext_broker_stops_and_keeps_the_password(
    run_settings: Settings,
) -> None:
    started = time.monotonic()
    done = flashsale(
        run_settings, "worker", "--web-port", str(free_port()), env=_sasl("SASL_PLAINTEXT")
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - started < 15
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("flashsale: error: cannot connect to Kafka at ")
    )
    assert SECRET not in done.stdout + done.stderr
