"""A recorded run verified from its files alone, and the summary figures two runs must share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from recordings.format import MANIFEST, RecordedRun, RunDirError
from verify.summary import BUSINESS_FIELDS

if TYPE_CHECKING:
    from verify.reconcile import VerifyResult

__all__ = ["business_differences", "verify_recorded"]


def verify_recorded(run: RecordedRun) -> VerifyResult:
    """`reconcile` on the recorded topics alone: the verdict `flashsale verify` gives live."""
    from verify.reconcile import reconcile
    from verify.records import Record

    if not run.manifest.get("complete"):
        raise RunDirError(
            f"{run.path / MANIFEST}: the capture is incomplete (interrupted): run "
            "`flashsale record` on it again to finish it"
        )
    needed = ("orders", "decisions", "dlq", "inventory", "states")
    missing = [r for r in needed if run.role(r) is None]
    if missing:
        raise RunDirError(
            f"{run.path / MANIFEST}: verify needs the {', '.join(missing)} topic(s), which "
            "were not recorded"
        )

    def of(role: str) -> Mapping[int, Sequence[Record]]:
        # A RecordedMessage is a Record; mypy cannot see it through the protocol's
        # settable `headers: Sequence[...]` (a list here).
        return cast("Mapping[int, Sequence[Record]]", run.topic(run.role(role) or ""))

    def maybe(role: str) -> Mapping[int, Sequence[Record]] | None:
        return of(role) if run.role(role) else None

    # Both window topics or neither: one alone would miss half the truth's windows.
    second, minute = maybe("revenue_second"), maybe("revenue_minute")
    revenue = [second, minute] if second is not None and minute is not None else None
    return reconcile(
        orders=of("orders"),
        decisions=of("decisions"),
        dead_letters=of("dlq"),
        inventory=of("inventory"),
        states=of("states"),
        default_window=int(run.manifest.get("settings", {}).get("dedupe_window", 5000)),
        late=maybe("late"),
        revenue=revenue,
        hot=maybe("hot"),
    )


def business_differences(
    original: Mapping[str, Any], other: Mapping[str, Any], fields: Iterable[str] = BUSINESS_FIELDS
) -> list[str]:
    """`field: original != other` for each business field of two run summaries that differs."""
    return [
        f"{f}: {original.get(f)!r} != {other.get(f)!r}"
        for f in fields
        if original.get(f) != other.get(f)
    ]
