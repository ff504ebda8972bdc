"""A scenario's fault timeline: what fails, when on the scenario clock, and for how long.

```yaml
faults:
  - {at: "00:00:26", action: kill, target: "broker-leader-of:orders/0", for: 20s}
  - {at: "00:00:40", action: partition, target: broker-2, for: 10s}
  - {at: "00:01:00", action: restart, target: worker-1}
```

`at` is a time on the scenario clock (`HH:MM:SS`, `MM:SS`, `26s`, `1m30s` or a number of
seconds after the scenario's start), `for` a duration on the same clock; both reach the wall
clock through the scenario's `scale.compression`. The executor is `orchestration/faults.py`;
docs/reliability.md describes what each action does to each target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from flashsale.scenario.fields import MAX_SECONDS, Num, Problem, show

__all__ = ["ACTIONS", "FaultSpec", "FaultTarget", "parse_duration", "parse_target"]

ACTIONS: Final = ("kill", "stop", "restart", "partition", "stall")

# What each kind of target can suffer. `brokers` (all of them) only restart, one at a time.
_ALLOWED: Final[dict[str, tuple[str, ...]]] = {
    "broker": ("kill", "stop", "restart", "partition", "stall"),
    "brokers": ("restart",),
    "worker": ("kill", "stop", "restart", "stall"),
    "producer": ("stall",),
    "gateway": ("kill", "stop", "restart", "stall"),
}

_TARGET_FORMS: Final = (
    "broker-N, broker-leader-of:TOPIC/P, broker-controller, brokers, worker-N, producer, gateway"
)


@dataclass(frozen=True)
class FaultTarget:
    """A parsed target. `kind` is broker, brokers, worker, producer or gateway; a broker is
    named by `node` id, or by role: `role` leader (of `topic`/`partition`) or controller."""

    kind: str
    node: int | None = None
    role: str | None = None
    topic: str | None = None
    partition: int | None = None
    index: int | None = None

    def __str__(self) -> str:
        if self.kind == "broker":
            if self.role == "leader":
                return f"broker-leader-of:{self.topic}/{self.partition}"
            if self.role == "controller":
                return "broker-controller"
            return f"broker-{self.node}"
        if self.kind == "worker":
            return f"worker-{self.index}"
        return self.kind


def parse_target(text: str) -> FaultTarget:
    """`broker-2`, `broker-leader-of:orders/0`, `broker-controller`, `brokers`, `worker-1`,
    `producer` or `gateway`; anything else raises `Problem` naming the forms."""
    if text in ("brokers", "producer", "gateway"):
        return FaultTarget(text)
    if text == "broker-controller":
        return FaultTarget("broker", role="controller")
    if m := re.fullmatch(r"broker-leader-of:([A-Za-z0-9._-]{1,249})/(\d{1,6})", text):
        return FaultTarget("broker", role="leader", topic=m[1], partition=int(m[2]))
    if m := re.fullmatch(r"broker-([1-9]\d{0,3})", text):
        return FaultTarget("broker", node=int(m[1]))
    if m := re.fullmatch(r"worker-([1-9]\d{0,3})", text):
        return FaultTarget("worker", index=int(m[1]))
    raise Problem(f"expected one of {_TARGET_FORMS}; got {show(text)}")


_UNITS: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: object) -> float:
    """Seconds from a number, `HH:MM:SS`/`MM:SS` (fractional seconds allowed) or units
    (`10s`, `1m30s`, `1.5m`, `250ms`, `1h`)."""
    if isinstance(value, bool) or value is None:
        raise Problem(f"expected a time such as 26, 26s, 1m30s or 00:00:26, got {show(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if m := re.fullmatch(r"(?:(\d{1,3}):)?(\d{1,2}):(\d{1,2}(?:\.\d{1,6})?)", text):
            hours, minutes, secs = int(m[1] or 0), int(m[2]), float(m[3])
            if minutes >= 60 or secs >= 60:
                raise Problem(f"minutes and seconds must be below 60, got {show(value)}")
            seconds = hours * 3600 + minutes * 60 + secs
        elif text and re.fullmatch(r"(?:\d{1,9}(?:\.\d{1,6})?(?:h|ms|m|s))+", text):
            seconds = sum(
                float(n) * _UNITS[unit]
                for n, unit in re.findall(r"(\d{1,9}(?:\.\d{1,6})?)(h|ms|m|s)", text)
            )
        else:
            raise Problem(f"expected a time such as 26, 26s, 1m30s or 00:00:26, got {show(value)}")
    else:
        raise Problem(f"expected a time such as 26, 26s, 1m30s or 00:00:26, got {show(value)}")
    if not 0 <= seconds <= MAX_SECONDS:
        raise Problem(f"must be between 0 and {MAX_SECONDS:,.0f} s, got {show(value)}")
    return seconds


Time = Annotated[float, BeforeValidator(parse_duration)]


class FaultSpec(BaseModel):
    """One fault: `action` on `target` at scenario time `at`, undone after `for` (a stopped
    or killed target restarted, a cut-off broker reconnected, a stalled one resumed)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, populate_by_name=True
    )

    at: Time
    """Scenario seconds after the scenario's start."""
    action: Literal["kill", "stop", "restart", "partition", "stall"]
    target: str
    for_s: Time | None = Field(default=None, alias="for")
    """How long the fault lasts; required for partition and stall, none for restart. A kill
    or stop without it lasts until a later restart of the same target, or the run's end."""
    recover_p99_ms: Num = Field(default=1000.0, gt=0, le=3_600_000)
    """The end-to-end latency p99 the pipeline must be back under to count as recovered."""

    @field_validator("target")
    @classmethod
    def _target_form(cls, v: str) -> str:
        parse_target(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FaultSpec:
        target = parse_target(self.target)
        allowed = _ALLOWED[target.kind]
        if self.action not in allowed:
            raise Problem(
                f"{self.action} cannot be done to {self.target}; it can be: {', '.join(allowed)}",
                "action",
            )
        if self.action in ("partition", "stall") and self.for_s is None:
            raise Problem(f"a {self.action} needs `for`, how long it lasts", "for")
        if self.action == "restart" and self.for_s is not None:
            raise Problem("a restart takes no `for`; kill or stop with `for` instead", "for")
        if self.for_s is not None and self.for_s <= 0:
            raise Problem(f"must be more than 0, got {show(self.for_s)}", "for")
        return self

    @property
    def parsed_target(self) -> FaultTarget:
        """The target, parsed."""
        return parse_target(self.target)

    def describe(self) -> str:
        """`kill broker-leader-of:orders/0 at 26 s for 20 s` (scenario seconds)."""
        lasting = f" for {self.for_s:g} s" if self.for_s is not None else ""
        return f"{self.action} {self.target} at {self.at:g} s{lasting}"

    def as_yaml(self) -> dict[str, Any]:
        """The fault as a scenario file writes it."""
        out: dict[str, Any] = {"at": self.at, "action": self.action, "target": self.target}
        if self.for_s is not None:
            out["for"] = self.for_s
        if self.recover_p99_ms != 1000.0:
            out["recover_p99_ms"] = self.recover_p99_ms
        return out
