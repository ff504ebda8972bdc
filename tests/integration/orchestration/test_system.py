"""`flashsale demo --system`: a stream processor started by its command instead of flashsale's
workers, fed the scenario, drained by its consumer group and judged on its output topic.

flashsale's own worker, started as any other team's command would be, stands in for the
system here: its `order-decisions` records carry what the contract's `decisions` level asks.
(tests/integration/verify/ judges a system that is not ours.)
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from flashsale.processes import free_port
from flashsale.settings import EMBEDDED_DEFAULTS


def _demo(tmp_path: Path, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestration",
            "demo",
            "--system",
            command,
            "--system-group",
            "flashsale",
            "--against",
            "order-decisions",
            "--duration",
            "6",
            "--summary-json",
            str(tmp_path / "summary.json"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )


def test_a_system_started_by_its_command_is_fed_drained_and_judged(tmp_path: Path) -> None:
    # The embedded broker needs what a worker cannot tell from its address (conftest's
    # TestBroker.env): given in the command's environment, as a user would.
    env = " ".join(f"FLASHSALE_{k.upper()}={v}" for k, v in EMBEDDED_DEFAULTS.items())
    worker = shlex.join([sys.executable, "-m", "orchestration", "worker"])
    command = f"env {env} {worker} --bootstrap-servers {{bootstrap}} --web-port {free_port()}"
    done = _demo(tmp_path, command)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "system ready in" in done.stdout
    assert "order-decisions: no anomaly" in done.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["level"] == "decisions" and summary["passed"] is True
    assert summary["events"] > 1_000 and summary["records"] >= summary["events"]
    assert all(a["count"] == 0 for a in summary["anomalies"].values())
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"]
    assert (
        summary["producer"]["events_sent"] + summary["producer"]["restocks_sent"]
        == (summary["events"])
    )


def test_a_system_that_exits_fails_the_run_with_its_log(tmp_path: Path) -> None:
    done = _demo(tmp_path, f"{sys.executable} -c 'raise SystemExit(3)'")
    assert done.returncode == 1
    assert "the system exited with 3" in " ".join(done.stdout.split())
    assert not (tmp_path / "summary.json").exists()
