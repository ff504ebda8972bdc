"""The Faust stream processors: order rules, per-partition state, worker app and metrics."""

from pathlib import Path

from flashsale.compiled import prefer_fresh_source, stems_of

prefer_fresh_source(__name__, Path(__file__).parent, stems_of(__name__))

from streams.app import create_app, run_worker  # noqa: E402
from streams.state import PartitionState, apply_event  # noqa: E402

__all__ = ["PartitionState", "apply_event", "create_app", "run_worker"]
