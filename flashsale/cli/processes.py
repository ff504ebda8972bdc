"""Processes the CLI starts (broker, workers), each stopped on exit, Ctrl-C and parent death."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from flashsale.apache_kafka import KafkaCluster
from flashsale.broker import BrokerError, EmbeddedBroker, die_with_parent, stop_process
from flashsale.kafka import end_offsets, ensure_run_topics
from flashsale.scenario import Scenario
from flashsale.settings import Settings

__all__ = [
    "WorkerProcess",
    "bootstrap_for",
    "broker_for",
    "describe_broker",
    "free_port",
    "group_totals",
    "prepare_run",
    "settings_on",
    "start_gateway",
    "unprocessed",
    "wait_drained",
    "wait_http",
]


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """`preferred` when it is free, else any free port on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers that will bind it do (aiohttp, Faust): a port whose last connections
        # linger in TIME_WAIT after a previous run is free for them, so it is free here.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, preferred or 0))
        except OSError:
            s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def bootstrap_for(settings: Settings, announce: bool = True) -> Iterator[str]:
    """The given bootstrap servers, or an embedded broker started for the block."""
    with broker_for(settings, announce) as (bootstrap, _):
        yield bootstrap


LocalBroker = EmbeddedBroker | KafkaCluster


def settings_on(settings: Settings, bootstrap: str) -> Settings:
    """`settings` on `bootstrap`, the servers `bootstrap_for` / `broker_for` gave: when the
    settings name none and the local broker is the embedded one, that is the broker
    started for them, and its defaults
    (`Settings.for_embedded_broker`) apply to every field not set explicitly. Resolve before
    spawning a process: children get their settings through `Settings.to_env()`."""
    embedded = not settings.bootstrap_servers and settings.local_broker == "embedded"
    base = settings.for_embedded_broker() if embedded else settings
    return base.model_copy(update={"bootstrap_servers": bootstrap})


@contextlib.contextmanager
def broker_for(
    settings: Settings, announce: bool = True
) -> Iterator[tuple[str, LocalBroker | None]]:
    """`bootstrap_for`, with the broker it started (None for the given servers): the
    embedded one, or a local Apache Kafka when `settings.local_broker` is `kafka`."""
    if settings.bootstrap_servers:
        yield settings.bootstrap_servers, None
        return
    if settings.local_broker == "kafka":
        cluster = KafkaCluster(
            nodes=settings.kafka_nodes,
            host=settings.web_host,
            say=lambda line: print(line, flush=True),
        )
        with cluster:
            if announce:
                print(f"bootstrap={cluster.bootstrap}", flush=True)
            yield cluster.bootstrap, cluster
        return
    if settings.security_protocol != "PLAINTEXT":
        raise BrokerError(
            f"security_protocol {settings.security_protocol} needs --bootstrap-servers: the "
            "embedded broker speaks PLAINTEXT only"
        )
    broker = EmbeddedBroker(
        binary=settings.tansu_bin,
        host=settings.web_host,
        start_timeout_s=settings.broker_start_timeout_s,
    )
    with broker:
        if announce:
            print(f"bootstrap={broker.bootstrap}", flush=True)
        yield broker.bootstrap, broker


def describe_broker(broker: LocalBroker | None) -> str:
    """What a run's `broker:` line says about the broker it runs on."""
    if isinstance(broker, KafkaCluster):
        nodes = f"{broker.size} node{'s' if broker.size > 1 else ''}"
        return f"Apache Kafka {broker.version}, {nodes}, on disk in a temporary folder"
    if isinstance(broker, EmbeddedBroker):
        return "embedded Tansu, memory storage"
    return "external"


class WorkerProcess:
    """`flashsale worker` as a child process on its own web port, run with `settings`."""

    def __init__(self, settings: Settings, web_port: int, log_path: Path | None = None) -> None:
        if not settings.bootstrap_servers:
            raise ValueError("a worker process needs bootstrap servers")
        self.settings = settings
        self.web_port = web_port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the worker's web server."""
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        """Spawn the worker."""
        env = {**os.environ, **self.settings.to_env()}
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flashsale", "worker", "--web-port", str(self.web_port)],
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


def prepare_run(settings: Settings, bootstrap: str, scenario: Scenario) -> Settings:
    """The settings of one run of `scenario` on `bootstrap` (`settings_on`, the scenario's
    window grace, the topics' replication resolved), with the run's topics created."""
    run = settings_on(settings, bootstrap).model_copy(
        update={"window_grace_s": scenario.window_grace_s}
    )
    return asyncio.run(ensure_run_topics(run, bootstrap))


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


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Block until `url` answers; `RuntimeError` when `proc` exits first, `TimeoutError`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own loopback URL
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer in {timeout_s:.0f} s") from None
            time.sleep(0.2)


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
            "flashsale",
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
