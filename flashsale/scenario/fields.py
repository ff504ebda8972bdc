"""The building blocks of scenario fields: number types that refuse YAML booleans, the frozen
model config, and the validators' complaint (`Problem`) with its one-line rendering of values.
Shared by the scenario model and its fault timeline."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Final

from pydantic import BeforeValidator, ConfigDict, Field

__all__ = [
    "MAX_SECONDS",
    "MODEL",
    "Fraction",
    "Int",
    "Num",
    "Problem",
    "Seconds",
    "kind",
    "not_bool",
    "show",
]

# Time parameters end up in event timestamps; a month bounds them well away from overflow.
MAX_SECONDS: Final = 31 * 86_400.0


class Problem(ValueError):
    """A validator's complaint, `at` a path below the field pydantic reports it on."""

    def __init__(self, message: str, *at: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.at = at


def not_bool(value: object) -> object:
    """Refuse YAML `true`/`false` where a number is expected (pydantic would read 1 and 0)."""
    if isinstance(value, bool):
        raise Problem(f"expected a number, got {show(value)}")
    return value


Num = Annotated[float, BeforeValidator(not_bool)]
Int = Annotated[int, BeforeValidator(not_bool)]
Fraction = Annotated[float, BeforeValidator(not_bool), Field(ge=0, le=1)]
# A duration or delay: from a millisecond (the event clock's unit) to a month.
Seconds = Annotated[float, BeforeValidator(not_bool), Field(ge=0.001, le=MAX_SECONDS)]

# Frozen, no unknown fields, no NaN or infinity anywhere.
MODEL = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def kind(value: object) -> str:
    """A YAML reader's name for the type of `value`."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def show(value: object) -> str:
    """A short, one-line rendering of a value for an error message."""
    if value is None or isinstance(value, Mapping | list | tuple):
        return kind(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))  # 0 rather than 0.0: the bound as the reader wrote it
    try:
        shown = repr(value) if isinstance(value, str) else str(value)
    except ValueError:  # an integer beyond Python's str() digit limit
        return "a huge number"
    return shown if len(shown) <= 60 else f"{shown[:57]}..."
