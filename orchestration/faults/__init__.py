"""A scenario's fault timeline carried out against a run (`flashsale/scenario/faults.py` is the
timeline's model): `check` refuses what a run cannot do before it starts, `runner` does each
fault on the scenario clock and judges the recovery, `thread` runs it beside a command that
waits on other processes."""

from orchestration.faults.check import FaultError, check_faults
from orchestration.faults.runner import LAG_LEVEL_FLOOR, FaultRunner, Sample, quorum_leader
from orchestration.faults.thread import FaultThread

__all__ = [
    "LAG_LEVEL_FLOOR",
    "FaultError",
    "FaultRunner",
    "FaultThread",
    "Sample",
    "check_faults",
    "quorum_leader",
]
