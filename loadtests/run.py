"""What the locustfile's users share with locust's run: their options, locust custom
arguments (`loadtests/options.py`), and how a run is ended or refused.

Imported by the locustfile only: locust patches the process it is imported in with gevent.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import sys
from typing import Any, Final

import gevent
from locust import argument_parser, events, runners
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.options import ARGUMENTS, LoadOptions

__all__ = ["end_run", "expected_workers", "log", "options", "refuse"]

log = logging.getLogger("flashsale")

#: Heartbeats (one a second) a master may miss from a worker before it counts the worker as
#: lost. Locust's 3 is short for a worker on a loaded machine: a master that drops its
#: workers ends the run with exit 0 and their unsent statistics missing. Locust's maintainers
#: point to this module constant for it (https://github.com/locustio/locust/pull/1988).
HEARTBEAT_LIVENESS: Final = 10
runners.HEARTBEAT_LIVENESS = HEARTBEAT_LIVENESS

# A locust worker handling a spawn message keeps the options its master sent that are not
# locust's own, asking `default_args_dict()` once per option: each call builds and runs
# locust's whole argument parser (8 ms here, idle), so 66 options cost half a second of a
# blocked worker per message, several seconds on a loaded machine. A load shape sends one
# every second: the worker never got to its users or its heartbeats, and its master counted it
# lost (locust 2.47.0, `WorkerRunner.handle_message`). Locust's defaults do not change while
# a process runs: computed once, they are the same answer.
if not hasattr(argument_parser.default_args_dict, "cache_info"):
    argument_parser.default_args_dict = functools.cache(argument_parser.default_args_dict)

#: The message a worker sends its master when it cannot take part.
REFUSED: Final = "flashsale_refused"


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any, **_: Any) -> None:
    for arg in ARGUMENTS:
        parser.add_argument(
            arg.flag,
            type=type(arg.default),
            default=arg.default,
            env_var=arg.env_var,
            include_in_web_ui=True,
            help=f"{arg.help} [env {arg.env_var}]",
        )


def options(environment: Environment) -> LoadOptions:
    """This run's options (`ValueError` names a bad one)."""
    return LoadOptions.of(environment.parsed_options)


def expected_workers(environment: Environment) -> int:
    """The workers the master expects (`--expect-workers`; a master sends it to its workers,
    and with `--processes N` it is N): the count of a distributed run's split."""
    return int(getattr(environment.parsed_options, "expect_workers", 1))


def end_run(environment: Environment, error: str | None = None) -> None:
    """End the run: quit locust when headless, stop the test in the web UI; with `error`,
    log it and exit 2."""
    if error is not None:
        log.error(error)
        environment.process_exit_code = 2
    runner = environment.runner
    if runner is None:
        return
    headless = environment.parsed_options is not None and environment.parsed_options.headless
    gevent.spawn(runner.quit if headless else runner.stop)


def refuse(environment: Environment, error: str) -> None:
    """Stop the whole run with `error`: from a worker, through its master."""
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.send_message(REFUSED, {"error": error})
    else:
        end_run(environment, error)


@events.init.add_listener
def _on_init(environment: Environment, runner: Any, **_: Any) -> None:
    if isinstance(runner, WorkerRunner):
        if getattr(environment.parsed_options, "processes", None):
            _die_with_parent()
        return  # a worker takes its options from its master
    try:
        opts = options(environment)
        opts.load()
    except ValueError as exc:
        log.error(str(exc))
        raise SystemExit(2) from None
    if not opts.shape:
        # Asked for on the command line only as a value locust's parser does not read
        # (`shape_asked` saw one): no shape after all.
        environment.shape_class = None
    if isinstance(runner, MasterRunner):
        runner.register_message(REFUSED, _on_refused)


def _die_with_parent() -> None:
    """A worker forked by `locust --processes`: killed when the process that forked it dies,
    so that a master killed outright (SIGTERM stops it at once while a shape runs) leaves no
    worker behind (Linux; elsewhere its heartbeat times out)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the prctl
        os._exit(1)


def _on_refused(environment: Environment, msg: Any, **_: Any) -> None:
    end_run(environment, str(msg.data["error"]))
