"""The `flashsale` Typer app, the options its commands share, and the checks of their values
(a bad one is one line naming it, exit 2, nothing started).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from flashsale.client_config import ClientConfigError
from flashsale.scenario import Scenario, load_scenario
from flashsale.settings import Settings
from orchestration.console import error
from recordings.format import MANIFEST

__all__ = [
    "BootstrapOpt",
    "ClientConfigOpt",
    "GuaranteeOpt",
    "KafkaOpt",
    "ScenarioOpt",
    "SeedOpt",
    "app",
    "check_ack_log_target",
    "check_guarantee",
    "check_new_run_dir",
    "check_positive",
    "fail",
    "need",
    "pick_scenario",
    "settings_for",
]

#: The order `flashsale --help` lists the commands in: a run first, then its parts, recorded
#: runs, and the tools.
HELP_ORDER: Final = (
    "demo",
    "produce",
    "worker",
    "gateway",
    "dashboard",
    "verify",
    "loadtest",
    "soak",
    "record",
    "replay",
    "report",
    "compare",
    "export",
    "scenarios",
    "bench",
    "rate",
    "broker",
    "kafka",
)


class _Commands(TyperGroup):
    """Lists the commands in `HELP_ORDER` (any other after them, as registered)."""

    def list_commands(self, ctx: Any) -> list[str]:  # typer's vendored click Context
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(HELP_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(
    cls=_Commands,
    name="flashsale",
    help="Simulate the Singles' Day order storm on Kafka and reconcile it to the cent.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        envvar="FLASHSALE_BOOTSTRAP_SERVERS",
        help="Use this Kafka (HOST:PORT[,...]) instead of starting the embedded broker.",
    ),
]


KafkaOpt = Annotated[
    bool,
    typer.Option(
        "--kafka",
        help="Without --bootstrap-servers: start a local Apache Kafka (jars from Maven Central, "
        "fetched once; Java 17+) instead of the embedded broker.",
    ),
]


ClientConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--client-config",
        envvar="FLASHSALE_CLIENT_CONFIG",
        help="A Kafka client .properties file merged into every client (docs/kafka.md).",
    ),
]


GuaranteeOpt = Annotated[
    str | None,
    typer.Option(
        "--processing-guarantee",
        help="How the workers commit: at_least_once, or exactly_once (Kafka transactions: a "
        "batch's outputs, states and offsets commit together; needs Apache Kafka, not the "
        "embedded broker) [default: FLASHSALE_PROCESSING_GUARANTEE or at_least_once].",
    ),
]

#: The values of `--processing-guarantee` (Faust's words).
GUARANTEES: Final = ("at_least_once", "exactly_once")


ScenarioOpt = Annotated[
    str,
    typer.Option(
        "--scenario", help="A preset (see `flashsale scenarios`) or a scenario YAML file."
    ),
]


SeedOpt = Annotated[int | None, typer.Option("--seed", help="Override the scenario's seed.")]


def settings_for(
    bootstrap_servers: str | None, kafka: bool = False, **overrides: object
) -> Settings:
    """Settings from the environment, with the CLI's flags on top (`kafka`: a local Apache
    Kafka rather than the embedded broker, when no servers are given). A `client_config` flag
    also goes to the environment, so every client and process of the command reads it."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if kafka:
        values["local_broker"] = "kafka"
    if bootstrap_servers:
        values["bootstrap_servers"] = bootstrap_servers
    if values.get("client_config") is not None:
        os.environ["FLASHSALE_CLIENT_CONFIG"] = str(values["client_config"])
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ClientConfigError):
            raise typer.BadParameter(str(cause), param_hint="'--client-config'") from None
        where = ".".join(str(x) for x in err["loc"])
        raise typer.BadParameter(
            f"setting {where}: {err['msg']}" if where else f"settings: {err['msg']}"
        ) from None


def check_guarantee(guarantee: str | None) -> None:
    """Refuse a `--processing-guarantee` that is not one of `GUARANTEES`."""
    if guarantee is not None and guarantee not in GUARANTEES:
        raise typer.BadParameter(
            f"{guarantee!r} is not one of {', '.join(GUARANTEES)}",
            param_hint="'--processing-guarantee'",
        )


def refuse_embedded_exactly_once(settings: Settings) -> None:
    """Stop with one line (exit 2) before anything starts when exactly-once processing is
    asked of the embedded broker the command would start: Tansu has no transactions (it
    answers InitProducerId with an error)."""
    embedded = not settings.bootstrap_servers and settings.local_broker == "embedded"
    if embedded and settings.processing_guarantee == "exactly_once":
        raise fail(
            "processing guarantee exactly_once needs Kafka transactions, which the embedded "
            "broker (Tansu) does not support: add --kafka or --bootstrap-servers"
        )


def pick_scenario(name: str, seed: int | None) -> Scenario:
    """A preset or a YAML file, with an optional seed; `ScenarioError` names what is wrong."""
    return load_scenario(name).with_seed(seed)


def fail(message: str) -> typer.Exit:
    """Print a one-line error (`orchestration.console.error`); the `typer.Exit(2)` to raise."""
    return typer.Exit(error(message))


#: The modules each extra of the package brings (pyproject.toml), for the commands that need it.
EXTRAS: Final = {
    "research": ("pyarrow", "matplotlib"),
    "loadtest": ("locust",),
    "soak": ("psutil", "matplotlib"),
    "bench": ("pyarrow", "locust"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def need(extra: str, what: str) -> None:
    """Stop with one line (exit 2) when a module of `extra` is not installed: a worker or
    producer install leaves the extras out."""
    missing = [module for module in EXTRAS[extra] if not _installed(module)]
    if missing:
        raise fail(
            f"{what} needs {' and '.join(missing)}, which this install of flashsale leaves "
            f"out: pip install 'flashsale[{extra}]'"
        )


def check_new_run_dir(path: Path, option: str) -> None:
    """Refuse a run directory that holds a run already, or whose folder does not exist."""
    if (path / MANIFEST).exists():
        raise typer.BadParameter(f"{path} already holds a run", param_hint=f"'{option}'")
    if not path.resolve().parent.is_dir():
        raise typer.BadParameter(f"no folder {path.resolve().parent}", param_hint=f"'{option}'")


def check_positive(name: str, value: float | None) -> None:
    """Refuse a value of option `name` that is not above 0."""
    if value is not None and value <= 0:
        raise typer.BadParameter("must be greater than 0", param_hint=f"'{name}'")


def check_ack_log_target(path: Path) -> None:
    """Refuse an acknowledgement log (`--ack-log`) that cannot be written: its folder missing,
    or a folder in its place."""
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder", param_hint="'--ack-log'")
    if not path.resolve().parent.is_dir():
        raise typer.BadParameter(f"no folder {path.resolve().parent}", param_hint="'--ack-log'")
