"""The fault timeline of a scenario file: times, targets, actions and their one-line errors."""

from __future__ import annotations

import pytest
import yaml

from flashsale.scenario import ScenarioError, parse_scenario
from flashsale.scenario.faults import FaultTarget, parse_duration, parse_target


def _scenario(*faults: dict[str, object]) -> object:
    return parse_scenario({"name": "t", "faults": list(faults)}, "t.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:26", 26.0),
        ("01:30", 90.0),
        ("1:00:00.5", 3600.5),
        ("26s", 26.0),
        ("1m30s", 90.0),
        ("1.5m", 90.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        (26, 26.0),
        (0.5, 0.5),
    ],
)
def test_times_in_every_form_read_as_scenario_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("broker-2", FaultTarget("broker", node=2)),
        (
            "broker-leader-of:orders/0",
            FaultTarget("broker", role="leader", topic="orders", partition=0),
        ),
        ("broker-controller", FaultTarget("broker", role="controller")),
        ("brokers", FaultTarget("brokers")),
        ("worker-1", FaultTarget("worker", index=1)),
        ("producer", FaultTarget("producer")),
        ("gateway", FaultTarget("gateway")),
    ],
)
def test_targets_parse_and_print_back(text: str, target: FaultTarget) -> None:
    assert parse_target(text) == target
    assert str(target) == text


def test_a_timeline_loads_sorted_on_the_scenario_clock_and_round_trips_through_yaml() -> None:
    scenario = _scenario(
        {"at": "00:01:00", "action": "restart", "target": "worker-1"},
        {"at": "00:00:26", "action": "kill", "target": "broker-leader-of:orders/0", "for": "20s"},
        {
            "at": 40,
            "action": "partition",
            "target": "broker-2",
            "for": "10s",
            "recover_p99_ms": 500,
        },
    )
    faults = scenario.faults  # type: ignore[attr-defined]
    assert [(f.at, f.action, f.for_s) for f in faults] == [
        (60.0, "restart", None),
        (26.0, "kill", 20.0),
        (40.0, "partition", 10.0),
    ]
    assert faults[2].recover_p99_ms == 500
    assert faults[1].describe() == "kill broker-leader-of:orders/0 at 26 s for 20 s"
    again = parse_scenario(
        yaml.safe_load(yaml.safe_dump(scenario.model_dump(mode="json", by_alias=True))),  # type: ignore[attr-defined]
        "again.yaml",
    )
    assert again == scenario


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            {"at": 5, "action": "partition", "target": "broker-2"},
            "faults[0].for: a partition needs `for`",
        ),
        ({"at": 5, "action": "stall", "target": "worker-1"}, "faults[0].for: a stall needs `for`"),
        (
            {"at": 5, "action": "kill", "target": "producer"},
            "faults[0].action: kill cannot be done to producer; it can be: stall",
        ),
        (
            {"at": 5, "action": "partition", "target": "worker-1"},
            "faults[0].action: partition cannot be done to worker-1",
        ),
        (
            {"at": 5, "action": "kill", "target": "brokers"},
            "faults[0].action: kill cannot be done to brokers; it can be: restart",
        ),
        (
            {"at": 5, "action": "kill", "target": "broker-x"},
            "faults[0].target: expected one of broker-N",
        ),
        ({"at": 5, "action": "kill", "target": "worker-0"}, "faults[0].target: expected one of"),
        (
            {"at": "00:61:00", "action": "kill", "target": "worker-1"},
            "faults[0].at: minutes and seconds must be below 60",
        ),
        (
            {"at": "soon", "action": "kill", "target": "worker-1"},
            "faults[0].at: expected a time such as 26",
        ),
        (
            {"at": True, "action": "kill", "target": "worker-1"},
            "faults[0].at: expected a time such as 26, 26s, 1m30s or 00:00:26, got true",
        ),
        ({"at": -1, "action": "kill", "target": "worker-1"}, "faults[0].at: must be between 0"),
        (
            {"at": 5, "action": "restart", "target": "worker-1", "for": "3s"},
            "faults[0].for: a restart takes no `for`",
        ),
        (
            {"at": 5, "action": "kill", "target": "worker-1", "for": 0},
            "faults[0].for: must be more than 0",
        ),
        ({"at": 5, "action": "explode", "target": "worker-1"}, "faults[0].action: must be one of"),
        (
            {"at": 5, "action": "kill", "target": "worker-1", "when": 3},
            "faults[0].when: unknown field",
        ),
        (
            {"at": 90000, "action": "kill", "target": "worker-1"},
            "faults[0].at: must be within the curve's horizon (86400 s)",
        ),
        ({"action": "kill", "target": "worker-1"}, "faults[0].at: is missing"),
    ],
)
def test_a_bad_fault_is_one_line_naming_it(fault: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        _scenario(fault)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("t.yaml: ")
    assert message in text, text
