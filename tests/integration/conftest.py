"""Fixtures of the integration tests: workers started for this test's topics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flashsale.cli.processes import WorkerProcess, free_port
from flashsale.kafka import ensure_run_topics
from flashsale.settings import Settings

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(run_settings: Settings, tmp_path: Path) -> Iterator[StartWorker]:
    """Start workers for this test's topics (waiting until ready unless told not to); all
    are stopped at the end."""
    started: list[WorkerProcess] = []
    asyncio.run(ensure_run_topics(run_settings, run_settings.bootstrap_servers or ""))

    def start(wait: bool = True, **overrides: object) -> WorkerProcess:
        """`overrides`: settings of this worker that differ from the test's (same topics)."""
        settings = run_settings.model_copy(update=overrides) if overrides else run_settings
        worker = WorkerProcess(
            settings, free_port(), log_path=tmp_path / f"worker-{len(started)}.log"
        )
        worker.start()
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
