"""The `flashsale` command line: each module parses the options of its commands, calls the
orchestration that runs them, and prints; `main` turns every setup error into one line.

Commands: `brokers` (broker, kafka), `services` (worker, gateway, dashboard), `produce`,
`runs` (demo, soak, bench, verify), `loadtest`, `rate`, `recordings` (record, replay, report,
compare, export) and `scenarios`; `app` holds the options they share.
"""

from __future__ import annotations

import logging
import signal
import sys

import typer

from flashsale.brokers.base import BrokerError
from flashsale.brokers.embedded import TansuNotFound
from flashsale.client_config import ClientConfigError
from flashsale.scenario import ScenarioError
from orchestration.cli import (
    brokers,
    loadtest,
    produce,
    rate,
    recordings,
    runs,
    scenarios,
    services,
)
from orchestration.cli.app import app
from orchestration.cli.errors import ConnectionFailures, connection_error, refused
from recordings.format import RunDirError

__all__ = ["app", "main"]

#: The modules whose commands `app` holds (importing them registers the commands).
COMMANDS = (brokers, services, produce, runs, loadtest, rate, recordings, scenarios)


def main() -> None:
    """Entry point: usage and setup errors as one line on stderr with exit code 2."""
    command = typer.main.get_command(app)
    # Without logging set up, Python prints aiokafka's warnings (each failed connection
    # attempt) on stderr; a command says in one line what failed instead. The worker sets up
    # logging of its own, and aiokafka's records reach it.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    failures = ConnectionFailures()
    logging.getLogger("aiokafka").addHandler(failures)
    # SIGTERM behaves like Ctrl-C, so every `finally` and context manager cleans up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = command.main(prog_name="flashsale", standalone_mode=False)
    except typer.TyperException as exc:
        # typer vendors click: its usage errors carry `format_message`, `exit_code` and `ctx`.
        if type(exc).__name__ == "NoArgsIsHelpError":
            ctx = getattr(exc, "ctx", None)
            print(ctx.get_help() if ctx else str(exc))
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `flashsale {ctx.info_name} --help`)" if ctx and ctx.parent else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"flashsale: error: {message}{hint}", file=sys.stderr)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except (TansuNotFound, BrokerError, ScenarioError, RunDirError, ClientConfigError) as exc:
        print(f"flashsale: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("flashsale: aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("flashsale: interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # aiokafka is imported here, not at start-up: commands without Kafka start faster.
        from aiokafka.errors import KafkaConnectionError

        if not isinstance(exc, KafkaConnectionError):
            raise
        why = refused(failures)
        if why is not None:
            # A setting to correct, as a bad argument is: exit 2.
            print(f"flashsale: error: {why}", file=sys.stderr)
            sys.exit(2)
        print(f"flashsale: error: {connection_error(exc)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
