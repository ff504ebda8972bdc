"""Scenario files: presets and their calibration, validation, one-line errors for any input."""

from __future__ import annotations

import copy
import math
import pickle
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flashsale.scenario import (
    DEFAULT_SCENARIO,
    Scenario,
    ScenarioError,
    get_scenario,
    list_presets,
    load_scenario,
    parse_scenario,
)
from flashsale.scenario.catalog import Catalog
from flashsale.scenario.curves import Curve
from flashsale.scenario.faults import FaultSpec
from flashsale.scenario.model import (
    PRESETS,
    CatalogSpec,
    CurveSpec,
    DelaySpec,
    EveningBump,
    OrderMix,
    PopularitySpec,
    ScaleSpec,
)
from tests.paths import ROOT

DOC = ROOT / "docs" / "scenarios.md"
MODELS: tuple[type[BaseModel], ...] = (
    Scenario,
    CatalogSpec,
    PopularitySpec,
    CurveSpec,
    EveningBump,
    ScaleSpec,
    OrderMix,
    DelaySpec,
    FaultSpec,
)
FIELD_NAMES = sorted({name for model in MODELS for name in model.model_fields})
PRESET_FILES = sorted(
    entry.name
    for entry in resources.files("flashsale.scenario").joinpath("presets").iterdir()
    if entry.name.endswith(".yaml")
)


def _raw_preset(file_name: str) -> dict[str, Any]:
    text = resources.files("flashsale.scenario").joinpath("presets", file_name).read_text("utf-8")
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --- presets ------------------------------------------------------------------------------


def test_presets_ship_inside_the_package_and_each_is_named_after_its_file() -> None:
    assert PRESET_FILES == [
        "flash-drop.yaml",
        "leader-kill-at-peak.yaml",
        "partition-at-peak.yaml",
        "singles-day-2014.yaml",
        "singles-day-2019.yaml",
        "singles-day-2020.yaml",
        "steady.yaml",
    ]
    assert list(PRESETS) == [name.removesuffix(".yaml") for name in PRESET_FILES]
    assert [s.name for s in list_presets()] == list(PRESETS)
    for scenario in list_presets():
        assert scenario.description and scenario.sources
        assert load_scenario(scenario.name) is get_scenario(scenario.name)


def test_the_demo_default_is_singles_day_2020_sampled_for_a_laptop() -> None:
    scenario = get_scenario(DEFAULT_SCENARIO)
    assert scenario.name == "singles-day-2020"
    assert scenario.scale.sample_ratio == 0.005
    assert scenario.scale.compression == 1
    assert scenario.mix.bot_share == 0.01
    assert 2_800 < scenario.peak_wall_rate < 3_000


def test_singles_day_2020_peaks_at_583000_orders_per_second_26_seconds_after_midnight() -> None:
    scenario = get_scenario("singles-day-2020")
    peak_t, peak_rate = Curve(scenario).peak()
    assert peak_t == pytest.approx(26.0, abs=0.5)
    assert peak_rate == pytest.approx(583_000, rel=0.005)
    assert scenario.start == datetime(2020, 11, 11, tzinfo=timezone(timedelta(hours=8)))


def test_singles_day_2019_puts_4_percent_in_96_seconds_and_37_percent_in_the_first_hour() -> None:
    scenario = get_scenario("singles-day-2019")
    curve = Curve(scenario)
    assert curve.share_by(96) == pytest.approx(0.04, abs=0.01)
    assert curve.share_by(3_600) == pytest.approx(0.37, abs=0.02)
    assert curve.peak()[1] == pytest.approx(544_000, rel=0.005)
    assert curve.peak()[0] < 10
    assert scenario.curve.horizon_s == 86_400
    # ~1.19 billion orders on the day; docs/scenarios.md quotes this figure.
    assert curve.total_real() == pytest.approx(1.193e9, rel=0.002)


def test_singles_day_2014_is_the_2019_curve_scaled_to_its_peak() -> None:
    s2014, s2019 = get_scenario("singles-day-2014"), get_scenario("singles-day-2019")
    c2014, c2019 = Curve(s2014), Curve(s2019)
    assert s2014.curve == s2019.curve
    ratio = s2014.scale.peak_per_s / s2019.scale.peak_per_s
    assert c2014.total_real() == pytest.approx(c2019.total_real() * ratio)
    assert s2014.start.year == 2014


def test_2014_day_gmv_matches_its_calibration() -> None:
    """7.4 billion euros on the day: real orders x the generator's mean paid order value."""
    import numpy as np

    from producers.generator import Generator

    scenario = get_scenario("singles-day-2014")
    gen = Generator(scenario)
    prices = np.array([s.unit_price_cents for s in gen.catalog.skus])
    cents = 0
    orders: set[int] = set()
    for block in gen.blocks(120.0, block_s=1.0):
        rows = block.rows
        lines = rows[(rows["typ"] == 0) & (rows["copy"] == 0)]
        cents += int((prices[lines["sku"]] * lines["qty"]).sum())
        orders.update(lines["seq"].tolist())
    mix = scenario.mix
    paid_share = 1 - mix.payment_failure_rate - mix.cancellation_rate
    mean_paid_eur = cents / len(orders) / 100 * paid_share
    day_gmv = Curve(scenario).total_real() * mean_paid_eur
    assert day_gmv == pytest.approx(7.4e9, rel=0.03)


def test_flash_drop_sends_100000_single_line_orders_at_one_sku_of_1000_units_in_10s() -> None:
    scenario = get_scenario("flash-drop")
    curve = Curve(scenario)
    assert curve.cumulative(10) == pytest.approx(100_000, rel=0.005)
    assert curve.cumulative(scenario.curve.horizon_s) == pytest.approx(100_000, rel=0.005)
    assert curve.rate(5) == 10_000 and curve.rate(10.5) == 0
    assert scenario.scale.sample_ratio == 1 and scenario.scale.compression == 1
    catalog = Catalog.for_scenario(scenario)
    assert len(catalog.flash_indices) == 1
    assert catalog.flash_skus[0].stock == 1_000
    assert scenario.popularity.hot_share == 1.0
    assert scenario.mix.basket_max_lines == 1


def test_steady_emits_2000_orders_per_wall_second_all_day() -> None:
    scenario = get_scenario("steady")
    curve = Curve(scenario)
    assert scenario.peak_wall_rate == 2_000
    assert {curve.wall_rate(w) for w in (0.0, 1.0, 3_600.0, 80_000.0)} == {2_000.0}
    assert curve.emitted_by(10.0) == pytest.approx(20_000)


def test_every_preset_builds_its_catalog_and_pickles() -> None:
    for scenario in list_presets():
        catalog = Catalog.for_scenario(scenario)
        assert len(catalog) == scenario.catalog.sku_count
        assert len(catalog.flash_indices) == scenario.catalog.flash_sku_count
        assert pickle.loads(pickle.dumps(scenario)) == scenario


# --- the model ----------------------------------------------------------------------------


def test_a_name_alone_is_a_complete_scenario_with_the_documented_defaults() -> None:
    scenario = parse_scenario({"name": "mine"})
    assert scenario.seed == 11
    assert scenario.start == datetime(2020, 11, 10, 16, tzinfo=UTC)
    assert scenario.catalog.sku_count == 600
    assert scenario.curve.shape == "midnight-spike"
    assert scenario.scale.peak_per_s == 583_000
    assert scenario.mix.out_of_order_delay.distribution == "exponential"
    assert scenario.peak_wall_rate == pytest.approx(583_000 * 0.005)


def test_a_naive_start_is_utc_and_an_offset_is_kept() -> None:
    naive = parse_scenario({"name": "x", "start": "2019-11-10T16:00:00"})
    assert naive.start == datetime(2019, 11, 10, 16, tzinfo=UTC)
    china = parse_scenario({"name": "x", "start": "2019-11-11T00:00:00+08:00"})
    assert china.start == naive.start


def test_scenarios_are_frozen_and_with_seed_copies() -> None:
    scenario = get_scenario("steady")
    with pytest.raises(ValueError, match="frozen"):
        scenario.seed = 3
    assert scenario.with_seed(None) is scenario
    assert scenario.with_seed(42).seed == 42
    assert scenario.seed == 11
    with pytest.raises(ScenarioError, match="seed"):
        scenario.with_seed(-1)


def test_scenarios_hash_so_they_can_key_a_cache() -> None:
    priced = parse_scenario({"name": "x", "catalog": {"price_cents": {"wine": [100, 200]}}})
    same = parse_scenario({"name": "x", "catalog": {"price_cents": {"wine": [100, 200]}}})
    assert hash(priced) == hash(same)
    assert {priced: 1, get_scenario("steady"): 2}[same] == 1


def test_flash_count_overrides_flash_share() -> None:
    spec = CatalogSpec(sku_count=100, flash_share=0.5, flash_count=3)
    assert spec.flash_sku_count == 3
    assert CatalogSpec(sku_count=100, flash_share=0.25).flash_sku_count == 25


def test_a_csv_curve_is_read_relative_to_its_yaml_and_kept_in_the_model(tmp_path: Path) -> None:
    (tmp_path / "curves").mkdir()
    _write(tmp_path / "curves", "night.csv", "second,rate\n0,100\n60, 400\n\n120,50\n")
    path = _write(
        tmp_path,
        "night.yaml",
        "name: night\ncurve: {shape: csv, path: curves/night.csv, horizon_s: 600}\n",
    )
    scenario = load_scenario(path)
    assert scenario.curve.points == ((0, 100), (60, 400), (120, 50))
    assert scenario.curve.path == "curves/night.csv"
    assert scenario.peak_wall_rate == pytest.approx(400 * 0.005)
    assert load_scenario(str(path)) == scenario
    # Self-contained: the csv is not needed any more.
    (tmp_path / "curves" / "night.csv").unlink()
    assert Curve(pickle.loads(pickle.dumps(scenario))).rate(30) == pytest.approx(250)


@pytest.mark.parametrize(
    ("csv_text", "problem"),
    [
        ("time,rate\n0,1\n", "line 1: expected the header 'second,rate', got 'time,rate'"),
        ("second,rate\n0,1\n5,x\n", "line 3: expected two numbers, got '5,x'"),
        ("second,rate\n0,1\n5,1,2\n", "line 3: expected 2 values (second,rate), got 3"),
        ("second,rate\n0,1\n5,nan\n", "line 3: expected finite numbers, got '5,nan'"),
        ("second,rate\n", "no data rows after the header"),
        ("second,rate\n0,1\n\n10,2\n5,3\n", "line 5: second must be later than the point"),
        ("second,rate\n0,1\n10,-2\n", "line 3: rate must be between 0 and 1e+09 orders/s"),
        ("second,rate\n0,0\n10,0\n", "curve.points: the rate is 0 all through the horizon"),
    ],
)
def test_csv_problems_name_the_csv_file_and_line(
    tmp_path: Path, csv_text: str, problem: str
) -> None:
    _write(tmp_path, "r.csv", csv_text)
    path = _write(tmp_path, "c.yaml", "name: c\ncurve: {shape: csv, path: r.csv}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: curve.")
    assert problem in message
    if "curve.points" not in problem:
        assert f"{tmp_path / 'r.csv'}: " in message


def test_a_missing_csv_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.yaml", "name: c\ncurve: {shape: csv, path: gone.csv}\n")
    with pytest.raises(ScenarioError, match=r"c\.yaml: curve\.path: .*gone\.csv: no such file"):
        load_scenario(path)


# --- one-line errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nmix: {duplicate_rate: 0.9}\n",
            "mix.duplicate_rate: must be at most 0.5, got 0.9",
        ),
        (
            "name: x\ncatalog: {countries: [FR, IT, XX]}\n",
            "catalog.countries[2]: unknown country 'XX'; known: AT, BE, CH, DE, DK, ES, FR, GB,",
        ),
        ("name: x\n  seed: [\n", "line 2: not valid YAML (mapping values are not allowed here)"),
        ("- 1\n- 2\n", "top level: expected a mapping, got list"),
        ("", "top level: expected a mapping, got null"),
        ("name: x\ncurve: {peek_rate: 3}\n", "curve.peek_rate: unknown field"),
        ("seed: 3\n", "name: is missing"),
        ("name: x\nscale: {peak_per_s: .nan}\n", "scale.peak_per_s: must be a finite number"),
        ("name: x\nscale: {peak_per_s: .inf}\n", "scale.peak_per_s: must be a finite number"),
        ("name: x\nscale: {peak_per_s: lots}\n", "scale.peak_per_s: expected a number, got 'lots'"),
        ("name: x\nscale: {peak_per_s: yes}\n", "scale.peak_per_s: expected a number, got true"),
        (
            "name: x\nscale: {sample_ratio: 0}\n",
            "scale.sample_ratio: must be greater than 0, got 0",
        ),
        ("name: x\nseed: 1.5\n", "seed: expected a whole number, got 1.5"),
        ("name: x\nseed: 9223372036854775808\n", "seed: must be less than 9223372036854775808"),
        ("name: x\ncatalog: null\n", "catalog: expected a mapping, got null"),
        ("name: x\ncurve: {shape: zigzag}\n", "curve.shape: must be one of 'midnight-spike',"),
        ("name: Big Day\n", "name: must be lowercase letters, digits and '-', got 'Big Day'"),
        ("name: x\nstart: 2020-13-45\n", "not valid YAML (month must be in 1..12)"),
        ("name: x\nstart: soon\n", "start: expected a date-time such as 2020-11-10T16:00:00Z"),
        ("name: x\nstart: 1912-04-15\n", "start: must be in 1970..2099, got 1912-04-15T00:00:00"),
        ("name: x\ncatalog: {stock: [1, 2, 3]}\n", "catalog.stock: expected 2 items, got 3"),
        (
            "name: x\ncatalog: {stock: [50, 5]}\n",
            "catalog.stock[1]: must be at least the low end 50",
        ),
        (
            "name: x\ncatalog: {stock: [1, 2000000]}\n",
            "catalog.stock[1]: must be at most 1,000,000, got 2000000",
        ),
        ("name: x\ncatalog: {price_cents: {beer: [1, 2]}}\n", "catalog.price_cents.beer: unknown"),
        (
            "name: x\ncatalog: {categories: [wine], price_cents: {cheese: [1, 2]}}\n",
            "catalog.price_cents.cheese: category 'cheese' is not in catalog.categories",
        ),
        (
            "name: x\ncatalog: {sku_count: 10, flash_count: 11}\n",
            "catalog.flash_count: must be at most sku_count (10), got 11",
        ),
        ("name: x\ncatalog: {countries: []}\n", "catalog.countries: needs at least one country"),
        ("name: x\ncatalog: {countries: [FR, FR]}\n", "catalog.countries[1]: country 'FR' is"),
        (
            "name: x\ncurve: {peak_offset_s: 90000}\n",
            "curve.peak_offset_s: must be within the horizon (86400 s), got 90000",
        ),
        (
            "name: x\ncurve: {shape: step, steps: [[0, 1], [5, 0.5], [5, 0.2]]}\n",
            "curve.steps[2][0]: must be later than the step before (5), got 5",
        ),
        ("name: x\ncurve: {shape: step, steps: [[1, 1]]}\n", "curve.steps[0][0]: the first step"),
        ("name: x\ncurve: {shape: step}\n", "curve.steps: a step curve needs steps"),
        ("name: x\ncurve: {shape: step, steps: [[0, 0]]}\n", "curve.steps: every step within"),
        ("name: x\ncurve: {shape: constant, decay_s: 3}\n", "curve.decay_s: not used by shape"),
        ("name: x\ncurve: {shape: csv}\n", "curve.points: a csv curve needs points"),
        ("name: x\ncurve: {shape: square, duty: 1}\n", "curve.duty: must be less than 1, got 1"),
        (
            "name: x\ncurve: {evening_bump: {at_s: 99999, width_s: 60, height_fraction: 0.1}}\n",
            "curve.evening_bump.at_s: must be within the horizon",
        ),
        ("name: x\ncurve: {evening_bump: {at_s: 60}}\n", "curve.evening_bump.width_s: is missing"),
        (
            "name: x\nmix: {basket_mean_lines: 7}\n",
            "mix.basket_mean_lines: must be at most basket_max_lines (6), got 7",
        ),
        (
            "name: x\nmix: {payment_failure_rate: 0.6, cancellation_rate: 0.5}\n",
            "mix.cancellation_rate: payment_failure_rate + cancellation_rate must be at most 1",
        ),
        (
            "name: x\nmix: {out_of_order_delay: {mean_s: 20}}\n",
            "mix.out_of_order_delay.mean_s: must be at most max_s (10), got 20",
        ),
        ("name: x\nmix: {out_of_order_delay: {distribution: pareto}}\n", "distribution: must be"),
        (
            "name: x\ncatalog: {flash_share: 0}\nmix: {bot_share: 0.1}\n",
            "mix.bot_share: bots buy flash-sale SKUs and the catalog has none",
        ),
        (
            "name: x\ncatalog: {sku_count: 2, flash_count: 2}\n",
            "popularity.hot_share: must be 1 when every SKU is a flash-sale SKU, got 0.1",
        ),
        (
            "name: x\nscale: {peak_per_s: 1.0e+9, sample_ratio: 1, compression: 100}\n",
            "scale: emits 100,000,000,000 orders per wall second at the peak",
        ),
        ("name: x\n1: 2\n", "[1]: field names must be text, got 1"),
        ("name: x\nsources: a book\n", "sources: expected a list, got 'a book'"),
        (
            "name: X\nseed: -1\n",
            "name: must be lowercase letters, digits and '-', got 'X'; seed: must be at least 0",
        ),
    ],
)
def test_a_bad_file_gives_one_line_naming_the_file_and_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, "my.yaml", text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"{path}: ")
    assert message in line


def test_numbers_pyyaml_reads_as_text_still_count_as_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads 5.83e5 (no sign in the exponent) as a string.
    path = _write(tmp_path, "x.yaml", "name: x\nscale: {peak_per_s: 5.83e5}\n")
    assert load_scenario(path).scale.peak_per_s == 583_000


def test_a_missing_file_or_a_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"nope\.yaml: no such file$"):
        load_scenario(tmp_path / "nope.yaml")
    with pytest.raises(ScenarioError, match="is a folder"):
        load_scenario(tmp_path)


def test_an_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ScenarioError) as info:
        get_scenario("singles-day")
    assert "unknown scenario 'singles-day'" in str(info.value)
    for name in PRESETS:
        assert name in str(info.value)
    with pytest.raises(ScenarioError):
        load_scenario("black-friday")


# --- any input: a Scenario or a one-line ScenarioError -------------------------------------

_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.sampled_from([0, 1, -1, 0.5, 1e308, -1e-308, 86_400, 2**63, "", "1e5", "inf", "FR"])
    | st.text(max_size=12)
    | st.datetimes(timezones=st.none() | st.just(UTC))
    | st.dates()
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_DOCS = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(FIELD_NAMES) | st.text(max_size=8) | st.integers(), inner, max_size=6
        )
    ),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A folder that outlives hypothesis's examples (function-scoped tmp_path does not)."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def _load_or_error(folder: Path, text: str) -> Scenario | None:
    """Load `text` as a file; a valid scenario must also build its curve and catalog."""
    path = _write(folder, "fuzz.yaml", text)
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        line = str(exc)
        assert len(line.splitlines()) == 1, line
        assert line.startswith(f"{path}: ")
        return None
    curve = Curve(scenario)
    total = curve.cumulative(scenario.curve.horizon_s)
    assert 0 < total < float("inf")
    assert 0 <= curve.share_by(scenario.curve.horizon_s / 2) <= 1
    if scenario.catalog.sku_count <= 2_000:
        catalog = Catalog.for_scenario(scenario)
        assert len(catalog.flash_indices) == scenario.catalog.flash_sku_count
    return scenario


_FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(doc=_DOCS)
def test_any_yaml_document_loads_or_gives_a_one_line_error(scratch: Path, doc: object) -> None:
    _load_or_error(scratch, yaml.safe_dump(doc))


@_FUZZ
@given(text=st.text(max_size=200))
def test_any_text_loads_or_gives_a_one_line_error(scratch: Path, text: str) -> None:
    _load_or_error(scratch, text)


def _paths(node: object, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a document a value sits."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


def _near(value: object) -> st.SearchStrategy[Any]:
    """Values like `value`: the same kind, often in range, so some mutants stay valid."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _VALUES
    if not math.isfinite(value) or abs(value) > 1e12:  # a NaN drawn by an earlier mutation
        return _VALUES
    high = float(abs(value) * 3 + 1)
    return st.floats(0, high) | st.integers(0, int(high)) | st.sampled_from([0, 1, -value])


@_FUZZ
@given(data=st.data())
def test_a_preset_with_random_values_at_random_places_loads_or_errs_on_one_line(
    scratch: Path, data: st.DataObject
) -> None:
    doc = copy.deepcopy(_raw_preset(data.draw(st.sampled_from(PRESET_FILES))))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(sorted(set(_paths(doc)), key=repr)))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            # A field that may not belong here, or belongs to another shape.
            path = (*path[:-1], data.draw(st.sampled_from(FIELD_NAMES)))
            parent[path[-1]] = data.draw(_VALUES)
        else:
            parent[path[-1]] = data.draw(_near(parent[path[-1]]) | _VALUES)
    _load_or_error(scratch, yaml.safe_dump(doc))


def test_presets_round_trip_through_a_yaml_dump(scratch: Path) -> None:
    for name in PRESET_FILES:
        doc = _raw_preset(name)
        assert _load_or_error(scratch, yaml.safe_dump(doc)) == get_scenario(doc["name"])


# --- the documentation --------------------------------------------------------------------


def test_the_docs_example_file_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text("utf-8"), flags=re.DOTALL)
    complete = [b for b in blocks if b.startswith("# complete example")]
    assert len(complete) == 1
    scenario = load_scenario(_write(tmp_path, "example.yaml", complete[0]))
    assert scenario.curve.evening_bump is not None
    for block in blocks:
        assert isinstance(yaml.safe_load(block), dict)


def test_the_docs_name_every_field() -> None:
    text = DOC.read_text("utf-8")
    # A nested field may be written with its parent: `evening_bump.at_s`.
    missing = [name for name in FIELD_NAMES if not re.search(rf"[`.]{name}`", text)]
    assert not missing
    for scenario in list_presets():
        assert f"`{scenario.name}`" in text
