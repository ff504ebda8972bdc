"""The whole CLI: a demo that reconciles, and no process left behind on exit, Ctrl-C or kill;
each on the embedded broker and on a local Apache Kafka (`--kafka`, `flashsale kafka`), whose
JVMs run in a session of their own and are found as the command's descendants."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import children_of, session_processes

pytestmark = pytest.mark.e2e

#: The flag that picks each kind of broker a command starts for itself.
LOCAL = [
    pytest.param([], id="embedded", marks=pytest.mark.embedded),
    pytest.param(["--kafka"], id="kafka", marks=pytest.mark.kafka),
]


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, their children, ...)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)}


def _wait_dead(pids: set[int], timeout_s: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(pids)


def _flashsale(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    # A new session, as a terminal gives a command its own process group: Ctrl-C is
    # SIGINT to the whole group, and every process we started is findable by session id.
    options: dict[str, object] = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "text": True,
        "start_new_session": True,
        **kwargs,
    }
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "orchestration", *args], **options
    )


def _wait_gone(sid: int, timeout_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = session_processes(sid)
        if not left:
            return []
        time.sleep(0.2)
    return session_processes(sid)


@pytest.mark.parametrize("local", LOCAL)
def test_demo_reconciles_and_leaves_no_process_behind(tmp_path: Path, local: list[str]) -> None:
    # The default preset with a lifecycle compressed into seconds: most lines are paid,
    # cancelled or refunded within the run, so the rules on stock release are exercised.
    fast_lifecycle = tmp_path / "fast-lifecycle.yaml"
    fast_lifecycle.write_text(
        "name: fast-lifecycle\n"
        "curve: {shape: midnight-spike, peak_offset_s: 5, decay_s: 60, horizon_s: 3600}\n"
        "scale: {peak_per_s: 583000, sample_ratio: 0.005}\n"
        "catalog: {flash_share: 0.05}\n"
        "mix: {pay_delay_mean_s: 1.5, unpaid_timeout_s: 4, payment_failure_rate: 0.05,\n"
        "      cancellation_rate: 0.1, refund_rate: 0.05, refund_delay_mean_s: 2}\n"
    )
    summary = tmp_path / "out.json"
    opened = tmp_path / "opened.txt"
    env = dict(os.environ)
    env.pop("FLASHSALE_BOOTSTRAP_SERVERS", None)
    env["COLUMNS"] = "200"  # one line per line: rich wraps at the terminal's width
    # `--open` goes through Python's webbrowser, which takes $BROWSER as the browser command.
    env["BROWSER"] = (
        f"{sys.executable} -c \"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\" %s"
    )
    proc = _flashsale(
        "demo",
        "--scenario",
        str(fast_lifecycle),
        "--duration",
        "15",
        "--summary-json",
        str(summary),
        "--open",
        *local,
        env=env,
    )
    seen: dict[int, str] = {}  # mid-run: the demo's processes and their command lines
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "worker ready" in line:
            seen = {pid: _cmdline(pid) for pid in descendants(proc.pid)}
    proc.wait(timeout=240)
    out = "".join(lines)
    assert proc.returncode == 0, out
    doc = orjson.loads(summary.read_bytes())
    assert doc["reconciled"] is True
    assert doc["orders_produced"] > 20_000
    assert doc["orders_processed"] == doc["orders_produced"]
    assert doc["events_processed"] == doc["events_produced"]
    assert doc["gmv_cents_streamed"] == doc["gmv_cents_expected"] > 0
    assert doc["orders_paid"] > 0.5 * doc["orders_accepted"]
    assert doc["orders_cancelled"] > 1_000  # stock released and sold again
    assert doc["orders_refunded"] > 0
    assert doc["sold_out_skus"] > 0  # flash-sale SKUs sell out during the run
    assert doc["duplicates_dropped"] > 0
    assert doc["oversold_skus"] == 0
    assert "/metrics" in out
    dashboard = re.search(r"dashboard: (http://\S+)", out)
    assert dashboard is not None, out
    assert opened.read_text() == dashboard.group(1)  # --open opened the dashboard's URL
    if local:
        assert "(Apache Kafka 4.1.1, 1 node, on disk in a temporary folder)" in out, out
        assert any(" kafka.Kafka " in cmd for cmd in seen.values()), seen
    assert _wait_gone(proc.pid, 5) == []
    assert _wait_dead(set(seen), 5) == set()


@pytest.mark.parametrize("local", LOCAL)
def test_ctrl_c_during_demo_stops_broker_and_worker(tmp_path: Path, local: list[str]) -> None:
    proc = _flashsale("demo", "--duration", "120", *local)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        seen.append(line)
        if "worker ready" in line or time.monotonic() > deadline:
            break
    assert any("worker ready" in line for line in seen), "".join(seen)
    time.sleep(2)  # mid-run: orders flowing
    below = descendants(proc.pid)
    assert len(below) >= 2, "broker and worker should both be running under the demo"
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert _wait_gone(proc.pid) == []
    assert _wait_dead(below) == set()


BROKER_COMMANDS = [
    pytest.param(["broker"], id="embedded", marks=pytest.mark.embedded),
    pytest.param(["kafka"], id="kafka", marks=pytest.mark.kafka),
    pytest.param(["kafka", "--nodes", "3"], id="kafka3", marks=pytest.mark.kafka),
]


@pytest.mark.parametrize("command", BROKER_COMMANDS[:2])
def test_broker_dies_with_its_parent_even_on_sigkill(command: list[str]) -> None:
    # Progress goes to stderr; stdout's first line is the bootstrap servers, for scripts.
    proc = _flashsale(*command, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("bootstrap=127.0.0.1:"), first
    brokers = children_of(proc.pid)
    assert len(brokers) == 1
    proc.kill()
    proc.wait(timeout=10)
    assert _wait_gone(proc.pid, 10) == []
    # PR_SET_PDEATHSIG: the broker (Tansu, or Kafka's JVM in a session of its own) goes too.
    assert _wait_dead(set(brokers), 10) == set()


@pytest.mark.parametrize("command", BROKER_COMMANDS)
def test_broker_command_stops_cleanly_on_sigterm(command: list[str]) -> None:
    proc = _flashsale(*command, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("bootstrap=")
    below = descendants(proc.pid)
    assert len(below) == (3 if "3" in command else 1)
    proc.terminate()
    out, _ = proc.communicate(timeout=40)
    assert proc.returncode == 130, out
    assert _wait_gone(proc.pid, 10) == []
    assert _wait_dead(below, 10) == set()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
