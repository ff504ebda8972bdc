"""The process around a worker's Faust app: a stop that ends in time, tracebacks logged whole.

Faust's stop waits on Kafka where nothing bounds the wait from outside. The offset commit it
makes on the way out first flushes the producer, whose batches in flight aiokafka retries
until the producer request timeout (Faust's default: 20 minutes, the bound of every send of a
running worker too), then looks for the group coordinator until it finds one. With the broker
gone, a worker that had outputs in flight never finished stopping; `Worker` gives its stop
`STOP_DEADLINE_S`, then ends the process.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from typing import Any, Final

import faust

__all__ = ["STOP_DEADLINE_S", "Worker", "log_tracebacks_whole"]

#: Seconds from SIGTERM or SIGINT until a worker still stopping exits at once.
STOP_DEADLINE_S: Final = 8.0

_log = logging.getLogger(__name__)


class Worker(faust.Worker):
    """Faust's worker, gone at most `stop_deadline_s` after SIGTERM or SIGINT.

    Exiting before the stop is done is safe: each partition's state is one changelog record,
    written only once the outputs it claims were delivered, so whatever the stop left undone
    (outputs in flight, state writes, offset commits) a restarted worker redoes from the newest
    written state, re-emitting decisions that `verify` dedupes by source offset. The exit
    status is then 128 + the signal's number, as for a process the signal ended, and
    `tempdir` (the app's data directory, if given) is removed first.
    """

    def __init__(
        self,
        app: faust.App,
        *args: Any,
        tempdir: str | None = None,
        stop_deadline_s: float = STOP_DEADLINE_S,
        **kwargs: Any,
    ) -> None:
        # mode's default puts stdout and stderr into the log one record per write(): a
        # traceback Python prints comes out as dozens of records (`^`, `CancelledError`).
        # Python's own traceback printers go to the log instead (`log_tracebacks_whole`).
        kwargs.setdefault("redirect_stdouts", False)
        super().__init__(app, *args, **kwargs)
        self.tempdir = tempdir
        self.stop_deadline_s = stop_deadline_s
        self._deadline: threading.Timer | None = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Faust's set-up, then the root logger at the worker's level: Faust leaves it at
        DEBUG for its terminal spinner and filters in its handlers, so every library debug
        call (aiokafka logs each send) built a record only to drop it, about 5% of a worker's
        CPU (measured with cProfile)."""
        super().on_setup_root_logger(logger, level)
        if level:
            logger.setLevel(level)

    def _on_sigterm(self) -> None:
        self._start_deadline(signal.SIGTERM)
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._start_deadline(signal.SIGINT)
        super()._on_sigint()

    def _start_deadline(self, signum: int) -> None:
        # A thread, not the event loop: the loop may be the one waiting, or already closed
        # while Faust's consumer thread (not a daemon) keeps the process alive.
        if self._deadline is None:
            self._deadline = threading.Timer(self.stop_deadline_s, self._exit_now, (signum,))
            self._deadline.daemon = True
            self._deadline.start()

    def _exit_now(self, signum: int) -> None:
        _log.warning(
            "still stopping %.0f s after %s (Kafka unreachable?): exiting now; a restarted "
            "worker resumes from the last written states",
            self.stop_deadline_s,
            signal.Signals(signum).name,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        if self.tempdir is not None:
            shutil.rmtree(self.tempdir, ignore_errors=True)
        os._exit(128 + signum)


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
