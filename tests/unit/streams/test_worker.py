"""A worker logs the tracebacks Python prints itself (a thread's end, an exception nobody can
catch, a warning) each as one record, whole, in the worker's log format."""

from __future__ import annotations

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
