"""The processes of a run besides its workers: its topics prepared, a checkout gateway as a
child process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from flashsale.brokers.local import settings_on
from flashsale.kafka.admin import ensure_run_topics
from flashsale.processes import die_with_parent, stop_process, wait_http
from flashsale.scenario import Scenario
from flashsale.settings import Settings

__all__ = ["prepare_run", "start_gateway"]


def prepare_run(settings: Settings, bootstrap: str, scenario: Scenario) -> Settings:
    """The settings of one run of `scenario` on `bootstrap` (`settings_on`, the scenario's
    window grace, the topics' replication resolved), with the run's topics created."""
    run = settings_on(settings, bootstrap).model_copy(
        update={"window_grace_s": scenario.window_grace_s}
    )
    return asyncio.run(ensure_run_topics(run, bootstrap))


def start_gateway(
    bootstrap: str,
    worker_url: str,
    scenario_file: Path,
    host: str,
    port: int,
    env: Mapping[str, str],
    workdir: Path,
    *extra: str,
) -> subprocess.Popen[bytes]:
    """`flashsale gateway` as a child process (log in `workdir/gateway.log`), answering on
    `/healthz`; `RuntimeError` when it does not start."""
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestration",
            "gateway",
            "--bootstrap-servers",
            bootstrap,
            "--worker",
            worker_url,
            "--scenario",
            str(scenario_file),
            "--port",
            str(port),
            "--host",
            host,
            *extra,
        ],
        env=dict(env),
        stdout=(workdir / "gateway.log").open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(),
    )
    try:
        wait_http(f"http://{host}:{port}/healthz", gateway, 60)
    except (RuntimeError, TimeoutError) as exc:
        stop_process(gateway, 5.0)
        raise RuntimeError(f"the gateway did not start ({exc})") from None
    return gateway
