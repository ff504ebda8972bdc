"""A worker logs the tracebacks Python prints itself (a thread's end, an exception nobody can
catch, a warning) each as one record, whole, in the worker's log format."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from tests.conftest import assert_tracebacks_whole, log_records
from tests.paths import ROOT

#: A process logging as a worker does (mode's set-up, the worker's hooks), then ending a
#: thread by CancelledError as Faust's consumer thread once did, raising in a finaliser and
#: leaving a coroutine never awaited.
SCRIPT = """
import asyncio, gc, threading
from mode.utils.logging import setup_logging
from streams.worker import log_tracebacks_whole

setup_logging(loglevel="WARNING")
log_tracebacks_whole()

def stop_the_consumer():
    raise asyncio.CancelledError()

thread = threading.Thread(target=stop_the_consumer, name="consumer")
thread.start()
thread.join()

class Finalised:
    def __del__(self):
        raise ValueError("in a finaliser")

Finalised()
asyncio.sleep(1)
gc.collect()
"""


def test_tracebacks_python_prints_itself_are_one_record_each_in_the_log() -> None:
    # Output and errors in one file, as `WorkerProcess` gives a worker.
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout
    assert_tracebacks_whole(run.stdout)
    before, records = log_records(run.stdout)
    assert before == "", run.stdout  # nothing printed outside a record
    thread, finaliser, warning = records
    assert thread.startswith("thread consumer ended by CancelledError")
    assert "\nTraceback (most recent call last):\n" in thread
    assert "in stop_the_consumer" in thread
    assert thread.rstrip().endswith("asyncio.exceptions.CancelledError")
    assert finaliser.startswith("Exception ignored in: ")
    assert finaliser.rstrip().endswith("ValueError: in a finaliser")
    assert "RuntimeWarning: coroutine 'sleep' was never awaited" in warning


def test_faust_dash_a_without_bootstrap_servers_stops_with_one_line() -> None:
    """`faust -A streams.faust_app worker` needs the servers Faust's command line cannot
    start: one line naming the variable, exit status 1, no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    run = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "streams.faust_app", "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "streams.faust_app: set FLASHSALE_BOOTSTRAP_SERVERS to the Kafka cluster's bootstrap "
        "servers (Faust's command line starts no broker)"
    ]


def test_the_worker_sets_the_root_logger_to_its_level_though_faust_spins_at_debug() -> None:
    """Faust leaves the root logger at DEBUG for its spinner: a worker at `warn` must not
    build a record for every library debug call."""
    from flashsale.settings import Settings
    from streams.app import create_app
    from streams.worker import Worker

    app = create_app(Settings(bootstrap_servers="127.0.0.1:1"))
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        Worker(app, loglevel="warn", quiet=True)._setup_logging()
        assert root.level == logging.WARNING
        assert not root.isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
