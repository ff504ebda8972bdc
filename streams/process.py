"""A worker as a child process (`flashsale worker`), as the demo, the load test, the soak and
the bench start one: its `/totals`, waiting for it to be ready or to drain `orders`, stopping
it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from flashsale.kafka.reading import end_offsets
from flashsale.processes import die_with_parent, stop_process
from flashsale.settings import Settings

__all__ = ["WorkerProcess", "group_totals", "unprocessed", "wait_drained", "wait_group_ready"]


class WorkerProcess:
    """`flashsale worker` as a child process on its own web port, run with `settings`; or,
    `faust_cli`, the same worker through Faust's own command line
    (`faust -A streams.faust_app worker`)."""

    def __init__(
        self,
        settings: Settings,
        web_port: int,
        log_path: Path | None = None,
        faust_cli: bool = False,
    ) -> None:
        if not settings.bootstrap_servers:
            raise ValueError("a worker process needs bootstrap servers")
        self.settings = settings
        self.web_port = web_port
        self.log_path = log_path
        self.faust_cli = faust_cli
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the worker's web server."""
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        """Spawn the worker."""
        env = {**os.environ, **self.settings.to_env()}
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        command = (
            ["-m", "faust", "-A", "streams.faust_app", "worker", "-l", "warn"]
            if self.faust_cli
            else ["-m", "orchestration", "worker"]
        )
        try:
            self.proc = subprocess.Popen(
                [sys.executable, *command, "--web-port", str(self.web_port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent(),
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]

    def totals(self) -> dict[str, Any]:
        """The worker's `/totals` view, or {} while it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.url}/totals", timeout=2) as resp:  # noqa: S310
                doc: dict[str, Any] = orjson.loads(resp.read())
                return doc
        except (OSError, ValueError):
            return {}

    def wait_ready(self, timeout_s: float = 90.0) -> float:
        """Block until the worker holds partitions; return the seconds it took."""
        started = time.monotonic()
        while not self.totals().get("ready"):
            if not self.alive():
                raise RuntimeError(f"worker exited with {self.proc and self.proc.returncode}")
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"worker not ready in {timeout_s:.0f}s")
            time.sleep(0.2)
        return time.monotonic() - started

    def wait_drained(self, timeout_s: float = 120.0) -> None:
        """Block until the worker has applied, durably, everything now on the orders topic."""
        wait_drained([self], self.settings, timeout_s)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`. A worker ends itself within 8 s of the
        signal even when Kafka cannot be reached (`streams.worker.STOP_DEADLINE_S`), so the
        SIGKILL is for one that could not even do that."""
        if self.proc is not None:
            stop_process(self.proc, timeout_s)


def group_totals(workers: Sequence[WorkerProcess]) -> dict[str, Any]:
    """The `/totals` of several workers as one: each partition from the worker whose durable
    state of it is newest (during a rebalance two may report it), sums over those."""
    newest: dict[int, dict[str, Any]] = {}
    settled = True
    answered = False
    for worker in workers:
        if not worker.alive():
            continue
        doc = worker.totals()
        if not doc:
            settled = False
            continue
        answered = True
        settled = settled and bool(doc.get("settled", doc.get("ready")))
        for part in doc.get("partitions", []):
            held = newest.get(part["partition"])
            if held is None or part["last_offset"] > held["last_offset"]:
                newest[part["partition"]] = part
    parts = [newest[p] for p in sorted(newest)]
    body: dict[str, Any] = {"ready": answered and settled and bool(parts), "partitions": parts}
    for name in {k for part in parts for k, v in part.items() if isinstance(v, int)}:
        if name not in ("partition", "last_offset"):
            body[name] = sum(part.get(name, 0) for part in parts)
    body["sold_out_skus"] = body.pop("sold_out", 0)
    return body


def wait_drained(
    workers: Sequence[WorkerProcess], settings: Settings, timeout_s: float = 120.0
) -> None:
    """Block until the live workers together have applied, durably, all of topic `orders`."""
    deadline = time.monotonic() + timeout_s
    bootstrap = settings.bootstrap_servers or ""
    while True:
        ends = asyncio.run(end_offsets(bootstrap, settings.topic_orders, settings))
        if unprocessed(group_totals(workers), ends) == 0:
            return
        if not any(w.alive() for w in workers):
            raise RuntimeError("no worker is running")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers did not drain the orders topic in {timeout_s:.0f}s")
        time.sleep(0.2)


def unprocessed(totals: dict[str, Any], ends: dict[int, int]) -> int | None:
    """Messages below the end offsets `ends` that the worker has not applied (None: unknown)."""
    applied = {p["partition"]: p["last_offset"] for p in totals.get("partitions", [])}
    if not applied or not totals.get("ready"):
        return None
    return sum(max(end - (applied.get(p, -1) + 1), 0) for p, end in ends.items())


def wait_group_ready(group: list[WorkerProcess], partitions: int, timeout_s: float) -> float:
    """Block until the workers together hold every partition, settled; the seconds it took."""
    started = time.monotonic()
    while True:
        totals = group_totals(group)
        if totals["ready"] and len(totals["partitions"]) >= partitions:
            return time.monotonic() - started
        dead = [w for w in group if not w.alive()]
        if dead:
            raise RuntimeError(f"a worker exited with {dead[0].proc and dead[0].proc.returncode}")
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"workers not ready in {timeout_s:.0f}s")
        time.sleep(0.2)
