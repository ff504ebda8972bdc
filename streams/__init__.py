"""The Faust stream processors: order rules, per-partition state, worker app and metrics."""

from streams.app import create_app, run_worker
from streams.state import PartitionState, apply_event

__all__ = ["PartitionState", "apply_event", "create_app", "run_worker"]
