"""Oversell judged from the decisions alone, without the rules: restocks in, reservations out,
releases back on the SKU each line was reserved on, checked against the workers' stock and
the conservation of units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from verify.records import MAX_EXAMPLES, Position, at

__all__ = ["judge_units", "negative_stock"]


class _Ledger:
    """Units of one partition's SKUs as its decisions alone move them."""

    def __init__(self) -> None:
        self.stock: dict[str, int] = {}
        self.restocked: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.sold: dict[str, int] = {}
        self.open: dict[tuple[str, int], tuple[str, int, Position]] = {}
        self.paid: set[tuple[str, int]] = set()
        #: Where each SKU went below zero: the positions of the reservations that took it.
        self.below: dict[str, list[Position]] = {}
        #: Anomalies by kind: a description of each.
        self.anomalies: dict[str, list[str]] = {}

    def snapshot(self) -> tuple[dict[str, int], ...]:
        return (dict(self.stock), dict(self.restocked), dict(self.reserved), dict(self.sold))

    def _note(self, kind: str, text: str) -> None:
        self.anomalies.setdefault(kind, []).append(text)

    def apply(self, where: Position, doc: Mapping[str, Any]) -> None:
        outcome = doc["outcome"]
        sku, units = str(doc["sku"]), int(doc["quantity"])
        line = (str(doc["order_id"]), int(doc.get("line", 0)))
        name = f"{at(where)} {outcome} {line[0]}/{line[1]}"
        if outcome == "restocked":
            self.stock[sku] = self.stock.get(sku, 0) + units
            self.restocked[sku] = self.restocked.get(sku, 0) + units
        elif outcome == "accepted":
            held = self.open.get(line)
            if held is not None:
                self._note(
                    "reserved again while its earlier reservation is open",
                    f"{name} ({held[1]} of {held[0]} reserved at {at(held[2])})",
                )
            self.open[line] = (sku, units, where)
            self.reserved[sku] = self.reserved.get(sku, 0) + units
            left = self.stock[sku] = self.stock.get(sku, 0) - units
            if left < 0:
                self.below.setdefault(sku, []).append(where)
        elif outcome in ("paid", "cancelled"):
            held = self.open.pop(line, None)
            if held is None:
                self._note("settle a line that holds no reservation", name)
                return
            held_sku, held_units, reserved_at = held
            if (sku, units) != (held_sku, held_units):
                self._note(
                    "name another SKU or quantity than their line reserved",
                    f"{name} names {units} of {sku}, the line reserved {held_units} of "
                    f"{held_sku} at {at(reserved_at)}",
                )
            self.reserved[held_sku] = self.reserved.get(held_sku, 0) - held_units
            if outcome == "paid":
                self.sold[held_sku] = self.sold.get(held_sku, 0) + held_units
                self.paid.add(line)
            else:  # the units go back on sale, on the SKU the line took them from
                self.stock[held_sku] = self.stock.get(held_sku, 0) + held_units
        elif outcome == "refunded":
            if line not in self.paid:
                self._note("refund a line that was never paid", name)
            self.paid.discard(line)


def judge_units(
    decided: Mapping[Position, Mapping[str, Any]], states: Iterable[Mapping[str, Any]]
) -> tuple[list[str], set[str]]:
    """Judge oversell from the decisions alone, without the rules; return the differences
    found and the SKUs oversold.

    Per partition in source order: restocks add units, accepted lines take them, paid lines
    keep them (sold), cancelled lines give back what their reservation took, on the SKU it
    took them from. A SKU whose units go below zero is oversold (named with the positions of
    the reservations that took it there); a settlement of a line with no reservation, or one
    naming another SKU or quantity, is named too. At each worker state's `last_offset` the
    replay must hold exactly the state's stock, restocked, reserved and sold units per SKU,
    and the state itself must conserve units: restocked = in stock + reserved + sold.
    """
    by_partition: dict[int, list[tuple[Position, Mapping[str, Any]]]] = {}
    for where, doc in sorted(decided.items()):
        by_partition.setdefault(where[0], []).append((where, doc))
    of_partition = {int(st["partition"]): st for st in states}
    diffs: list[str] = []
    oversold: set[str] = set()
    anomalies: dict[str, list[str]] = {}
    for partition in sorted(by_partition.keys() | of_partition.keys()):
        ledger = _Ledger()
        st = of_partition.get(partition)
        upto = int(st.get("last_offset", -1)) if st is not None else None
        held_at_state = None
        for where, doc in by_partition.get(partition, ()):
            if held_at_state is None and upto is not None and where[1] > upto:
                held_at_state = ledger.snapshot()
            ledger.apply(where, doc)
        for sku, below in sorted(ledger.below.items()):
            oversold.add(sku)
            diffs.append(
                f"SKU {sku} oversold on partition {partition}: its units went below zero at "
                + ", ".join(at(w) for w in below[:MAX_EXAMPLES])
                + (f" and {len(below) - MAX_EXAMPLES} more" if len(below) > MAX_EXAMPLES else "")
            )
        for kind, names in ledger.anomalies.items():
            anomalies.setdefault(kind, []).extend(names)
        if st is not None:
            diffs.extend(_state_units(partition, st, held_at_state or ledger.snapshot()))
    for kind, names in anomalies.items():
        diffs.append(f"{len(names)} decisions {kind}, e.g. " + "; ".join(names[:MAX_EXAMPLES]))
    return diffs, oversold


def _state_units(
    partition: int, st: Mapping[str, Any], replayed: tuple[dict[str, int], ...]
) -> list[str]:
    """How a worker state's units per SKU differ from the decisions replayed up to its
    offset, and where the state breaks the conservation of units."""
    stock, restocked, reserved, sold = replayed
    state_reserved: dict[str, int] = {}
    for record in st.get("open", {}).values():
        if len(record) > 6:  # a state written before lines kept their SKU has none
            state_reserved[record[6]] = state_reserved.get(record[6], 0) + int(record[0])
    parts = [("in stock", "stock", stock, st.get("stock"))]
    if "restocked" in st:  # a state written before units were tracked has only stock
        parts += [
            ("restocked", "restocked", restocked, st["restocked"]),
            ("reserved", "open", reserved, state_reserved),
            ("sold", "sold", sold, st.get("sold", {})),
        ]
    diffs = []
    for label, field_name, want, said in parts:
        if said is None:
            continue
        off = sorted(k for k in want.keys() | said.keys() if want.get(k, 0) != said.get(k, 0))
        if off:
            diffs.append(
                f"units {label} on partition {partition}: the worker state's `{field_name}` "
                f"differs from the decisions for {len(off)} SKUs, e.g. "
                + ", ".join(f"{k} {said.get(k, 0)} != {want.get(k, 0)}" for k in off[:3])
            )
    if "restocked" in st:
        state_stock, state_restocked, state_sold = (
            st.get("stock", {}),
            st["restocked"],
            st.get("sold", {}),
        )
        broken = []
        for sku in sorted(
            state_stock.keys() | state_restocked.keys() | state_reserved.keys() | state_sold.keys()
        ):
            held = (state_stock.get(sku, 0), state_reserved.get(sku, 0), state_sold.get(sku, 0))
            if state_restocked.get(sku, 0) != sum(held):
                broken.append(
                    f"{sku} restocked {state_restocked.get(sku, 0)} != in stock {held[0]} + "
                    f"reserved {held[1]} + sold {held[2]}"
                )
        if broken:
            diffs.append(
                f"units not conserved in the worker state of partition {partition} for "
                f"{len(broken)} SKUs, e.g. " + "; ".join(broken[:3])
            )
    return diffs


def negative_stock(states: Iterable[Mapping[str, Any]]) -> set[str]:
    """SKUs a worker state holds below zero units."""
    return {sku for st in states for sku, units in st.get("stock", {}).items() if units < 0}
