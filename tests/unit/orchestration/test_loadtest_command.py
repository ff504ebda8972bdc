"""`flashsale loadtest`'s command line: its checks, and locust's command line it builds, with
what follows `--` passed through unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loadtests import LOCUSTFILE
from loadtests.options import LoadOptions
from orchestration.loadtest import locust_argv


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--events", "5"), "--events"),
        (("--target", "kafka", "--events", "0"), "--events"),
        (("--processes", "2", "--", "--master", "--expect-workers", "2"), "--master"),
        (("--target", "kafka", "--processes", "3", "--users", "2"), "--users"),
        # Before `--`, an unknown option is still one.
        (("--frobnicate", "--", "--headless"), "--frobnicate"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args: tuple[str, ...], named: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestration", "loadtest", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("flashsale: error:")
    assert named in line


def test_locust_gets_the_user_class_our_arguments_then_the_callers_unchanged() -> None:
    load = LoadOptions(shape="constant", users=4, events=30_000, topic="orders-1")
    passed = ["--master", "--expect-workers", "2", "--stop-timeout", "30", "--tags", "a b"]
    argv = locust_argv(load, "kafka", "http://h:1", Path("r.html"), "/tmp/s", 1, passed)
    assert argv[:6] == [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "KafkaOrdersUser"]
    # What follows `--` comes last, as given: a repeated option (--stop-timeout) overrides ours.
    assert argv[-len(passed) :] == passed
    ours = argv[6 : -len(passed)]
    assert ours[ours.index("--flashsale-events") + 1] == "30000"
    assert ours[ours.index("--flashsale-topic") + 1] == "orders-1"
    assert ours[ours.index("--csv") + 1] == "/tmp/s"
    assert "--processes" not in ours


def test_local_worker_processes_are_workers_of_a_master_on_a_port_of_the_runs_own() -> None:
    from orchestration.loadtest import locust_worker_argv

    argv = locust_argv(LoadOptions(), "gateway", "http://h:1", None, "/tmp/s", 3, [], 45678)
    assert argv[5] == "ShopperUser"
    assert "--processes" not in argv  # no forks of the master: processes of their own
    assert argv[argv.index("--expect-workers") + 1] == "3"
    assert "--master" in argv and argv[argv.index("--master-bind-port") + 1] == "45678"
    worker = locust_worker_argv(45678)
    assert worker[-5:] == ["--worker", "--master-host", "127.0.0.1", "--master-port", "45678"]
    # One process: no master, no workers.
    alone = locust_argv(LoadOptions(), "gateway", "http://h:1", None, "/tmp/s", 1, [])
    assert "--master" not in alone and "--expect-workers" not in alone
    # What follows `--` comes last: remote workers besides the local ones.
    more = locust_argv(
        LoadOptions(), "kafka", "http://h:1", None, "/tmp/s", 2, ["--expect-workers", "6"], 1
    )
    assert more[-2:] == ["--expect-workers", "6"]


def test_stopping_locust_stops_the_workers_it_forked_too() -> None:
    from orchestration.loadtest import _stop_group

    # A parent that ignores SIGTERM (as locust's master may be busy) and the child it forked.
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = os.fork()\n"
        "if child:\n"
        "    print(child, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    _stop_group(proc, 1.0)
    assert proc.returncode is not None
    # Gone, or dead and waiting for init to reap it.
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"


def test_locusts_count_of_order_events_must_be_the_topics() -> None:
    from orchestration.loadtest import kafka_disagreement

    assert kafka_disagreement(30_000, 30_000) is None
    # A worker's statistics lost on the way to its master: the run must not pass as counted.
    lost = kafka_disagreement(0, 30_000)
    assert lost is not None and "0 order events sent, the topic holds 30,000" in lost
    assert "heartbeats" in lost
    more = kafka_disagreement(30_001, 30_000)
    assert more is not None and "holds only 30,000" in more


def test_the_gateway_may_accept_one_unanswered_checkout_per_user_never_fewer() -> None:
    from orchestration.loadtest import gateway_disagreement

    assert gateway_disagreement(100, 100, 10) is None
    assert gateway_disagreement(100, 110, 10) is None  # ten checkouts cut off at the end
    over = gateway_disagreement(100, 111, 10)
    assert over is not None and "100 successful checkouts, the gateway accepted 111" in over
    assert gateway_disagreement(0, 50, 10) is not None  # locust's statistics lost
    assert gateway_disagreement(100, 99, 10) is not None
    assert gateway_disagreement(100, None, 10) == "the gateway's /metrics did not answer"
