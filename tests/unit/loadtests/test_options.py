"""The locustfile's options: one list, read from locust's parsed options, the environment
and a web form alike, written back on locust's command line by `flashsale loadtest`."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from loadtests.options import ARGUMENTS, LoadOptions, shape_asked


def _parser() -> argparse.ArgumentParser:
    """What locust's parser gets from the locustfile, without locust (it patches the
    process with gevent)."""
    parser = argparse.ArgumentParser()
    for arg in ARGUMENTS:
        parser.add_argument(arg.flag, type=type(arg.default), default=arg.default)
    return parser


def test_the_environment_variables_of_before_are_still_read() -> None:
    env = {arg.flag: arg.env_var for arg in ARGUMENTS}
    for name in ("SCENARIO", "SHAPE", "USERS", "DURATION", "RATE"):
        assert env[f"--flashsale-{name.lower()}"] == f"FLASHSALE_LOADTEST_{name}"
    # The Kafka users' servers and topic are every flashsale client's variables.
    assert env["--flashsale-bootstrap-servers"] == "FLASHSALE_BOOTSTRAP_SERVERS"
    assert env["--flashsale-topic"] == "FLASHSALE_TOPIC_ORDERS"
    assert len({arg.flag for arg in ARGUMENTS}) == len(ARGUMENTS)


def test_the_defaults_are_the_options_defaults() -> None:
    assert LoadOptions.of(_parser().parse_args([])) == LoadOptions()


def test_options_written_on_the_command_line_read_back_the_same() -> None:
    opts = LoadOptions(
        scenario="/tmp/my night.yaml",
        seed=42,
        shape="constant",
        users=7,
        duration_s=12.5,
        rate=2500.0,
        events=30_000,
        bootstrap_servers="kafka-1:9092,kafka-2:9092",
        topic="orders-x",
    )
    assert LoadOptions.of(_parser().parse_args(opts.args())) == opts


def test_text_from_a_web_form_or_the_environment_is_read_as_numbers() -> None:
    form = SimpleNamespace(
        flashsale_seed=" 9 ", flashsale_users="30", flashsale_rate="1e3", flashsale_events="10"
    )
    opts = LoadOptions.of(form)
    assert (opts.seed, opts.users, opts.rate, opts.events) == (9, 30, 1000.0, 10)
    assert LoadOptions.of(SimpleNamespace(flashsale_seed="")).seed is None


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"flashsale_shape": "ramp"}, "--flashsale-shape"),
        ({"flashsale_users": 0}, "--flashsale-users"),
        ({"flashsale_users": "many"}, "--flashsale-users"),
        ({"flashsale_duration": "-1"}, "--flashsale-duration"),
        ({"flashsale_rate": -5.0}, "--flashsale-rate"),
        ({"flashsale_rate": "nan"}, "--flashsale-rate"),
        ({"flashsale_events": -1}, "--flashsale-events"),
        ({"flashsale_seed": "x"}, "--flashsale-seed"),
    ],
)
def test_a_bad_value_names_its_flag(values: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        LoadOptions.of(SimpleNamespace(**values))


def test_a_bad_scenario_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="black-friday"):
        LoadOptions(scenario="black-friday").load()


@pytest.mark.parametrize(
    ("argv", "environ", "asked"),
    [
        (["--headless", "-t", "10s", "KafkaOrdersUser"], {}, False),
        (["--flashsale-shape", "constant", "KafkaOrdersUser"], {}, True),
        (["--flashsale-shape=singles-day"], {}, True),
        ([], {"FLASHSALE_LOADTEST_SHAPE": "singles-day"}, True),
        (["--flashsale-shape", ""], {"FLASHSALE_LOADTEST_SHAPE": "constant"}, False),
    ],
)
def test_the_shape_is_there_only_when_asked_for(
    argv: list[str], environ: dict[str, str], asked: bool
) -> None:
    assert shape_asked(argv, environ) is asked
