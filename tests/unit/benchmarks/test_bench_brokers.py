"""`flashsale bench` on each broker: which halves run, what is skipped, how peers are judged.

The stages themselves are replaced by a stub here; tests/integration/benchmarks/test_bench.py
runs them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks import bench
from flashsale.brokers.apache import KafkaToolMissing
from flashsale.settings import Settings


def _stage(ours: float) -> dict[str, Any]:
    return bench._stage(ours, 2 * ours, "a bare loop")


def _fake_stages(
    label: str, settings: Settings, bootstrap: str, sizes: bench.Sizes, workdir: Path
) -> dict[str, dict[str, Any]]:
    per_order = {**_stage(100), "vs_stream": 4.0, "cpu_us_per_event": 30.0}
    return {
        "generate": _stage(10),
        "process_stream": {**_stage(25), "cpu_us_per_event": 120.0},
        "process_per_order": per_order,
        "bytewax_per_sku": {**_stage(50), "correct": True},
        "process_packed": {
            **_stage(1000),
            "steady_per_s": 1100.0,
            "cpu_us_per_event": 3.0,
            "compiled": True,
        },
        "session_timeout_s": {"value": settings.session_timeout_s},  # type: ignore[dict-item]
    }


@pytest.fixture
def no_java(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The embedded broker "starts" (no process), a local Kafka cannot (no Java); the stages
    are stubbed."""
    started: list[str] = []

    @contextlib.contextmanager
    def broker_for(settings: Settings, announce: bool = True) -> Iterator[tuple[str, None]]:
        if settings.bootstrap_servers:  # as the real one: the given servers, nothing started
            yield settings.bootstrap_servers, None
            return
        if settings.local_broker == "kafka":
            raise KafkaToolMissing("java not found; install it")
        started.append(settings.local_broker)
        yield "127.0.0.1:1", None

    monkeypatch.setattr(bench, "broker_for", broker_for)
    monkeypatch.setattr(bench, "_bench_stages", _fake_stages)
    monkeypatch.setattr(bench, "_print_broker", lambda *args: None)
    return started


def test_without_java_the_kafka_half_is_skipped_with_a_reason(
    no_java: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert bench.run_bench(Settings(), quick=True, json_path=out) == 0
    assert no_java == ["embedded"]
    doc = orjson.loads(out.read_bytes())
    assert set(doc["embedded"]["stages"]) >= {"generate", "process_per_order"}
    assert "kafka" not in doc
    assert doc["skipped"] == {"kafka": "java not found; install it"}
    assert "kafka skipped: java not found" in capsys.readouterr().out


def test_kafka_only_without_java_is_a_one_line_error(
    no_java: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.run_bench(Settings(), quick=True, brokers=("kafka",)) == 2
    assert no_java == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["flashsale: error: java not found; install it"]


def test_given_servers_are_the_only_broker_measured(
    no_java: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def stages(label: str, settings: Settings, bootstrap: str, *rest: Any) -> Any:
        seen.append(bootstrap)
        return _fake_stages(label, settings, bootstrap, *rest)

    monkeypatch.setattr(bench, "_bench_stages", stages)
    out = tmp_path / "bench.json"
    settings = Settings(bootstrap_servers="10.0.0.1:9092")
    assert bench.run_bench(settings, quick=True, json_path=out) == 0
    assert seen == ["10.0.0.1:9092"]
    doc = orjson.loads(out.read_bytes())
    assert "embedded" not in doc
    assert "kafka" not in doc
    # A stock Kafka refuses sessions under 6 s: the bench asks for 10 on a server it did not
    # start itself.
    assert doc["external"]["stages"]["session_timeout_s"]["value"] >= 6


def test_a_peer_with_a_wrong_sum_is_flagged() -> None:
    expected = {"SKU-1": 500, "SKU-2": 0}
    right = bench._peer_stage(
        {"events": 10, "revenue": dict(expected), "seconds": 1.0}, 10, expected, 20.0, "bare"
    )
    assert right["correct"] is True
    assert right["ours_per_s"] == 10.0
    assert right["paid_cents"] == 500
    wrong = bench._peer_stage(
        {"events": 10, "revenue": {"SKU-1": 499, "SKU-2": 0}, "seconds": 1.0},
        10,
        expected,
        20.0,
        "bare",
    )
    assert wrong["correct"] is False
    assert wrong["wrong_skus"] == 1
    short = bench._peer_stage(
        {"events": 9, "revenue": dict(expected), "seconds": 1.0}, 10, expected, 20.0, "bare"
    )
    assert short["correct"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker", "tansu"], "'tansu' is not one of embedded, kafka, both"),
        (["--broker", "kafka", "--bootstrap-servers", "127.0.0.1:9"], "with --bootstrap-servers"),
    ],
)
def test_bad_broker_choice_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLASHSALE_BOOTSTRAP_SERVERS"}
    run = subprocess.run(
        [sys.executable, "-m", "orchestration", "bench", "--quick", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]
