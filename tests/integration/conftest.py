"""Fixtures of the integration tests: workers started for this test's topics."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flashsale.brokers.embedded import TansuNotFound, find_tansu
from flashsale.kafka.admin import ensure_run_topics
from flashsale.processes import free_port
from flashsale.settings import Settings
from streams.process import WorkerProcess
from tests.conftest import skip_or_fail

StartWorker = Callable[..., WorkerProcess]


@contextlib.contextmanager
def worker_starter(settings: Settings, workdir: Path) -> Iterator[StartWorker]:
    """A function starting workers with `settings` (waiting until ready unless told not to,
    through Faust's command line if told to, `overrides` changing some settings); every
    worker it started is stopped on exit."""
    started: list[WorkerProcess] = []

    def start(wait: bool = True, faust_cli: bool = False, **overrides: object) -> WorkerProcess:
        mine = settings.model_copy(update=overrides) if overrides else settings
        log = workdir / f"worker-{len(started)}.log"
        worker = WorkerProcess(mine, free_port(), log_path=log, faust_cli=faust_cli)
        worker.start()
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture
def start_worker(run_settings: Settings, tmp_path: Path) -> Iterator[StartWorker]:
    """Start workers for this test's topics; all are stopped at the end."""
    asyncio.run(ensure_run_topics(run_settings, run_settings.bootstrap_servers or ""))
    with worker_starter(run_settings, tmp_path) as start:
        yield start


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RUN_DIR captured by a real `flashsale demo --duration 8 --record RUN_DIR` (its own
    embedded broker and worker). The demo's live run summary is `demo-summary.json` beside it,
    its output `demo.log`."""
    try:
        find_tansu()
    except TansuNotFound as exc:
        skip_or_fail(str(exc))
    base = tmp_path_factory.mktemp("recorded")
    run_dir = base / "run"
    log = base / "demo.log"
    with log.open("wb") as out:
        rc = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestration",
                "demo",
                "--duration",
                "8",
                "--record",
                str(run_dir),
                "--summary-json",
                str(base / "demo-summary.json"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=240,
        ).returncode
    assert rc == 0, f"flashsale demo --record failed ({rc}):\n{log.read_text()[-3000:]}"
    return run_dir
