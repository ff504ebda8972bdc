"""The locustfile under real locust, in processes of their own (importing locust patches the
process with gevent): its arguments' checks, and the statistics of a block of order events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from loadtests import locust_command
from tests.paths import ROOT


def _locust(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    return subprocess.run(
        locust_command("--headless", "-t", "1s", *args, "KafkaOrdersUser"),
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _run_python(code: str) -> dict[str, Any]:
    """`code` in a Python process of its own (locust patches whoever imports it); the JSON
    object it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return got


def _errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if "/ERROR/" in line]


def test_a_bad_value_from_the_old_environment_variable_is_one_error_line_and_exit_2() -> None:
    done = _locust("--flashsale-bootstrap-servers", "127.0.0.1:1", FLASHSALE_LOADTEST_RATE="-5")
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = _errors(done)
    assert line.endswith("--flashsale-rate: -5 is not zero or a positive number")
    assert "Traceback" not in done.stderr


def test_kafka_users_without_a_kafka_stop_before_anything_starts() -> None:
    done = _locust("--flashsale-rate", "100")
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = _errors(done)
    assert "--flashsale-bootstrap-servers or FLASHSALE_BOOTSTRAP_SERVERS" in line


_RECORD = """
import json
from locust.env import Environment
from locust.stats import StatsEntry
from loadtests.kafka_orders import record, request_name
from loadtests.share import Settled

env = Environment()
name = request_name("orders")
record(env.stats, name, Settled(5_000, 0, 12.5, 1_500_000), "")
record(env.stats, name, Settled(3_000, 2, 40.0, 900_000), "Local: Message timed out")
# A worker's report, merged into a master's statistics.
master = Environment()
for data in env.stats.serialize_stats():
    master.stats.get(name, "kafka").extend(StatsEntry.unserialize(data, master.stats))
entry = master.stats.get(name, "kafka")
[error] = env.stats.errors.values()
print(json.dumps({
    "requests": entry.num_requests,
    "failures": entry.num_failures,
    "avg_ms": entry.avg_response_time,
    "max_ms": entry.max_response_time,
    "avg_bytes": entry.avg_content_length,
    "total": env.stats.total.num_requests,
    "occurrences": error.occurrences,
}))
"""


def test_a_settled_block_counts_as_its_order_events_in_locusts_statistics() -> None:
    stats = _run_python(_RECORD)
    assert stats == {
        "requests": 8_000,
        "failures": 2,
        "avg_ms": (5_000 * 12.5 + 3_000 * 40.0) / 8_000,
        "max_ms": 40.0,
        "avg_bytes": 300.0,
        "total": 8_000,
        "occurrences": 2,
    }


_WORKER_SETTINGS = """
import json
from locust import argument_parser, runners
import loadtests.locustfile  # what locust imports, in master and workers alike
first = argument_parser.default_args_dict()
print(json.dumps({
    "same": argument_parser.default_args_dict() is first,
    "options": len(first),
    "liveness": runners.HEARTBEAT_LIVENESS,
}))
"""


def test_a_worker_parses_locusts_defaults_once_and_its_master_waits_ten_heartbeats() -> None:
    # Locust's worker asks for its defaults once per option of every spawn message; each
    # answer built anew would block it for seconds on a loaded machine.
    got = _run_python(_WORKER_SETTINGS)
    assert got["same"] is True
    assert got["options"] > 40  # locust's own options, all of them
    assert got["liveness"] == 10


_SHAPE = """
import json
from loadtests.options import LoadOptions
from loadtests.shapes import SinglesDayShape
from flashsale.scenario.curves import Curve
from loadtests.options import scenario_of

day = LoadOptions(shape="singles-day", users=30)
flat = LoadOptions(shape="constant", users=30)
curve = Curve(scenario_of(day.scenario, day.seed))
print(json.dumps({
    "day": [SinglesDayShape.users_at(day, t) for t in range(0, 61, 10)],
    "flat": [SinglesDayShape.users_at(flat, t) for t in range(0, 61, 10)],
    "peak_s": curve.peak()[0],
    "at_peak": SinglesDayShape.users_at(day, curve.peak()[0]),
}))
"""


def test_the_singles_day_shape_climbs_to_its_users_at_the_curves_peak() -> None:
    got = _run_python(_SHAPE)
    # Singles' Day 2020's midnight rush: a tenth of the peak's users at 00:00, rising with the
    # curve; every user at the curve's peak, never more; at least one user throughout.
    # At 00:00, :10, :20 and :30 (just past the peak at 26 s), then the plateau after it.
    assert got["day"][:4] == [3, 7, 19, 30]
    assert got["peak_s"] == 26.0 and got["at_peak"] == 30
    assert all(1 <= u <= 30 for u in got["day"])
    assert all(u >= 25 for u in got["day"][4:])  # the night goes on after the rush
    assert got["flat"] == [30] * 7
