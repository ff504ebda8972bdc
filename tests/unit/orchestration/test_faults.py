"""The fault runner without a cluster: which timelines a run refuses, the order and timing of
the actions on the scenario clock, and how recovery is judged from the samples."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from flashsale.scenario import load_scenario, parse_scenario
from flashsale.settings import Settings
from orchestration.faults import FaultError, FaultRunner, Sample, check_faults
from tests.paths import ROOT


def _scenario(*faults: dict[str, Any], compression: float = 1.0) -> Any:
    return parse_scenario(
        {"name": "t", "faults": list(faults), "scale": {"compression": compression}}, "t.yaml"
    )


KILL_LEADER = {"at": 26, "action": "kill", "target": "broker-leader-of:orders/0", "for": "10s"}
CUT = {"at": 26, "action": "partition", "target": "broker-2", "for": "10s"}


@pytest.mark.parametrize(
    ("fault", "run", "message"),
    [
        (KILL_LEADER, {"broker": "embedded"}, "the embedded broker keeps its data in memory only"),
        (KILL_LEADER, {"broker": "external"}, "not flashsale's to break"),
        (KILL_LEADER, {"broker": "kafka", "nodes": 1}, "no replica to fail over to"),
        (CUT, {"broker": "kafka", "nodes": 3}, "--kafka-network namespaces"),
        ({**CUT, "target": "broker-4"}, {"broker": "kafka", "nodes": 3, "network": "namespaces"},
         "the cluster has 3 node(s)"),
        ({"at": 1, "action": "kill", "target": "worker-3"}, {"broker": "embedded", "workers": 2},
         "the run has 2 worker(s)"),
        ({"at": 1, "action": "kill", "target": "gateway"}, {"broker": "embedded"},
         "this run has no gateway"),
    ],
)  # fmt: skip
def test_a_timeline_the_run_cannot_carry_out_is_refused_in_one_line(
    fault: dict[str, Any], run: dict[str, Any], message: str
) -> None:
    with pytest.raises(FaultError) as err:
        check_faults(_scenario(fault), **run)
    assert message in str(err.value)
    assert str(err.value).startswith("fault ")
    assert "\n" not in str(err.value)


def test_a_timeline_the_run_can_carry_out_passes() -> None:
    scenario = _scenario(
        KILL_LEADER,
        CUT,
        {"at": 30, "action": "restart", "target": "brokers"},
        {"at": 40, "action": "stall", "target": "producer", "for": 2},
        {"at": 50, "action": "kill", "target": "worker-2"},
    )
    check_faults(scenario, broker="kafka", nodes=3, network="namespaces", workers=2)
    # Without broker faults, the embedded broker does.
    check_faults(_scenario({"at": 1, "action": "kill", "target": "worker-1"}), broker="embedded")


class FakeProc:
    def __init__(self) -> None:
        self.returncode: int | None = None
        self.pid = 0

    def poll(self) -> int | None:
        return self.returncode


class FakeWorker:
    """What the runner calls on a worker process, recorded with the time of each call."""

    def __init__(self, calls: list[tuple[str, float]]) -> None:
        self.calls = calls
        self.proc = FakeProc()

    def kill(self) -> None:
        self.calls.append(("kill", time.monotonic()))
        self.proc.returncode = -9

    def stop(self) -> None:
        self.calls.append(("stop", time.monotonic()))
        self.proc.returncode = 0

    def start(self) -> None:
        self.calls.append(("start", time.monotonic()))
        self.proc.returncode = None

    def alive(self) -> bool:
        return self.proc.returncode is None


def test_faults_happen_on_the_scenario_clock_and_are_undone_after_their_time() -> None:
    # 100 scenario seconds a wall second: at 20 s is 0.2 s after the start, for 10 s is 0.1 s.
    scenario = _scenario(
        {"at": 40, "action": "stall", "target": "producer", "for": "10s"},
        {"at": 20, "action": "kill", "target": "worker-1", "for": "10s"},
        compression=100,
    )
    calls: list[tuple[str, float]] = []
    worker = FakeWorker(calls)
    runner = FaultRunner(scenario, Settings(), workers=[worker])  # type: ignore[list-item]
    seen: dict[str, Any] = {}

    async def main() -> float:
        t0 = time.monotonic()
        task = asyncio.create_task(runner.run(t0))
        await asyncio.sleep(0.25)
        seen["down"] = set(runner.down_workers)
        await asyncio.sleep(0.2)  # 0.45 s: the producer is stalled (0.4 .. 0.5 s)
        gate = asyncio.create_task(runner.producer_gate())
        await asyncio.sleep(0.01)
        seen["gate_closed"] = not gate.done()
        await task
        await gate
        seen["gate_open_at"] = time.monotonic() - t0
        return t0

    t0 = asyncio.run(main())
    assert [name for name, _ in calls] == ["kill", "start"]
    assert calls[0][1] - t0 == pytest.approx(0.2, abs=0.05)
    assert calls[1][1] - t0 == pytest.approx(0.3, abs=0.05)
    assert seen["down"] == {0}
    assert runner.down_workers == set()
    assert seen["gate_closed"]
    assert seen["gate_open_at"] == pytest.approx(0.5, abs=0.06)
    log = runner.log()
    assert [(e["action"], e["resolved"]) for e in log] == [
        ("kill", "worker-1"),
        ("stall", "producer"),
    ]
    assert log[0]["started_s"] == pytest.approx(0.2, abs=0.05)
    assert log[0]["ended_s"] == pytest.approx(0.3, abs=0.05)


def test_undo_all_brings_back_what_is_still_down_when_the_producer_is_done() -> None:
    scenario = _scenario({"at": 0, "action": "kill", "target": "worker-1"})  # no `for`
    calls: list[tuple[str, float]] = []
    runner = FaultRunner(scenario, Settings(), workers=[FakeWorker(calls)])  # type: ignore[list-item]

    async def main() -> None:
        await runner.run(time.monotonic())
        assert runner.down_workers == {0}
        await runner.undo_all()

    asyncio.run(main())
    assert [name for name, _ in calls] == ["kill", "start"]
    assert runner.down_workers == set()
    assert runner.log()[0]["ended_s"] is not None


def _judged(samples: list[Sample], started: float = 10.0, ended: float = 20.0) -> dict[str, Any]:
    runner = FaultRunner(_scenario({"at": 10, "action": "kill", "target": "worker-1", "for": 10}),
                         Settings())  # fmt: skip
    record = runner.records[0]
    record.started_s, record.ended_s, record.target = started, ended, "worker-1"
    runner.samples = samples
    return runner.log()[0]


def _series(
    lags: Sequence[int | None], p99: float | None = 50.0, behind: float = 0.0
) -> list[Sample]:
    # One sample a second from t = 0, 100 events sent a second.
    return [Sample(float(t), lag, p99, 100 * t, behind) for t, lag in enumerate(lags)]


def test_recovered_when_the_lag_is_back_at_its_level_before_the_fault() -> None:
    lags = [500] * 5 + [1500] * 5 + [5000, 9000, None, 20000, 30000, 25000, 18000, 9000, 4000,
                                     2000, 1400, 1200, 800]  # fmt: skip
    entry = _judged(_series(lags))
    # Level before: the largest lag of 5..10 s is 1,500 (above the 1,000 floor); the fault
    # ends at 20 s, the lag is 1,400 then: recovered 10 s after the fault's start.
    assert entry["lag_before"] == 1500
    assert entry["recovered_after_s"] == 10.0
    assert entry["lag_max"] == 30000
    assert entry["p99_max_ms"] == 50.0
    assert entry["producer_behind_max_s"] == 0.0
    assert entry["events_delayed"] == 1000  # sent between 10 s and 20 s
    # With the lag still 2,000 when the fault ends, recovery waits for it to come down.
    lags[20] = 2000
    later = _judged(_series(lags))
    assert later["recovered_after_s"] == 11.0
    assert later["events_delayed"] == 1100


def test_not_recovered_while_the_p99_or_the_producer_is_still_behind() -> None:
    lags = [100] * 10 + [5000] * 10 + [0] * 10
    assert _judged(_series(lags, p99=2500.0))["recovered_after_s"] is None
    behind = _judged(_series(lags, behind=3.0))
    assert behind["recovered_after_s"] is None
    assert behind["producer_behind_max_s"] == 3.0
    # A quiet pipeline (no recent latency observations) with the lag at 0 has recovered.
    assert _judged(_series(lags, p99=None))["recovered_after_s"] == 10.0


def test_recovered_only_once_healthy_until_the_fault_ended() -> None:
    # Healthy again at 14 s, while the fault lasts until 25 s: recovered after 4 s.
    lags = [100] * 10 + [5000] * 4 + [100] * 16
    assert _judged(_series(lags), started=10, ended=25)["recovered_after_s"] == 4.0
    # Shaken again at 22 s, when the broker came back: recovered only after that.
    lags[22] = 8000
    assert _judged(_series(lags), started=10, ended=25)["recovered_after_s"] == 13.0
    # A fault nothing shows: recovered at once.
    assert _judged(_series([100] * 30), started=10, ended=25)["recovered_after_s"] == 0.0


def test_a_fault_that_failed_is_logged_with_its_error_and_no_recovery() -> None:
    runner = FaultRunner(_scenario(KILL_LEADER), Settings())
    record = runner.records[0]
    record.started_s, record.ended_s, record.error = 26.0, 26.0, "FaultError: no leader found"
    entry = runner.log()[0]
    assert entry["error"] == "FaultError: no leader found"
    assert entry["recovered_after_s"] is None


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "faults").glob("*.yaml")), ids=str)
def test_the_example_fault_scenarios_load_and_run_on_three_nodes(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.faults
    check_faults(scenario, broker="kafka", nodes=3, network="namespaces")
    # And each says how to run it.
    assert "flashsale demo --kafka --kafka-nodes 3" in path.read_text()


def test_the_producer_is_behind_by_the_schedule_it_has_not_sent() -> None:
    runner = FaultRunner(_scenario(KILL_LEADER, compression=2.0), Settings())
    runner._t0 = time.monotonic() - 10.0  # the run began 10 s ago
    # Sent up to scenario second 12 = wall second 6 of the schedule: 4 s behind.
    assert runner.behind(12.0) == pytest.approx(4.0, abs=0.1)
    assert runner.behind(21.0) == 0.0  # ahead (a block leaves early) counts as on time
    assert runner.behind(12.0, producing=False) == 0.0


def test_an_undo_under_way_when_the_timeline_is_cancelled_finishes_and_is_logged() -> None:
    # The worker's start takes 0.3 s (a broker's takes tens of seconds); the producer is done
    # and the timeline cancelled while it runs.
    scenario = _scenario({"at": 0, "action": "kill", "target": "worker-1", "for": 0.05})
    calls: list[tuple[str, float]] = []
    worker = FakeWorker(calls)
    start = worker.start

    def slow_start() -> None:
        time.sleep(0.3)
        start()

    worker.start = slow_start  # type: ignore[method-assign]
    runner = FaultRunner(scenario, Settings(), workers=[worker])  # type: ignore[list-item]

    async def main() -> None:
        task = asyncio.create_task(runner.run(time.monotonic()))
        await asyncio.sleep(0.15)  # the undo is under way
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.undo_all()

    asyncio.run(main())
    assert [name for name, _ in calls] == ["kill", "start"]
    entry = runner.log()[0]
    assert entry["ended_s"] is not None and entry["ended_s"] >= 0.3
    assert runner.down_workers == set()
