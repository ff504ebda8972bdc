"""Prometheus config and alert rules: valid, unit-tested with promtool, and naming only
metrics that flashsale exports."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml
from prometheus_client import CollectorRegistry

from flashsale.settings import Settings
from producers.metrics import ProducerMetrics
from streams.metrics import WorkerMetrics
from tests.conftest import skip_or_fail
from tests.paths import ROOT

PROMETHEUS = ROOT / "dashboards" / "prometheus"
PROMTOOL = shutil.which("promtool")


def _promtool(*args: str) -> str:
    if PROMTOOL is None:
        skip_or_fail("promtool (Debian package prometheus; see .ci/run)")
    done = subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_config_and_rules_are_valid() -> None:
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")
    assert "6 rules found" in _promtool("check", "rules", "rules.yml")


def test_every_alert_fires_when_it_should_and_only_then() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "rules_test.yml")


def _series_names() -> set[str]:
    """Every series name the code exports, as Prometheus stores them."""
    names = set()
    # A registry each: both processes export `flashsale_run_info`.
    for metrics in (WorkerMetrics, ProducerMetrics):
        registry = CollectorRegistry()
        metrics(registry)
        for family in registry.collect():
            # A labelled family without children yet has no samples: name it all the same.
            names.add(family.name + {"counter": "_total", "info": "_info"}.get(family.type, ""))
            for sample in family.samples:
                names.add(sample.name)
            if family.type == "histogram":
                names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
    return names


def test_rules_name_only_metrics_the_code_exports() -> None:
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in alerts} == {
        "FlashsaleConsumerLagHigh",
        "FlashsaleLatencyP99High",
        "FlashsaleDeadLetters",
        "FlashsaleProducerBehindSchedule",
        "FlashsaleOversold",
        "FlashsaleWorkerDown",
    }
    exported = _series_names()
    for rule in alerts:
        named = set(re.findall(r"\bflashsale_[a-z0-9_]+", rule["expr"]))
        assert named <= exported, (rule["alert"], named - exported)
        assert named or "up{" in rule["expr"], rule["alert"]


def test_the_scrape_config_points_at_the_ports_flashsale_uses() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    workers = jobs["flashsale-workers"]["static_configs"][0]["targets"]
    first = Settings().web_port
    # `flashsale demo --workers N` puts worker i on web_port + i.
    assert workers == [f"127.0.0.1:{first + i}" for i in range(len(workers))]
    assert jobs["flashsale-producer"]["static_configs"][0]["targets"] == ["127.0.0.1:9100"]
    gateway = jobs["flashsale-gateway"]["static_configs"][0]["targets"]
    assert gateway == [f"127.0.0.1:{Settings().gateway_port}"]
