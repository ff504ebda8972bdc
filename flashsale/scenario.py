"""Scenario model and presets: what catalog is sold, on what traffic curve, at what scale."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PRESETS", "CatalogSpec", "CurveSpec", "OrderMix", "Scenario", "get_scenario"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class CatalogSpec(BaseModel):
    """The European catalog on sale."""

    model_config = _FROZEN

    sku_count: int = Field(default=600, ge=8)
    countries: tuple[str, ...] = ("FR", "IT", "DE", "ES", "NL", "BE", "AT", "PT")
    flash_share: float = Field(default=0.03, ge=0, le=1)
    """Share of SKUs that are flash-sale items with small stock."""
    flash_stock: tuple[int, int] = (20, 150)
    """Inclusive range of initial units of a flash-sale SKU."""
    stock: tuple[int, int] = (2_000, 30_000)
    """Inclusive range of initial units of an ordinary SKU."""
    zipf_exponent: float = Field(default=1.05, ge=0)
    """Popularity skew over SKUs (rank r has weight 1 / r**s)."""
    flash_popularity_boost: float = Field(default=8.0, ge=0)
    """Flash-sale SKUs draw this many times the weight of their rank."""


class CurveSpec(BaseModel):
    """A Singles' Day curve on the scenario clock, scaled to a wall-clock peak rate.

    From 00:00 China time the rate climbs from `start_fraction` of the peak to the peak at
    `peak_offset_s`, then decays exponentially with time constant `decay_s` towards
    `floor_fraction` of the peak. `compression` scenario seconds pass per wall second.
    """

    model_config = _FROZEN

    shape: str = Field(default="midnight-spike", pattern="^(midnight-spike|constant)$")
    peak_rate: float = Field(default=4_000.0, gt=0)
    """Orders per wall-clock second at the peak."""
    peak_offset_s: float = Field(default=26.0, ge=0)
    start_fraction: float = Field(default=0.1, ge=0, le=1)
    decay_s: float = Field(default=240.0, gt=0)
    floor_fraction: float = Field(default=0.2, ge=0, le=1)
    compression: float = Field(default=10.0, gt=0)
    start: datetime = datetime(2020, 11, 10, 16, 0, tzinfo=UTC)
    """00:00 on 11 November, China Standard Time (UTC+8)."""


class OrderMix(BaseModel):
    """How orders look: quantities, duplicates from client retries."""

    model_config = _FROZEN

    duplicate_rate: float = Field(default=0.01, ge=0, le=0.5)
    """Share of orders a client sends twice."""
    duplicate_max_delay: int = Field(default=400, ge=1)
    """A retry arrives at most this many orders after the original."""


class Scenario(BaseModel):
    """A complete, reproducible peak-day scenario."""

    model_config = _FROZEN

    name: str
    description: str = ""
    seed: int = 11
    catalog: CatalogSpec = CatalogSpec()
    curve: CurveSpec = CurveSpec()
    mix: OrderMix = OrderMix()

    @model_validator(mode="after")
    def _stock_ranges_ordered(self) -> Scenario:
        for name in ("flash_stock", "stock"):
            low, high = getattr(self.catalog, name)
            if not 0 < low <= high:
                raise ValueError(f"catalog.{name} must be 0 < low <= high, got {low}..{high}")
        return self

    def with_seed(self, seed: int | None) -> Scenario:
        """This scenario with another seed (None keeps its own)."""
        return self if seed is None else self.model_copy(update={"seed": seed})


PRESETS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="singles-day",
            description=(
                "Midnight spike: peak 26 s after 00:00 China time (as in 2020), decaying over "
                "minutes; 10x time compression, 4,000 orders/s at the peak."
            ),
        ),
        Scenario(
            name="steady",
            description="Constant 2,000 orders/s, for soak tests.",
            curve=CurveSpec(shape="constant", peak_rate=2_000.0, compression=1.0),
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    """A preset by name; `KeyError` lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(sorted(PRESETS))}") from None
