"""A worker whose broker has gone still stops when told: SIGTERM 12 s after the broker stopped
ends it within 10 s, busy (thousands of orders applied, outputs in flight) or idle, leaves no
folder behind, and its log holds each traceback whole, in one record."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import assert_tracebacks_whole
from tests.faults.conftest import OwnBroker
from tests.faults.helpers import produce_cmd, scenario_file, start_producer, wait_until
from tests.integration.conftest import worker_starter

pytestmark = pytest.mark.integration

#: How long the broker has been gone when the worker is told to stop.
BROKER_GONE_S = 12.0
#: What a worker promises: gone this long after SIGTERM, whatever its broker does.
GONE_WITHIN_S = 10.0


@pytest.mark.parametrize("busy", [True, False], ids=["busy", "idle"])
def test_worker_whose_broker_is_gone_stops_within_10_s_of_sigterm(
    busy: bool,
    own_broker: OwnBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = own_broker.settings
    # A temporary folder of the worker's own, where the test sees that nothing is left.
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    with worker_starter(settings, tmp_path) as start:
        with monkeypatch.context() as env:
            env.setenv("TMPDIR", str(worker_tmp))
            worker = start()
        assert worker.proc is not None
        producer = None
        if busy:
            # 3,000 orders/s: the broker goes while orders flow and outputs are in flight.
            cmd = produce_cmd(scenario_file(tmp_path), 60_000)
            producer = start_producer(settings, cmd, tmp_path / "produce.log")
        try:
            if producer is not None:
                wait_until(lambda: worker.totals().get("accepted", 0) > 3_000, producer)
            own_broker.broker.stop()
        finally:
            if producer is not None:
                producer.kill()
                producer.wait()
        time.sleep(BROKER_GONE_S)
        assert worker.alive(), f"the worker died with its broker: {worker.proc.returncode}"

        told = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            rc = worker.proc.wait(timeout=GONE_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker still runs {GONE_WITHIN_S:.0f} s after SIGTERM")
        took = time.monotonic() - told
    log = (tmp_path / "worker-0.log").read_text()
    print(f"{'busy' if busy else 'idle'} worker gone {took:.1f} s after SIGTERM, exit {rc}")
    if busy:
        # Faust's commit and producer flush wait on the missing broker: the worker's stop
        # deadline ends it (exit 128 + SIGTERM), unless its stop got through first.
        assert rc in (0, 128 + signal.SIGTERM), log[-3000:]
    else:
        # Nothing in flight: a whole, clean stop.
        assert rc == 0, log[-3000:]
        assert "exiting now" not in log, log[-3000:]
    assert list(worker_tmp.iterdir()) == [], "the worker left its temporary folder behind"
    assert_tracebacks_whole(log)
