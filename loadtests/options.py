"""The locustfile's own options: one list, read three ways.

Each is a locust custom argument (`--flashsale-*`), so `locust --help` and the web UI show it
and a master sends it to its workers with every spawn; each also takes its default from an
environment variable (the names it had before it was an argument); `flashsale loadtest`
writes them on locust's command line (`LoadOptions.args`). Locust is not imported here: it
patches the process it is imported in with gevent.
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from flashsale.scenario import Scenario, load_scenario

__all__ = ["ARGUMENTS", "SHAPES", "Argument", "LoadOptions", "scenario_of", "shape_asked"]

#: The values of `--flashsale-shape`: "" leaves users to locust's own -u/-r/-t.
SHAPES: Final = ("", "singles-day", "constant")


@dataclass(frozen=True, slots=True)
class Argument:
    """One custom argument: its flag, the environment variable of its default, its default
    (whose type is the argument's type, in argparse and in the web UI's form) and its help."""

    flag: str
    env_var: str
    default: str | int | float
    help: str

    @property
    def dest(self) -> str:
        """The attribute of locust's parsed options that holds it."""
        return self.flag.removeprefix("--").replace("-", "_")


ARGUMENTS: Final = (
    Argument(
        "--flashsale-scenario",
        "FLASHSALE_LOADTEST_SCENARIO",
        "singles-day-2020",
        "Scenario preset or YAML file (at the same path on every machine): its catalog, its "
        "curve and its orders.",
    ),
    Argument(
        "--flashsale-seed",
        "FLASHSALE_LOADTEST_SEED",
        "",
        "Replace the scenario's seed (empty: its own).",
    ),
    Argument(
        "--flashsale-shape",
        "FLASHSALE_LOADTEST_SHAPE",
        "",
        "singles-day (users follow the scenario's curve), constant (--flashsale-users "
        "throughout), or empty: locust's own -u, -r and -t.",
    ),
    Argument(
        "--flashsale-users",
        "FLASHSALE_LOADTEST_USERS",
        20,
        "With a shape: users at the peak.",
    ),
    Argument(
        "--flashsale-duration",
        "FLASHSALE_LOADTEST_DURATION",
        60.0,
        "With a shape: seconds of load.",
    ),
    Argument(
        "--flashsale-rate",
        "FLASHSALE_LOADTEST_RATE",
        0.0,
        "KafkaOrdersUser: most order events per second of the whole run, shared evenly by "
        "its locust processes (0: as fast as they go).",
    ),
    Argument(
        "--flashsale-events",
        "FLASHSALE_LOADTEST_EVENTS",
        0,
        "KafkaOrdersUser: send the scenario's first N order events once, split across the "
        "locust processes, then end the run (0: the whole scenario, again and again until "
        "the run ends).",
    ),
    Argument(
        "--flashsale-bootstrap-servers",
        "FLASHSALE_BOOTSTRAP_SERVERS",
        "",
        "KafkaOrdersUser: the Kafka to send to, HOST:PORT[,...]; the master sends the "
        "restocks, so it needs it too.",
    ),
    Argument(
        "--flashsale-topic",
        "FLASHSALE_TOPIC_ORDERS",
        "",
        "KafkaOrdersUser: the topic of order events (empty: orders).",
    ),
)


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """The values of `ARGUMENTS`, checked."""

    scenario: str = "singles-day-2020"
    seed: int | None = None
    shape: str = ""
    users: int = 20
    duration_s: float = 60.0
    rate: float = 0.0
    events: int = 0
    bootstrap_servers: str = ""
    topic: str = ""

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"--flashsale-shape: {self.shape!r} is not singles-day or constant")
        for flag, value in (
            ("--flashsale-users", self.users),
            ("--flashsale-duration", self.duration_s),
        ):
            if not 0 < value < math.inf:
                raise ValueError(f"{flag}: {value:g} is not a positive number")
        for flag, value in (("--flashsale-rate", self.rate), ("--flashsale-events", self.events)):
            if not 0 <= value < math.inf:
                raise ValueError(f"{flag}: {value:g} is not zero or a positive number")

    @classmethod
    def of(cls, parsed: object) -> LoadOptions:
        """The options in locust's parsed options (command line, environment, or the web UI's
        form, whose values may be text); `ValueError` names the flag of a bad one."""
        values = {arg.flag: getattr(parsed, arg.dest, arg.default) for arg in ARGUMENTS}
        seed = str(values["--flashsale-seed"]).strip()
        return cls(
            scenario=str(values["--flashsale-scenario"]).strip(),
            seed=_int("--flashsale-seed", seed) if seed else None,
            shape=str(values["--flashsale-shape"]).strip(),
            users=_int("--flashsale-users", values["--flashsale-users"]),
            duration_s=_float("--flashsale-duration", values["--flashsale-duration"]),
            rate=_float("--flashsale-rate", values["--flashsale-rate"]),
            events=_int("--flashsale-events", values["--flashsale-events"]),
            bootstrap_servers=str(values["--flashsale-bootstrap-servers"]).strip(),
            topic=str(values["--flashsale-topic"]).strip(),
        )

    def load(self) -> Scenario:
        """The scenario these options name (`ScenarioError`, a `ValueError`, if invalid)."""
        return scenario_of(self.scenario, self.seed)

    def args(self) -> list[str]:
        """These options on locust's command line (empty ones left out)."""
        values = (
            self.scenario,
            "" if self.seed is None else str(self.seed),
            self.shape,
            str(self.users),
            repr(self.duration_s),
            repr(self.rate),
            str(self.events),
            self.bootstrap_servers,
            self.topic,
        )
        out: list[str] = []
        for arg, value in zip(ARGUMENTS, values, strict=True):
            if value:
                out += [arg.flag, value]
        return out


def _int(flag: str, value: object) -> int:
    """`value` (a number, or its text from an environment variable or a form) as an int."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{flag}: {value!r} is not an integer") from None


def _float(flag: str, value: object) -> float:
    """`value` (a number, or its text) as a float."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise ValueError(f"{flag}: {value!r} is not a number") from None


@functools.lru_cache(maxsize=8)
def scenario_of(spec: str, seed: int | None) -> Scenario:
    """The scenario `spec` names with `seed` (once per process: a file is read once)."""
    return load_scenario(spec).with_seed(seed)


def shape_asked(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether locust's command line (or the environment) asks for a shape, read before
    locust parses it: locust takes a locustfile's shape class as it imports the file, and
    warns that -u, -r and -t do nothing beside one."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--flashsale-shape", default=environ.get("FLASHSALE_LOADTEST_SHAPE", ""))
    known, _ = parser.parse_known_args(list(argv))
    return bool(str(known.flashsale_shape).strip())
