"""Running a scenario's fault timeline (`faults:` in the scenario file) on the scenario clock,
and judging each fault afterwards: when it started and ended, how long the pipeline took to
recover, how many events it delayed.

`demo`, `loadtest` and `soak` call `check_faults` before anything starts (a fault the run
cannot do is one line and exit 2), build a `FaultRunner` with what they started (the local
Apache Kafka cluster, the worker processes, the producer, the gateway), start `run()` beside the
producer, feed `observe()` a sample of lag and latency every half second, `undo_all()` when the
producer is done (a target killed or stopped for good is brought back, so the run drains and
verifies) and put `log()` in the run summary.

Recovered means: the consumer lag is back at its level before the fault (the largest lag of
the 5 seconds before it, or 1,000 messages, whichever is more), the end-to-end latency p99 of
the last seconds (the live dashboard's reading) is back under the fault's `recover_p99_ms`,
and the producer is back on its schedule (at most a second behind), all at once, and they
stay so at least until the fault ended (a leader replaced while its broker is still down
recovers before the broker is back). The time to recover is counted from the fault's start.
The events delayed are those the producer sent between the fault's start and
the recovery: each waited longer than it would have before the fault (unknown, null, when
locust is the producer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiokafka.admin import AIOKafkaAdminClient

from flashsale.brokers.apache import KafkaCluster
from flashsale.scenario import Scenario
from flashsale.scenario.faults import FaultSpec, FaultTarget
from flashsale.settings import Settings
from orchestration.faults.check import FaultError
from streams.process import WorkerProcess

__all__ = ["LAG_LEVEL_FLOOR", "FaultRunner", "Sample", "quorum_leader"]

T = TypeVar("T")

#: The one thread every action runs on. It lives as long as the process: a child started on
#: a thread gets its parent-death signal when that thread ends (PR_SET_PDEATHSIG follows the
#: thread, see prctl(2)), so a worker or broker started again by a fault must not be started
#: on a pool thread that asyncio shuts down with its loop.
_ACTIONS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fault-actions")


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on the actions thread."""
    return await asyncio.get_running_loop().run_in_executor(_ACTIONS, partial(fn, *args))


#: The lag below which a pipeline counts as caught up whatever it was before the fault.
LAG_LEVEL_FLOOR = 1000
#: How far behind its schedule the producer may be and the pipeline still count as recovered.
MAX_BEHIND_S = 1.0
#: Seconds before a fault whose largest lag is its "level before".
BEFORE_S = 5.0


class Restartable(Protocol):
    """A gateway as the runner drives it: a process to kill, stop and start again."""

    def alive(self) -> bool: ...
    def kill(self) -> None: ...
    def stop(self) -> None: ...
    def start(self) -> None: ...
    @property
    def pid(self) -> int | None: ...


@dataclass
class Sample:
    """One observation of the running pipeline, seconds after the run's start."""

    t_s: float
    lag: int | None
    p99_ms: float | None
    sent: int | None
    behind_s: float = 0.0


@dataclass
class FaultRecord:
    """What happened to one fault of the timeline."""

    spec: FaultSpec
    target: str = ""
    started_s: float | None = None
    ended_s: float | None = None
    #: The same moments on the wall clock (Unix seconds), for a recorded run's report.
    started_unix: float | None = None
    ended_unix: float | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)


def quorum_leader(cluster: KafkaCluster) -> int | None:
    """The active controller of a local cluster: the KRaft quorum's leader, read from the
    `quorum-state` file each node keeps (the newest epoch among running nodes wins)."""
    best: tuple[int, int] | None = None
    for node in cluster.nodes:
        if not node.alive():
            continue
        path = Path(node.data) / "logs" / "__cluster_metadata-0" / "quorum-state"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            doc = json.loads(path.read_text())
            epoch, leader = int(doc["leaderEpoch"]), int(doc["leaderId"])
            if leader > 0 and (best is None or epoch > best[0]):
                best = (epoch, leader)
    return None if best is None else best[1]


class FaultRunner:
    """Carries out a scenario's faults against the parts of one run."""

    def __init__(
        self,
        scenario: Scenario,
        settings: Settings,
        *,
        cluster: Any = None,
        workers: Sequence[WorkerProcess] = (),
        gateway: Restartable | None = None,
        sent: Callable[[], int] | None = None,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.faults = sorted(scenario.faults, key=lambda f: f.at)
        self.compression = scenario.scale.compression
        self.settings = settings
        self.cluster = cluster if isinstance(cluster, KafkaCluster) else None
        self.embedded = cluster is not None and self.cluster is None
        self.workers = list(workers)
        self.gateway = gateway
        self.sent = sent
        self.say = say
        self.records = [FaultRecord(f) for f in self.faults]
        self.samples: list[Sample] = []
        self.down_workers: set[int] = set()
        self._t0 = time.monotonic()
        self._producer_open = asyncio.Event()
        self._producer_open.set()
        self._undo: dict[int, Callable[[], None]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._undoing: set[asyncio.Future[None]] = set()
        self._lock = asyncio.Lock()

    # -- during the run ----------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the run's start."""
        return time.monotonic() - self._t0

    async def producer_gate(self) -> None:
        """Wait while the producer is stalled (the producer awaits it before each block)."""
        await self._producer_open.wait()

    def behind(self, scenario_s: float, producing: bool = True) -> float:
        """How far the producer is behind its schedule now, from the scenario time it has
        sent up to (`ProduceStats.scenario_s`): a producer stuck inside a send (its client
        waiting for a partition without a leader) falls behind while it sends nothing,
        which its own `behind_s`, updated between sends, does not show. 0 once it is done."""
        if not producing:
            return 0.0
        return max(0.0, self.now() - scenario_s / self.compression)

    def observe(self, lag: int | None, p99_ms: float | None, behind_s: float = 0.0) -> None:
        """One sample of the pipeline (the run's status loop calls it every half second):
        the consumer lag, the latency p99 of the last seconds, how far the producer is
        behind its schedule."""
        sent = self.sent() if self.sent is not None else None
        self.samples.append(Sample(round(self.now(), 3), lag, p99_ms, sent, behind_s))

    def marks(self) -> list[list[Any]]:
        """The faults so far for a time axis: [seconds ago it began (≤ 0), seconds ago it
        ended (None: still on), label], as the live dashboard draws them."""
        now = self.now()
        out: list[list[Any]] = []
        for record in self.records:
            if record.started_s is None:
                continue
            ended = None if record.ended_s is None else round(record.ended_s - now, 1)
            label = f"{record.spec.action} {record.target or record.spec.target}"
            out.append([round(record.started_s - now, 1), ended, label])
        return out

    async def run(self, t0: float) -> None:
        """Carry out every fault at its time on the scenario clock, counted from `t0` (a
        `time.monotonic()` value: the producer's scenario time 0)."""
        self._t0 = t0
        try:
            for i, spec in enumerate(self.faults):
                await asyncio.sleep(max(0.0, t0 + spec.at / self.compression - time.monotonic()))
                await self._begin(i)
            if self._pending:
                await asyncio.gather(*self._pending, return_exceptions=True)
        finally:
            for task in list(self._pending):
                task.cancel()

    async def _begin(self, i: int) -> None:
        record = self.records[i]
        spec = record.spec
        record.started_s = round(self.now(), 3)
        record.started_unix = round(time.time(), 3)
        try:
            async with self._lock:
                undo = await self._do(spec, record)
        except Exception as exc:  # a fault that could not be done is logged, not fatal
            record.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            record.ended_s, record.ended_unix = round(self.now(), 3), round(time.time(), 3)
            self.say(f"fault {spec.describe()} failed: {record.error}")
            return
        self.say(f"fault at {record.started_s:.1f} s: {spec.action} {record.target}")
        if undo is None:
            record.ended_s, record.ended_unix = round(self.now(), 3), round(time.time(), 3)
            return
        self._undo[i] = undo
        if spec.for_s is not None:
            task = asyncio.create_task(self._end_after(i, spec.for_s / self.compression))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _end_after(self, i: int, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._end(i)

    async def _end(self, i: int) -> None:
        undo = self._undo.pop(i, None)
        if undo is None:
            return
        # A task of its own, shielded: an undo under way (a broker starting again) finishes
        # and is logged even when the timeline is cancelled because the producer is done.
        task = asyncio.ensure_future(self._undo_one(i, undo))
        self._undoing.add(task)
        await asyncio.shield(task)

    async def _undo_one(self, i: int, undo: Callable[[], None]) -> None:
        record = self.records[i]
        try:
            async with self._lock:
                await _blocking(undo)
        except Exception as exc:
            record.error = f"undo: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        record.ended_s, record.ended_unix = round(self.now(), 3), round(time.time(), 3)
        self.say(f"fault over at {record.ended_s:.1f} s: {record.target} back")

    async def undo_all(self) -> None:
        """End every fault still in force and wait for every undo under way (the producer is
        done: the run must drain)."""
        for task in list(self._pending):
            task.cancel()
        for i in sorted(self._undo):
            await self._end(i)
        if self._undoing:
            await asyncio.gather(*self._undoing, return_exceptions=True)
        self._producer_open.set()

    # -- the actions -------------------------------------------------------------------

    async def _do(self, spec: FaultSpec, record: FaultRecord) -> Callable[[], None] | None:
        """Carry out `spec`; return how to undo it (None: nothing to undo)."""
        target = spec.parsed_target
        if target.kind == "producer":
            record.target = "producer"
            self._producer_open.clear()
            return self._producer_open.set
        if target.kind == "worker":
            return await _blocking(self._worker, spec, target, record)
        if target.kind == "gateway":
            assert self.gateway is not None
            record.target = "gateway"
            return await _blocking(self._process, spec, self.gateway)
        if target.kind == "brokers":
            record.target = "brokers (rolling)"
            await self._rolling_restart(record)
            return None
        node = await self._broker(target)
        record.target = f"broker-{node}"
        if target.role is not None:
            record.target += f" ({target})"
        return await _blocking(self._break_broker, spec.action, node)

    async def _broker(self, target: FaultTarget) -> int:
        """The node id a broker target names now."""
        assert self.cluster is not None
        if target.node is not None:
            return target.node
        if target.role == "controller":
            leader = await _blocking(quorum_leader, self.cluster)
            if leader is None:
                raise FaultError("no active controller found in the quorum state")
            return leader
        topic = self._topic(target.topic or "")
        admin = AIOKafkaAdminClient(bootstrap_servers=self.cluster.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        for part in described[0]["partitions"] if described else []:
            if part["partition"] == target.partition and part["leader"] >= 0:
                return int(part["leader"])
        raise FaultError(f"no leader found for {topic}/{target.partition}")

    def _topic(self, name: str) -> str:
        """The run's own topic for a default topic name (`orders` is the run's orders topic,
        whatever prefix the run gives it); any other name as written."""
        defaults = type(self.settings).model_fields
        for key, info in defaults.items():
            if key.startswith("topic_") and info.default == name:
                return str(getattr(self.settings, key))
        return name

    def _break_broker(self, action: str, node: int) -> Callable[[], None] | None:
        cluster = self.cluster
        assert cluster is not None
        if action == "kill":
            cluster.kill_node(node)
            return lambda: cluster.start_node(node)
        if action == "stop":
            cluster.stop_node(node)
            return lambda: cluster.start_node(node)
        if action == "restart":
            cluster.restart_node(node)
            return None
        if action == "partition":
            cluster.cut_node(node)
            return lambda: cluster.heal_node(node)
        cluster.pause_node(node)
        return lambda: cluster.resume_node(node)

    async def _rolling_restart(self, record: FaultRecord) -> None:
        """Restart every broker in turn, each once the previous one is back in every ISR."""
        assert self.cluster is not None
        for node in self.cluster.nodes:
            await _blocking(self.cluster.restart_node, node.node_id)
            took = await self._wait_in_sync()
            record.notes.append(f"broker-{node.node_id} back in sync after {took:.1f} s")

    async def _wait_in_sync(self, timeout_s: float = 120.0) -> float:
        """Seconds until every partition of every topic has all its replicas in sync."""
        assert self.cluster is not None
        started = time.monotonic()
        last: Exception | None = None
        while time.monotonic() - started < timeout_s:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.cluster.bootstrap)
            try:
                await admin.start()
                topics = await admin.list_topics()
                described = await admin.describe_topics(topics)
                if all(
                    len(p["isr"]) == len(p["replicas"]) for t in described for p in t["partitions"]
                ):
                    return time.monotonic() - started
            except Exception as exc:  # a node coming back: ask again
                last = exc
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()
            await asyncio.sleep(0.5)
        raise FaultError(f"replicas not back in sync after {timeout_s:.0f} s (last: {last!r})")

    def _worker(
        self, spec: FaultSpec, target: FaultTarget, record: FaultRecord
    ) -> Callable[[], None] | None:
        index = (target.index or 1) - 1
        worker = self.workers[index]
        record.target = f"worker-{index + 1}"
        if spec.action in ("kill", "stop"):
            self.down_workers.add(index)

            def back() -> None:
                worker.start()
                self.down_workers.discard(index)

            (worker.kill if spec.action == "kill" else worker.stop)()
            return back
        if spec.action == "restart":
            self.down_workers.add(index)
            worker.stop()
            worker.start()
            self.down_workers.discard(index)
            return None
        proc = worker.proc
        if proc is None or proc.poll() is not None:
            raise FaultError(f"worker-{index + 1} is not running")
        return _pause(proc.pid)

    def _process(self, spec: FaultSpec, proc: Restartable) -> Callable[[], None] | None:
        if spec.action == "kill":
            proc.kill()
            return proc.start
        if spec.action == "stop":
            proc.stop()
            return proc.start
        if spec.action == "restart":
            proc.stop()
            proc.start()
            return None
        if proc.pid is None:
            raise FaultError("the process is not running")
        return _pause(proc.pid)

    # -- after the run -----------------------------------------------------------------

    def log(self) -> list[dict[str, Any]]:
        """Per fault: what, when (seconds after the run's start), the time to recover and
        the events delayed; the run summary's `faults`."""
        out = []
        for record in self.records:
            spec = record.spec
            entry: dict[str, Any] = {
                "at_s": spec.at,
                "action": spec.action,
                "target": spec.target,
                "resolved": record.target or None,
                "for_s": spec.for_s,
                "started_s": record.started_s,
                "ended_s": record.ended_s,
                "started_unix_s": record.started_unix,
                "ended_unix_s": record.ended_unix,
            }
            entry.update(self._recovery(record))
            if record.notes:
                entry["notes"] = record.notes
            if record.error:
                entry["error"] = record.error
            out.append(entry)
        return out

    def _recovery(self, record: FaultRecord) -> dict[str, Any]:
        if record.started_s is None or record.error:
            return dict.fromkeys(
                ("recovered_after_s", "lag_before", "lag_max", "p99_max_ms",
                 "producer_behind_max_s", "events_delayed"),
            )  # fmt: skip
        start = record.started_s
        end = record.ended_s if record.ended_s is not None else start
        before = [s.lag for s in self.samples if start - BEFORE_S <= s.t_s < start and s.lag]
        level = max([LAG_LEVEL_FLOOR, *before])
        during = [s for s in self.samples if s.t_s >= start]
        bound = record.spec.recover_p99_ms

        def healthy(s: Sample) -> bool:
            return (
                s.lag is not None
                and s.lag <= level
                and s.behind_s <= MAX_BEHIND_S
                and (s.p99_ms is None or s.p99_ms <= bound)
            )

        # The first moment from which the pipeline stays healthy at least until the fault
        # ended: a killed leader replaced while its broker is still down counts from then,
        # a healed broker that shakes things up again when it comes back does not.
        recovered = None
        for i, s in enumerate(during):
            if healthy(s) and all(healthy(x) for x in during[i:] if x.t_s <= end):
                recovered = s
                break
        sent_at_start = during[0].sent if during else None
        until = recovered or (during[-1] if during else None)
        upto = until.t_s if until is not None else float("inf")
        window = [s for s in during if s.t_s <= upto]
        lags = [s.lag for s in window if s.lag is not None]
        p99s = [s.p99_ms for s in window if s.p99_ms is not None]
        return {
            "recovered_after_s": None if recovered is None else round(recovered.t_s - start, 1),
            "lag_before": max(before, default=0),
            "lag_max": max(lags, default=None),
            "p99_max_ms": max(p99s, default=None),
            "producer_behind_max_s": round(max((s.behind_s for s in window), default=0.0), 1),
            "events_delayed": (
                None
                if until is None or until.sent is None or sent_at_start is None
                else max(until.sent - sent_at_start, 0)
            ),
        }


def _pause(pid: int) -> Callable[[], None]:
    """SIGSTOP `pid`; return the SIGCONT that resumes it."""
    os.kill(pid, signal.SIGSTOP)

    def resume() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    return resume
