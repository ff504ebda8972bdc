"""The contract a system under test writes so that `flashsale verify --against` can judge it
(docs/contract.md): what one output record holds, at either level.

- `decisions`: one record per event on `orders` (per row of a packed message), naming the
  event by its position and giving its outcome and amount, as `docs/events.md`'s rules decide.
- `totals`: records a system keeps up to date, the newest of each key being its value: GMV by
  minute, country and category; units sold and stock by SKU; one record per sell-out.

The models here are the contract's single source: `docs/schemas/*.schema.json` are their JSON
Schemas (`schemas()`; a test checks the published files against them).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter

from flashsale.counters import OUTCOMES, RESTOCKED

__all__ = [
    "DECISION_OUTCOMES",
    "LEVELS",
    "Decision",
    "GmvTotal",
    "SellOut",
    "SkuTotal",
    "Total",
    "parse_decision",
    "parse_total",
    "schemas",
]

#: The two levels a system may be judged at.
LEVELS: Final = ("decisions", "totals")

#: Every outcome a decision may carry: the rules' outcomes, a restock's, and `dlq` for a
#: message that breaks the event schema.
DECISION_OUTCOMES: Final = (*OUTCOMES, RESTOCKED, "dlq")

_Count = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
_Cents = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
_MODEL = ConfigDict(extra="allow", frozen=True)


class Decision(BaseModel):
    """The decision on one event of `orders`."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        title="flashsale decision",
        json_schema_extra={
            "description": "The decision of a system under test on one event of topic "
            "`orders` (flashsale verify --against TOPIC --level decisions). Other fields are "
            "allowed and ignored. The record's Kafka timestamp is taken as the time of the "
            "decision."
        },
    )

    partition: _Count = Field(description="The event's partition on `orders`.")
    offset: _Count = Field(description="The event's offset on `orders`.")
    index: _Count | None = Field(
        default=None,
        description="The event's row in a packed message (header `flashsale.packed`); "
        "absent or null for a message of one event.",
    )
    outcome: Literal[DECISION_OUTCOMES] = Field(  # type: ignore[valid-type]
        description="What the rules decide (docs/events.md#the-rules): `dlq` for a message "
        "that breaks the event schema."
    )
    amount_cents: _Cents = Field(
        description="The line's amount in euro cents (quantity x unit price, as reserved at "
        "`created`) for accepted, paid, cancelled and refunded; 0 for any other outcome."
    )

    @property
    def position(self) -> tuple[int, ...]:
        """The event's position on `orders` (`verify.records.Position`)."""
        where = (self.partition, self.offset)
        return where if self.index is None else (*where, self.index)


class GmvTotal(BaseModel):
    """Paid GMV of one minute, country and category."""

    model_config = _MODEL
    kind: Literal["gmv"]
    minute_start_ms: _Count = Field(
        description="Start of the event-time minute of the `paid` events, epoch ms "
        "(a multiple of 60,000)."
    )
    country: StrictStr
    category: StrictStr
    gmv_cents: _Cents = Field(
        description="Amounts of the lines paid in that minute, country and category, euro cents."
    )

    @property
    def key(self) -> tuple[str, int, str, str]:
        return ("gmv", self.minute_start_ms, self.country, self.category)


class SkuTotal(BaseModel):
    """Units sold and stock on hand of one SKU."""

    model_config = _MODEL
    kind: Literal["sku"]
    sku: StrictStr
    units_sold: _Count = Field(description="Units of the SKU's paid lines (refunds do not return).")
    stock: _Cents = Field(
        description="Units on hand: restocked, minus accepted reservations, plus cancelled ones."
    )

    @property
    def key(self) -> tuple[str, str]:
        return ("sku", self.sku)


class SellOut(BaseModel):
    """A SKU's stock reaching zero."""

    model_config = _MODEL
    kind: Literal["sold_out"]
    sku: StrictStr
    event_ts_ms: _Count = Field(
        description="Event time of the `created` event whose reservation took the last unit."
    )

    @property
    def key(self) -> tuple[str, str, int]:
        return ("sold_out", self.sku, self.event_ts_ms)


Total = Annotated[GmvTotal | SkuTotal | SellOut, Field(discriminator="kind")]

_DECISION: Final = TypeAdapter(Decision)
_TOTAL: Final = TypeAdapter(Total)


def parse_decision(value: bytes | None) -> Decision:
    """A decision record's value; a `pydantic.ValidationError` (a `ValueError`) when it is
    not one."""
    return _DECISION.validate_json(value or b"")


def parse_total(value: bytes | None) -> GmvTotal | SkuTotal | SellOut:
    """A totals record's value; a `pydantic.ValidationError` when it is not one."""
    return _TOTAL.validate_json(value or b"")


def schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each level's records, by level (docs/schemas/<level>.schema.json)."""
    total = _TOTAL.json_schema()
    total.update(
        title="flashsale totals record",
        description="A record of a system under test judged at the totals level (flashsale "
        "verify --against TOPIC --level totals): the newest record of each key is its value "
        "(gmv: minute, country, category; sku: sku; sold_out: sku and event time). Other "
        "fields are allowed and ignored.",
    )
    out = {"decisions": _DECISION.json_schema(), "totals": total}
    for schema in out.values():
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return out
