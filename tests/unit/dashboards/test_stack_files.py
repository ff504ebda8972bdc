"""docker-compose.yml and the Dockerfile: checked here because no Docker engine runs on the
development machine (the Grafana dashboard and its provisioning: test_grafana_dashboard.py)."""

from __future__ import annotations

import json
import sys
import tomllib
import zipfile
from pathlib import Path

import jsonschema
import typer
import yaml

from orchestration.cli.app import app as cli_app
from tests.conftest import skip_or_fail
from tests.paths import ROOT
from tests.unit.dashboards.test_prometheus_rules import PROMETHEUS, _promtool


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _check_command(args: list[str]) -> None:
    """Parse `flashsale ARGS` with the real CLI's parser, running nothing."""
    group = typer.main.get_command(cli_app)
    name, *rest = args
    command = group.commands.get(name)  # type: ignore[attr-defined]
    assert command is not None, f"flashsale has no command {name!r}"
    command.make_context(name, list(rest))  # raises on an unknown option or a bad value


def test_compose_services_run_real_flashsale_commands() -> None:
    services = _compose()["services"]
    assert {"kafka", "worker", "producer", "dashboard", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    built = {name: s for name, s in services.items() if "build" in s}
    assert set(built) == {"worker", "producer", "gateway", "dashboard"}
    for name, service in built.items():
        _check_command([str(a) for a in service["command"]])
        # Replicas of a service must not pin host ports: `--scale worker=3` would clash.
        if name == "worker":
            assert "ports" not in service
    for service in services.values():
        assert "image" in service or "build" in service


def test_compose_runs_the_kafka_release_and_broker_settings_the_suite_tests() -> None:
    from flashsale.brokers.apache import KAFKA_VERSION, broker_settings

    kafka = _compose()["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    env = {k: str(v) for k, v in kafka["environment"].items()}
    # The apache/kafka image turns KAFKA_FOO_BAR into the broker setting foo.bar.
    tested = {
        f"KAFKA_{key.upper().replace('.', '_')}": value for key, value in broker_settings(1).items()
    }
    assert {k: env.get(k) for k in tested} == tested
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    # Nothing else that the suite leaves at Kafka's default is changed in the stack.
    listeners = {
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_INTER_BROKER_LISTENER_NAME",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
    }
    assert set(env) - set(tested) - listeners == set()


def test_compose_ports_match_what_prometheus_scrapes() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((PROMETHEUS / "prometheus-compose.yml").read_text())
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}

    def option(service: str, flag: str) -> int:
        command = [str(a) for a in services[service]["command"]]
        return int(command[command.index(flag) + 1])

    assert jobs["flashsale-workers"]["names"] == ["worker"]
    assert jobs["flashsale-workers"]["port"] == option("worker", "--web-port")
    assert jobs["flashsale-producer"]["names"] == ["producer"]
    assert jobs["flashsale-producer"]["port"] == option("producer", "--metrics-port")
    assert jobs["flashsale-gateway"]["port"] == option("gateway", "--port")
    dashboard = [str(a) for a in services["dashboard"]["command"]]
    assert f"http://worker:{option('worker', '--web-port')}" in dashboard
    volumes = services["prometheus"]["volumes"][0]
    assert volumes.startswith("./dashboards/prometheus:")
    assert "prometheus-compose.yml" in services["prometheus"]["command"][0]
    assert "SUCCESS" in _promtool("check", "config", "prometheus-compose.yml")


def test_the_dockerfile_installs_the_packages_the_cli_needs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("# ")
    assert "FROM python:3.11" in text
    # Every package the build lists, and the build's own files (setup.py compiles).
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in {name.rstrip("*") for name in found["packages"]["find"]["include"]}:
        assert f"COPY {package} ./{package}" in text
    assert "COPY pyproject.toml setup.py README.md ./" in text
    assert "gcc" in text  # the build stage can compile
    assert 'ENTRYPOINT ["flashsale"]' in text


def _compose_schema() -> dict:
    """The compose-spec JSON schema, from docker-compose 1.29.2's wheel (`make` downloads it)."""
    wheels = sorted((Path(sys.prefix) / "share" / "compose-spec").glob("docker_compose-*.whl"))
    if not wheels:
        skip_or_fail("the compose-spec schema (make downloads docker-compose's wheel)")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        schema: dict = json.loads(wheel.read("compose/config/compose_spec.json"))
    return schema


def test_compose_file_follows_the_compose_spec_schema() -> None:
    validator = jsonschema.Draft201909Validator(_compose_schema())
    assert [e.message for e in validator.iter_errors(_compose())] == []
    # The check bites: a misspelt key is caught.
    broken = _compose()
    broken["services"]["worker"]["comand"] = ["worker"]
    assert list(validator.iter_errors(broken))
