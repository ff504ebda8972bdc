"""Scenarios: the model, its presets and loading (`model`), the European catalog (`catalog`)
and the traffic curves (`curves`). The names most parts need are exported here."""

from flashsale.scenario.model import (
    DEFAULT_SCENARIO,
    Scenario,
    ScenarioError,
    get_scenario,
    list_presets,
    load_scenario,
    parse_scenario,
)

__all__ = [
    "DEFAULT_SCENARIO",
    "Scenario",
    "ScenarioError",
    "get_scenario",
    "list_presets",
    "load_scenario",
    "parse_scenario",
]
