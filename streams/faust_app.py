"""The worker's Faust app at module level, for Faust's own command line:

    FLASHSALE_BOOTSTRAP_SERVERS=127.0.0.1:9092 faust -A streams.faust_app worker -l info

runs the worker `flashsale worker --bootstrap-servers 127.0.0.1:9092` runs: the settings of
the `FLASHSALE_*` environment variables, the run's topics made sure of first, the same app,
process tuning and stop deadline. Faust's own options apply on top (`--web-port`, `-l`,
`--without-web`...). `flashsale worker` starts a broker of its own when given no servers;
Faust's command line does not, so `FLASHSALE_BOOTSTRAP_SERVERS` is required here.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import sys
import tempfile
from typing import Any

from flashsale.kafka.admin import ensure_run_topics
from flashsale.settings import Settings
from streams.app import worker_app
from streams.transactions import TransactionsUnsupported, check_transactions
from streams.worker import Worker, log_tracebacks_whole

__all__ = ["FaustCommandWorker", "app"]


def _settings() -> Settings:
    """The environment's settings with the run's topics made sure of, or exit with one line."""
    settings = Settings()
    if not settings.bootstrap_servers:
        sys.exit(
            "streams.faust_app: set FLASHSALE_BOOTSTRAP_SERVERS to the Kafka cluster's "
            "bootstrap servers (Faust's command line starts no broker)"
        )
    try:
        if settings.processing_guarantee == "exactly_once":
            asyncio.run(check_transactions(settings))
        return asyncio.run(ensure_run_topics(settings, settings.bootstrap_servers))
    except TransactionsUnsupported as exc:
        sys.exit(f"streams.faust_app: {exc}")
    except Exception as exc:  # an unreachable broker, said in one line
        sys.exit(f"streams.faust_app: {settings.bootstrap_servers}: {type(exc).__name__}: {exc}")


#: Faust's data directory (unused by the memory store, created anyway), removed at exit.
DATADIR = tempfile.mkdtemp(prefix="flashsale-worker-")
atexit.register(shutil.rmtree, DATADIR, True)


class FaustCommandWorker(Worker):
    """`streams.worker.Worker` as Faust's command line builds it (`app.conf.Worker`): the
    stop deadline, and this module's data directory removed on a forced exit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("tempdir", DATADIR)
        super().__init__(*args, **kwargs)


app = worker_app(_settings(), DATADIR)
app.conf.Worker = FaustCommandWorker  # type: ignore[assignment]  # a class, as Faust's is
log_tracebacks_whole()
