"""Scenario model, presets and loading: what is sold, on what traffic curve, at what scale.

A scenario is a YAML file (see docs/scenarios.md); the presets live in
`flashsale/scenario/presets/`.
Loading raises nothing but `ScenarioError`, whose message is one line naming the file, the
field and what was wrong. Models are frozen and self-contained (a csv curve's points are read
in at load time), so a `Scenario` pickles to worker processes as is.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from flashsale.events import MAX_QUANTITY, MAX_UNIT_PRICE_CENTS
from flashsale.scenario.faults import FaultSpec
from flashsale.scenario.fields import MAX_SECONDS, Fraction, Int, Num, Seconds
from flashsale.scenario.fields import MODEL as _MODEL
from flashsale.scenario.fields import Problem as _Problem
from flashsale.scenario.fields import kind as _kind
from flashsale.scenario.fields import show as _show

__all__ = [
    "CATEGORY_NAMES",
    "COUNTRIES",
    "DEFAULT_SCENARIO",
    "PRESETS",
    "CatalogSpec",
    "CurveSpec",
    "DelaySpec",
    "EveningBump",
    "OrderMix",
    "PopularitySpec",
    "ScaleSpec",
    "Scenario",
    "ScenarioError",
    "get_scenario",
    "list_presets",
    "load_scenario",
    "parse_scenario",
]

DEFAULT_SCENARIO: Final = "singles-day-2020"
"""The preset the demo runs."""

# What a scenario may name. The catalog (`catalog.py` beside this module) holds a table row for
# each and checks at import that it covers exactly these; they live here so the model validates
# without importing the catalog.
COUNTRIES: Final[tuple[str, ...]] = (
    "FR", "IT", "DE", "ES", "NL", "BE", "AT", "PT", "GB", "CH", "IE", "DK", "SE", "PL", "GR",
)  # fmt: skip
CATEGORY_NAMES: Final[tuple[str, ...]] = (
    "wine",
    "cosmetics",
    "fashion",
    "infant-formula",
    "handbags",
    "olive-oil",
    "chocolate",
    "cheese",
    "health-supplements",
    "kitchenware",
    "watches",
    "coffee",
)

MAX_SKUS: Final = 200_000
MAX_REAL_RATE: Final = 1e9
MAX_WALL_RATE: Final = 1e7
_START_MIN: Final = datetime(1970, 1, 1, tzinfo=UTC)
_START_MAX: Final = datetime(2100, 1, 1, tzinfo=UTC)


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; `str()` is one line: `<file>: <field>: <problem>`."""

    def __init__(self, problem: str, *, source: str | None = None, where: str | None = None):
        self.source = source
        self.where = where
        self.problem = problem
        parts = [p for p in (source, where, problem) if p]
        # One line whatever the input held: a file name or a YAML value may carry line breaks.
        super().__init__(" ".join(": ".join(parts).splitlines()))


def _range(pair: tuple[int, int], high_max: int) -> tuple[int, int]:
    """Check an inclusive (low, high) range of positive integers."""
    low, high = pair
    if low < 1:
        raise _Problem(f"must be at least 1, got {low}", 0)
    if high < low:
        raise _Problem(f"must be at least the low end {low}, got {high}", 1)
    if high > high_max:
        raise _Problem(f"must be at most {high_max:,}, got {high}", 1)
    return pair


def _known(values: tuple[str, ...], known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Check a non-empty list of distinct names from `known`."""
    if not values:
        raise _Problem(f"needs at least one {what}, got none")
    for i, value in enumerate(values):
        if value not in known:
            raise _Problem(f"unknown {what} {value!r}; known: {', '.join(sorted(known))}", i)
        if value in values[:i]:
            raise _Problem(f"{what} {value!r} is listed twice", i)
    return values


class _PriceRanges(dict[str, tuple[int, int]]):
    """The `price_cents` dict, hashable by its items so that a frozen Scenario hashes too."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))


class CatalogSpec(BaseModel):
    """The European catalog on sale: which SKUs, their prices and stock."""

    model_config = _MODEL

    sku_count: Int = Field(default=600, ge=1, le=MAX_SKUS)
    countries: tuple[str, ...] = ("FR", "IT", "DE", "ES", "NL", "BE", "AT", "PT")
    """Merchant countries; the first SKUs cover each once."""
    categories: tuple[str, ...] = CATEGORY_NAMES
    price_cents: dict[str, tuple[Int, Int]] = Field(default_factory=_PriceRanges)
    """Per-category override of the unit price range, inclusive, in euro cents."""
    stock: tuple[Int, Int] = (2_000, 30_000)
    """Inclusive range of initial units of an ordinary SKU."""
    flash_share: Fraction = 0.03
    """Share of SKUs that are flash-sale SKUs with small stock."""
    flash_count: Int | None = Field(default=None, ge=0)
    """Exact number of flash-sale SKUs; overrides `flash_share`."""
    flash_stock: tuple[Int, Int] = (20, 150)
    """Inclusive range of initial units of a flash-sale SKU."""

    @field_validator("countries")
    @classmethod
    def _countries_known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _known(v, COUNTRIES, "country")

    @field_validator("categories")
    @classmethod
    def _categories_known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _known(v, CATEGORY_NAMES, "category")

    @field_validator("stock", "flash_stock")
    @classmethod
    def _stock_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        # A restock carries a SKU's whole stock as its quantity: the event's bound applies.
        return _range(v, MAX_QUANTITY)

    @field_validator("price_cents")
    @classmethod
    def _price_ranges(cls, v: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        for category, pair in v.items():
            if category not in CATEGORY_NAMES:
                known = ", ".join(sorted(CATEGORY_NAMES))
                raise _Problem(f"unknown category {category!r}; known: {known}", category)
            try:
                _range(pair, MAX_UNIT_PRICE_CENTS)
            except _Problem as exc:
                raise _Problem(exc.message, category, *exc.at) from None
        return _PriceRanges(v)

    @model_validator(mode="after")
    def _consistent(self) -> CatalogSpec:
        if self.flash_count is not None and self.flash_count > self.sku_count:
            raise _Problem(
                f"must be at most sku_count ({self.sku_count}), got {self.flash_count}",
                "flash_count",
            )
        for category in self.price_cents:
            if category not in self.categories:
                raise _Problem(
                    f"category {category!r} is not in catalog.categories", "price_cents", category
                )
        return self

    @property
    def flash_sku_count(self) -> int:
        """How many SKUs are flash-sale SKUs: `flash_count`, else `flash_share` of the SKUs."""
        if self.flash_count is not None:
            return self.flash_count
        return round(self.flash_share * self.sku_count)


class PopularitySpec(BaseModel):
    """How shoppers pick SKUs: Zipf over ordinary SKUs, a fixed share on flash-sale SKUs."""

    model_config = _MODEL

    zipf_exponent: Num = Field(default=1.05, ge=0, le=10)
    """Ordinary SKU of popularity rank r has weight 1 / r**zipf_exponent."""
    hot_share: Fraction = 0.10
    """Share of order lines that pick a flash-sale SKU (none when there are no flash SKUs)."""


class EveningBump(BaseModel):
    """A Gaussian added on top of the midnight spike: the evening rush before the day ends."""

    model_config = _MODEL

    at_s: Num = Field(ge=0, le=MAX_SECONDS)
    """Centre, in seconds after 00:00 of the day (79,200 = 22:00)."""
    width_s: Seconds
    """Standard deviation, seconds."""
    height_fraction: Fraction
    """Height as a fraction of the peak rate."""


CurveShape = Literal["midnight-spike", "constant", "step", "ramp", "sine", "square", "csv"]

# The parameters each shape reads; setting another shape's parameter is a mistake we report.
_SHAPE_FIELDS: Final[dict[str, frozenset[str]]] = {
    "midnight-spike": frozenset(
        {"peak_offset_s", "start_fraction", "decay_s", "floor_fraction", "evening_bump"}
    ),
    "constant": frozenset(),
    "step": frozenset({"steps"}),
    "ramp": frozenset({"from_fraction", "to_fraction", "ramp_s"}),
    "sine": frozenset({"period_s", "low_fraction"}),
    "square": frozenset({"period_s", "low_fraction", "duty"}),
    "csv": frozenset({"path", "points"}),
}
_ALL_SHAPE_FIELDS: Final = frozenset().union(*_SHAPE_FIELDS.values())


class CurveSpec(BaseModel):
    """The order rate over the day as a fraction of the peak, on the scenario clock.

    Time `t` counts scenario seconds after `Scenario.start`; formulas in docs/scenarios.md.
    """

    model_config = _MODEL

    shape: CurveShape = "midnight-spike"
    # midnight-spike
    peak_offset_s: Num = Field(default=26.0, ge=0)
    start_fraction: Fraction = 0.1
    decay_s: Seconds = 240.0
    floor_fraction: Fraction = 0.2
    evening_bump: EveningBump | None = None
    # step: (at_s, fraction) pairs, the first at 0
    steps: tuple[tuple[Num, Num], ...] = ()
    # ramp
    from_fraction: Fraction = 0.0
    to_fraction: Fraction = 1.0
    ramp_s: Seconds = 60.0
    # sine and square
    period_s: Seconds = 60.0
    low_fraction: Fraction = 0.2
    duty: Num = Field(default=0.5, gt=0, lt=1)
    # csv: (second, real orders per scenario second) points, read from `path` by the loader
    path: str | None = None
    points: tuple[tuple[Num, Num], ...] = ()
    horizon_s: Seconds = 86_400.0
    """The length of "the day": calibration shares and plots run over it."""

    @model_validator(mode="after")
    def _fits_shape(self) -> CurveSpec:
        # A parameter of another shape is a mistake only when it differs from its default:
        # a dumped scenario (every field written out) must load back as it was.
        fields = type(self).model_fields
        stray = sorted(
            name
            for name in (self.model_fields_set & _ALL_SHAPE_FIELDS) - _SHAPE_FIELDS[self.shape]
            if getattr(self, name) != fields[name].default
        )
        if stray:
            raise _Problem(f"not used by shape {self.shape!r}", stray[0])
        horizon = self.horizon_s
        if self.shape == "midnight-spike":
            if self.peak_offset_s > horizon:
                raise _Problem(
                    f"must be within the horizon ({horizon:g} s), got {self.peak_offset_s:g}",
                    "peak_offset_s",
                )
            bump = self.evening_bump
            if bump is not None and bump.at_s > horizon:
                raise _Problem(
                    f"must be within the horizon ({horizon:g} s), got {bump.at_s:g}",
                    "evening_bump",
                    "at_s",
                )
        elif self.shape == "ramp" and self.from_fraction == self.to_fraction == 0:
            raise _Problem("a ramp from 0 to 0 has no orders", "to_fraction")
        elif self.shape == "step":
            _check_steps(self.steps, horizon)
        elif self.shape == "csv":
            _check_points(self.points, horizon)
        return self


def _check_steps(steps: tuple[tuple[float, float], ...], horizon: float) -> None:
    """Steps start at 0, rise strictly in time within the horizon, and some carry orders."""
    if not steps:
        raise _Problem("a step curve needs steps: [[0, fraction], [at_s, fraction], ...]", "steps")
    for i, (at, fraction) in enumerate(steps):
        if i == 0 and at != 0:
            raise _Problem(f"the first step must start at 0, got {at:g}", "steps", 0, 0)
        if i > 0 and at <= steps[i - 1][0]:
            raise _Problem(
                f"must be later than the step before ({steps[i - 1][0]:g}), got {at:g}",
                "steps",
                i,
                0,
            )
        if at > horizon:
            raise _Problem(f"must be within the horizon ({horizon:g} s), got {at:g}", "steps", i, 0)
        if not 0 <= fraction <= 1:
            raise _Problem(f"must be between 0 and 1, got {fraction:g}", "steps", i, 1)
    if not any(f > 0 for at, f in steps if at < horizon):
        raise _Problem("every step within the horizon is 0: the day has no orders", "steps")


def _check_points(points: tuple[tuple[float, float], ...], horizon: float) -> None:
    """Csv points rise strictly in time from 0 on, with rates in range, and some carry orders."""
    if not points:
        raise _Problem("a csv curve needs points (load_scenario reads them from path)", "points")
    for i, (second, rate) in enumerate(points):
        if second < 0:
            raise _Problem(f"must be at least 0, got {second:g}", "points", i, 0)
        if i > 0 and second <= points[i - 1][0]:
            raise _Problem(
                f"must be later than the point before ({points[i - 1][0]:g}), got {second:g}",
                "points",
                i,
                0,
            )
        if not 0 <= rate <= MAX_REAL_RATE:
            raise _Problem(
                f"must be between 0 and {MAX_REAL_RATE:.0e} orders/s, got {rate:g}", "points", i, 1
            )
    # The rate is positive somewhere before the horizon if a positive point, or the segment
    # rising to one, starts before it.
    if not any(
        r > 0 and (s < horizon or (i > 0 and points[i - 1][0] < horizon))
        for i, (s, r) in enumerate(points)
    ):
        raise _Problem("the rate is 0 all through the horizon: the day has no orders", "points")


class ScaleSpec(BaseModel):
    """From real orders to emitted ones: sampling and time compression."""

    model_config = _MODEL

    peak_per_s: Num = Field(default=583_000.0, gt=0, le=MAX_REAL_RATE)
    """Real orders per scenario second at curve fraction 1.0 (a csv curve's rates are absolute)."""
    sample_ratio: Num = Field(default=0.005, gt=0, le=1)
    """Share of the real orders that are emitted."""
    compression: Num = Field(default=1.0, gt=0, le=1e6)
    """Scenario seconds per wall-clock second."""


class DelaySpec(BaseModel):
    """A random delay: exponential (truncated at `max_s`) or uniform on [0, max_s]."""

    model_config = _MODEL

    distribution: Literal["exponential", "uniform"] = "exponential"
    mean_s: Seconds = 1.0
    max_s: Seconds = 10.0

    @model_validator(mode="after")
    def _mean_below_max(self) -> DelaySpec:
        if self.distribution == "exponential" and self.mean_s > self.max_s:
            raise _Problem(f"must be at most max_s ({self.max_s:g}), got {self.mean_s:g}", "mean_s")
        return self


class OrderMix(BaseModel):
    """What orders look like and what happens to them after they are placed."""

    model_config = _MODEL

    basket_mean_lines: Num = Field(default=1.3, ge=1, le=20)
    """Mean order lines per order; a basket is split into lines keyed by SKU."""
    basket_max_lines: Int = Field(default=6, ge=1, le=20)
    duplicate_rate: Num = Field(default=0.01, ge=0, le=0.5)
    """Share of events a client sends twice."""
    duplicate_max_delay_s: Seconds = 2.0
    """A retry arrives within this many scenario seconds."""
    out_of_order_share: Fraction = 0.02
    """Share of events delivered late."""
    out_of_order_delay: DelaySpec = DelaySpec()
    pay_delay_mean_s: Seconds = 20.0
    """Created to paid, exponential."""
    unpaid_timeout_s: Seconds = 900.0
    """A failed payment is cancelled this long after the order was created."""
    payment_failure_rate: Fraction = 0.02
    cancellation_rate: Fraction = 0.03
    """Share of orders the buyer cancels before paying, uniform in [0, unpaid_timeout_s)."""
    refund_rate: Fraction = 0.01
    """Share of paid lines refunded later."""
    refund_delay_mean_s: Seconds = 3_600.0
    bot_share: Fraction = 0.0
    """Share of orders placed by bots, each buying one flash-sale SKU."""

    @model_validator(mode="after")
    def _consistent(self) -> OrderMix:
        if self.basket_mean_lines > self.basket_max_lines:
            raise _Problem(
                f"must be at most basket_max_lines ({self.basket_max_lines}), "
                f"got {self.basket_mean_lines:g}",
                "basket_mean_lines",
            )
        if self.payment_failure_rate + self.cancellation_rate > 1:
            raise _Problem(
                "payment_failure_rate + cancellation_rate must be at most 1, got "
                f"{self.payment_failure_rate:g} + {self.cancellation_rate:g}",
                "cancellation_rate",
            )
        return self


class Scenario(BaseModel):
    """A complete, reproducible peak-day scenario."""

    model_config = _MODEL

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)
    description: str = ""
    sources: tuple[str, ...] = ()
    """Citations for the figures the scenario is calibrated on."""
    seed: Int = Field(default=11, ge=0, lt=2**63)
    start: datetime = datetime(2020, 11, 10, 16, 0, tzinfo=UTC)
    """Scenario time 0: 00:00 on 11 November China time (UTC+8). A naive time is UTC."""
    catalog: CatalogSpec = CatalogSpec()
    popularity: PopularitySpec = PopularitySpec()
    curve: CurveSpec = CurveSpec()
    scale: ScaleSpec = ScaleSpec()
    mix: OrderMix = OrderMix()
    window_grace_s: Num = Field(default=2.0, ge=0, le=3600)
    """How late (scenario seconds behind the newest event of its partition) an event may
    arrive and still count in its 1 s and 1 min windows; the workers `flashsale demo` starts
    use it."""
    faults: tuple[FaultSpec, ...] = ()
    """The fault timeline (`flashsale/scenario/faults.py`): what `demo`, `loadtest` and `soak`
    break, when on the scenario clock, and for how long."""

    @field_validator("start")
    @classmethod
    def _start_in_range(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        if not _START_MIN <= v < _START_MAX:
            raise _Problem(f"must be in 1970..2099, got {v.isoformat()}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        flash = self.catalog.flash_sku_count
        if flash == self.catalog.sku_count and self.popularity.hot_share != 1:
            raise _Problem(
                f"must be 1 when every SKU is a flash-sale SKU, got {self.popularity.hot_share:g}",
                "popularity",
                "hot_share",
            )
        if flash == 0 and self.mix.bot_share > 0:
            raise _Problem(
                f"bots buy flash-sale SKUs and the catalog has none, got {self.mix.bot_share:g}",
                "mix",
                "bot_share",
            )
        for i, fault in enumerate(self.faults):
            if fault.at > self.curve.horizon_s:
                raise _Problem(
                    f"must be within the curve's horizon ({self.curve.horizon_s:g} s), "
                    f"got {fault.at:g}",
                    "faults",
                    i,
                    "at",
                )
        if self.peak_wall_rate > MAX_WALL_RATE:
            raise _Problem(
                f"emits {self.peak_wall_rate:,.0f} orders per wall second at the peak "
                f"(rate x sample_ratio x compression); at most {MAX_WALL_RATE:,.0f}",
                "scale",
            )
        return self

    @property
    def peak_real_rate(self) -> float:
        """Real orders per scenario second at curve fraction 1.0 (a csv curve: its top point)."""
        if self.curve.shape == "csv":
            return max(rate for _, rate in self.curve.points)
        return self.scale.peak_per_s

    @property
    def peak_wall_rate(self) -> float:
        """Emitted orders per wall second at curve fraction 1.0 (a csv curve: its top point)."""
        return self.peak_real_rate * self.scale.sample_ratio * self.scale.compression

    def with_seed(self, seed: int | None) -> Scenario:
        """This scenario with another seed (None keeps its own)."""
        if seed is None:
            return self
        if isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise ScenarioError(f"must be in 0..2**63-1, got {seed!r}", where="seed")
        return self.model_copy(update={"seed": seed})


# --- loading -------------------------------------------------------------------------------


def parse_scenario(data: object, source: str = "<scenario>") -> Scenario:
    """Validate parsed YAML (or any Python data) into a `Scenario`; `ScenarioError` if invalid."""
    if not isinstance(data, Mapping):
        raise ScenarioError(
            f"expected a mapping, got {_kind(data)}", source=source, where="top level"
        )
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors()]
        where, problem = problems[0]
        if len(problems) > 1:
            problem += "; " + "; ".join(f"{w}: {p}" for w, p in problems[1:])
        raise ScenarioError(problem, source=source, where=where) from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A preset by name, or the scenario in a `.yaml`/`.yml` file; `ScenarioError` if invalid."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        return _load_file(Path(name_or_path))
    return get_scenario(text)


def _load_file(path: Path) -> Scenario:
    """Read, parse and validate one YAML file."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("no such file", source=source) from None
    except IsADirectoryError:
        raise ScenarioError("is a folder, not a YAML file", source=source) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"not UTF-8 text (byte {exc.start})", source=source) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read ({exc.strerror})", source=source) from None
    return _load_text(text, source, path.parent)


def _load_text(text: str, source: str, base_dir: Path) -> Scenario:
    """Parse YAML text; a csv curve's `path` is read relative to `base_dir`."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark is not None else None
        reason = exc.problem or exc.context or "malformed"
        raise ScenarioError(f"not valid YAML ({reason})", source=source, where=where) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        # PyYAML raises ValueError for a timestamp such as 2020-13-45, and for huge integers.
        raise ScenarioError(f"not valid YAML ({exc})", source=source) from None
    if not isinstance(data, dict):
        raise ScenarioError(
            f"expected a mapping, got {_kind(data)}", source=source, where="top level"
        )
    curve = data.get("curve")
    if isinstance(curve, dict) and curve.get("shape") == "csv" and curve.get("path") is not None:
        return _with_csv_points(data, curve, source, base_dir)
    return parse_scenario(data, source)


def _with_csv_points(
    data: dict[Any, Any], curve: dict[Any, Any], source: str, base_dir: Path
) -> Scenario:
    """Read the csv curve's points into the document, then validate; errors name the csv."""
    rel = curve["path"]
    if not isinstance(rel, str):
        raise ScenarioError(
            f"expected a file name, got {_kind(rel)}", source=source, where="curve.path"
        )
    if curve.get("points"):
        raise ScenarioError("give path or points, not both", source=source, where="curve.path")
    csv_path = base_dir / rel
    points, lines = _read_csv(csv_path, source)
    try:
        return parse_scenario({**data, "curve": {**curve, "points": points}}, source)
    except ScenarioError as exc:
        match = re.fullmatch(r"curve\.points\[(\d+)\](?:\[(\d)\])?", exc.where or "")
        if match is None:
            raise
        column = ("second", "rate")[int(match[2])] if match[2] else "row"
        first_problem = exc.problem.split("; ", 1)[0]
        raise ScenarioError(
            f"{csv_path}: line {lines[int(match[1])]}: {column} {first_problem}",
            source=source,
            where="curve.path",
        ) from None


def _read_csv(path: Path, source: str) -> tuple[list[tuple[float, float]], list[int]]:
    """The `second,rate` rows of a csv file, and the line number of each."""

    def fail(problem: str) -> ScenarioError:
        return ScenarioError(f"{path}: {problem}", source=source, where="curve.path")

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail("no such file") from None
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise fail(f"cannot read ({exc.strerror})") from None
    points: list[tuple[float, float]] = []
    lines: list[int] = []
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise fail(f"not valid csv ({exc})") from None
    header = [cell.strip() for cell in rows[0]] if rows else []
    if header != ["second", "rate"]:
        raise fail(f"line 1: expected the header 'second,rate', got {','.join(header)!r}")
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise fail(f"line {line}: expected 2 values (second,rate), got {len(row)}")
        try:
            second, rate = float(row[0]), float(row[1])
        except ValueError:
            raise fail(f"line {line}: expected two numbers, got {','.join(row)!r}") from None
        if not (math.isfinite(second) and math.isfinite(rate)):
            raise fail(f"line {line}: expected finite numbers, got {','.join(row)!r}")
        points.append((second, rate))
        lines.append(line)
    if not points:
        raise fail("no data rows after the header")
    return points, lines


# --- presets -------------------------------------------------------------------------------


def _load_presets() -> dict[str, Scenario]:
    """Every YAML file in flashsale/scenario/presets/, by name; a file's name must be its stem."""
    found: dict[str, Scenario] = {}
    folder = resources.files("flashsale.scenario").joinpath("presets")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        scenario = _load_text(
            entry.read_text(encoding="utf-8"), entry.name, Path(str(entry)).parent
        )
        stem = entry.name.removesuffix(".yaml")
        if scenario.name != stem:
            raise ScenarioError(
                f"must be the file's name {stem!r}", source=entry.name, where="name"
            )
        found[stem] = scenario
    return found


class _Presets(Mapping[str, Scenario]):
    """The presets by name, read from the package on first use."""

    def __init__(self) -> None:
        self._loaded: dict[str, Scenario] | None = None

    def _all(self) -> dict[str, Scenario]:
        if self._loaded is None:
            self._loaded = _load_presets()
        return self._loaded

    def __getitem__(self, name: str) -> Scenario:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


PRESETS: Final[Mapping[str, Scenario]] = _Presets()
"""Preset scenarios by name, sorted; loaded lazily from flashsale/scenario/presets/*.yaml."""


def list_presets() -> list[Scenario]:
    """Every preset, sorted by name."""
    return list(PRESETS.values())


def get_scenario(name: str) -> Scenario:
    """A preset by name; `ScenarioError` lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ScenarioError(
            f"unknown scenario {name!r}; known: {known} (or give a path to a .yaml file)"
        ) from None


# --- error messages ------------------------------------------------------------------------


def _describe(err: Any) -> tuple[str, str]:
    """(dotted field, problem) for one pydantic error, in our one-line wording."""
    loc: list[str | int] = [part for part in err["loc"] if part != "[key]"]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _Problem):
        loc.extend(cause.at)
        return _dotted(loc), cause.message
    return _dotted(loc), _wording(err)


def _dotted(loc: list[str | int]) -> str:
    """('catalog', 'countries', 2) -> 'catalog.countries[2]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "top level"


def _wording(err: Any) -> str:
    """Pydantic's message for one error, rephrased as 'expected/must be ..., got ...'."""
    kind: str = err["type"]
    ctx = err.get("ctx") or {}
    got = _show(err.get("input"))
    bounds = {
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {_show(ctx.get(key))}, got {got}"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "invalid_key":
        return f"field names must be text, got {got}"
    if kind == "missing":
        return "is missing"
    if kind == "finite_number":
        return f"must be a finite number, got {got}"
    if kind == "float_type" and isinstance(err.get("input"), int):
        return f"must be a finite number of sensible size, got {got}"
    if kind in ("float_type", "float_parsing", "int_type", "int_parsing", "int_from_float"):
        what = "a number" if kind.startswith("float") else "a whole number"
        return f"expected {what}, got {got}"
    if kind.startswith("datetime") or kind.startswith("timezone"):
        return f"expected a date-time such as 2020-11-10T16:00:00Z, got {got}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}, got {got}"
    if kind == "string_pattern_mismatch":
        return f"must be lowercase letters, digits and '-', got {got}"
    if kind in ("string_type", "string_too_long", "string_too_short"):
        return (
            f"expected {'a name' if kind == 'string_type' else 'at most 64 characters'}, got {got}"
        )
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {got}"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {got}"
    if kind in ("too_long", "too_short"):
        wanted = ctx.get("max_length" if kind == "too_long" else "min_length")
        return f"expected {wanted} items, got {ctx.get('actual_length', 'another count')}"
    message = str(err.get("msg", "invalid"))
    return f"{message[:1].lower()}{message[1:]}, got {got}"
