"""`flashsale loadtest`: real headless locust runs against the gateway and against Kafka."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flashsale.processes import free_port
from tests.conftest import TestBroker

pytestmark = pytest.mark.integration


def _loadtest(
    broker: TestBroker, tmp_path: Path, target: str, *extra: str
) -> subprocess.Popen[str]:
    # Ports of its own too: two runs at once must not both take the default ones.
    settings = broker.fresh_settings().model_copy(
        update={"web_port": free_port(), "gateway_port": free_port()}
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestration",
            "loadtest",
            "--target",
            target,
            "--duration",
            "20",
            "--html",
            str(tmp_path / f"{target}.html"),
            "--csv",
            str(tmp_path / target),
            "--bootstrap-servers",
            broker.bootstrap,
            *extra,
        ],
        env={**os.environ, **broker.env(), **settings.to_env(), "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_twenty_second_runs_against_the_gateway_and_kafka_reconcile(
    broker: TestBroker, tmp_path: Path
) -> None:
    # Both at once: each has its own topics, consumer group and ports.
    runs = {
        # Locust's master and two worker processes: the distributed path, on one machine.
        "gateway": _loadtest(broker, tmp_path, "gateway", "--users", "10", "--processes", "2"),
        "kafka": _loadtest(
            broker, tmp_path, "kafka", "--users", "2", "--shape", "constant", "--rate", "2000"
        ),
    }
    outputs = {}
    for target, proc in runs.items():
        out, _ = proc.communicate(timeout=400)
        outputs[target] = out
        (tmp_path / f"{target}.out").write_text(out)  # kept for a failure's post-mortem
        assert proc.returncode == 0, out[-4000:]
    for target, out in outputs.items():
        assert "reconciled                     │ true" in out, out[-3000:]
        assert "locust exit code               │ 0" in out
        assert (tmp_path / f"{target}.html").stat().st_size > 10_000
        with (tmp_path / f"{target}_stats.csv").open() as fh:
            rows = {row["Name"]: row for row in csv.DictReader(fh)}
        total = rows["Aggregated"]
        assert int(total["Request Count"]) > 0, out[-3000:]
        assert int(total["Failure Count"]) == 0
        assert "locust failures                │ 0" in out, out[-3000:]
    # What the gateway accepted is what reached the topic and the worker.
    accepted = re.search(r"orders accepted by the gateway │ ([\d,]+)", outputs["gateway"])
    assert accepted is not None and int(accepted.group(1).replace(",", "")) > 0
