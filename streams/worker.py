"""The process around a worker's Faust app: tracebacks logged whole."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import faust

__all__ = ["Worker", "log_tracebacks_whole"]

_log = logging.getLogger(__name__)


class Worker(faust.Worker):
    """Faust's worker, whose log takes each traceback as one record."""

    def __init__(self, app: faust.App, *args: Any, **kwargs: Any) -> None:
        # mode's default puts stdout and stderr into the log one record per write(): a
        # traceback Python prints comes out as dozens of records (`^`, `CancelledError`).
        # Python's own traceback printers go to the log instead (`log_tracebacks_whole`).
        kwargs.setdefault("redirect_stdouts", False)
        super().__init__(app, *args, **kwargs)


def log_tracebacks_whole() -> None:
    """Log, each as one record, the tracebacks Python would print on stderr itself: an
    exception that ends a thread, one raised where nobody can catch it, and warnings."""
    threading.excepthook = _thread_died
    sys.unraisablehook = _unraisable
    logging.captureWarnings(True)


def _thread_died(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    _log.error("thread %s ended by %s", name, args.exc_type.__name__, exc_info=args.exc_value)


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    _log.error(
        "%s: %r",
        unraisable.err_msg or "Exception ignored in",
        unraisable.object,
        exc_info=unraisable.exc_value,
    )
