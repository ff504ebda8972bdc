"""The processes of a run besides its workers: its topics prepared, a checkout gateway as a
child process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flashsale.brokers.local import settings_on
from flashsale.kafka.admin import ensure_run_topics
from flashsale.processes import die_with_parent, stop_process, wait_http
from flashsale.scenario import Scenario
from flashsale.settings import Settings

__all__ = ["GatewayProcess", "prepare_run", "start_gateway"]


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
        stdout=(workdir / "gateway.log").open("ab"),
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(),
    )
    try:
        wait_http(f"http://{host}:{port}/healthz", gateway, 60)
    except (RuntimeError, TimeoutError) as exc:
        stop_process(gateway, 5.0)
        raise RuntimeError(f"the gateway did not start ({exc})") from None
    return gateway


class GatewayProcess:
    """`flashsale gateway` as a child process that can be stopped, killed and started again
    with the same arguments (`start_gateway`'s), as a fault timeline does."""

    def __init__(self, *args: Any) -> None:
        self._args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it answers on /healthz."""
        self.proc = start_gateway(*self._args)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self.proc.pid if self.alive() and self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc is not None:
            stop_process(self.proc, 15.0)
