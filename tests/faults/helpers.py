"""What the fault tests share: a scenario file, `flashsale produce` as a child, checks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from flashsale.settings import Settings
from streams.process import WorkerProcess
from tests.paths import ROOT
from verify.live import verify_live

#: 3,000 orders/s with quick payments and 2% client retries: 18,000 events are about 2.6 s
#: of the schedule.
SCENARIO: dict[str, Any] = {
    "name": "faults",
    "seed": 11,
    "curve": {"shape": "constant", "horizon_s": 600.0},
    "scale": {"peak_per_s": 3_000.0, "sample_ratio": 1.0, "compression": 1.0},
    "catalog": {"sku_count": 120},
    "mix": {"pay_delay_mean_s": 0.5, "unpaid_timeout_s": 2.0, "duplicate_rate": 0.02},
}


def scenario_file(folder: Path) -> Path:
    """SCENARIO written as a YAML file in `folder`."""
    path = folder / "faults.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    return path


def produce_cmd(scenario: Path, events: int, *more: str) -> list[str]:
    """`flashsale produce` of the first `events` events of `scenario`."""
    return [
        sys.executable,
        "-m",
        "orchestration",
        "produce",
        "--scenario",
        str(scenario),
        "--events",
        str(events),
        *more,
    ]


def start_producer(settings: Settings, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`cmd` as a child on `settings` (none of the caller's FLASHSALE_* leak in), its output
    in `log`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    env.update(settings.to_env())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    """Its exit code; killed if it is still running after `timeout_s`."""
    try:
        return proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    """Block until `condition()` holds; fail if `proc` exits first or 30 s pass."""
    deadline = time.monotonic() + 30
    while not condition():
        assert proc.poll() is None, f"the producer exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "no orders flowed in 30 s"
        time.sleep(0.1)


def assert_alive_and_answering(worker: WorkerProcess) -> None:
    """No worker death: the process runs and its /metrics answers."""
    assert worker.alive(), f"worker exited with {worker.proc and worker.proc.returncode}"
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as resp:
        assert b"flashsale_events_processed_total" in resp.read()


def verify(settings: Settings) -> dict[str, Any]:
    """`flashsale verify`'s verdict on the run: the summary, differences under "differences"."""
    run = verify_live(settings, settings.bootstrap_servers or "")
    result = asyncio.run(asyncio.wait_for(run, 60))
    return {**result.summary, "differences": result.differences}
