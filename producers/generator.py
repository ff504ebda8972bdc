"""Deterministic order stream: restocks, then orders paced slot by slot along the curve.

All randomness comes from one `random.Random(scenario.seed)` drawn in a fixed order, so the
same scenario yields a byte-identical stream in any process. Per original order the draws are:
SKU, quantity, province, channel, payment, retry?, and (only for a retry) its delay.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from collections.abc import Iterator

from flashsale.events import OrderEvent
from flashsale.scenario import CurveSpec, Scenario
from producers.catalog import CHANNELS, PAYMENTS, PROVINCES, Catalog
from producers.curves import expected_orders, scenario_start_ms

__all__ = ["Generator"]

# Cumulative quantity distribution: ~70% buy one, 20% two, 7% three, 3% four to six.
_Q1 = 0.70
_Q2 = 0.90
_Q3 = 0.97
# Slot counts come from float division; tolerate rounding when duration is a multiple of slot.
_EPS = 1e-9


class Generator:
    """Generates a scenario's restocks and its paced, reproducible stream of orders."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario: Scenario = scenario
        self.catalog: Catalog = Catalog.build(scenario.catalog, scenario.seed)
        self.start_ms: int = scenario_start_ms(scenario.curve)

    def restocks(self) -> list[OrderEvent]:
        """One restock per SKU, in catalog order, loading its initial stock at 00:00."""
        return [
            OrderEvent(
                order_id=f"restock-{s.sku}",
                type="restock",
                event_ts_ms=self.start_ms,
                sku=s.sku,
                merchant=s.merchant,
                country=s.country,
                category=s.category,
                quantity=s.stock,
                unit_price_cents=s.unit_price_cents,
                province="",
                channel="",
                payment="",
                emit_ns=0,
            )
            for s in self.catalog.skus
        ]

    def schedule(
        self,
        duration_s: float | None = None,
        max_orders: int | None = None,
        slot_s: float = 0.01,
    ) -> Iterator[tuple[float, list[OrderEvent]]]:
        """Yield `(wall_offset_s, events)` per wall slot, from the slot's start, until a limit.

        Stops after `duration_s` wall seconds or `max_orders` original orders, whichever
        comes first. Retries repeat an earlier event object unchanged; those still pending
        when generation stops are appended to the final slot.
        """
        if duration_s is None and max_orders is None:
            raise ValueError("give duration_s or max_orders (or both)")
        if not slot_s > 0:
            raise ValueError(f"slot_s must be positive, got {slot_s}")
        if duration_s is not None and duration_s < 0:
            raise ValueError(f"duration_s must not be negative, got {duration_s}")
        if max_orders is not None and max_orders < 0:
            raise ValueError(f"max_orders must not be negative, got {max_orders}")
        curve = self.scenario.curve
        if duration_s is None and max_orders is not None:
            reachable = _total_orders(curve)
            # The cumulative count only approaches the total, so reaching it exactly never happens.
            if max_orders >= reachable:
                raise ValueError(
                    f"the curve yields fewer than {reachable:.0f} orders in all, "
                    f"never max_orders={max_orders}; give duration_s"
                )
        return self._schedule(duration_s, max_orders, slot_s)

    def _schedule(
        self, duration_s: float | None, max_orders: int | None, slot_s: float
    ) -> Iterator[tuple[float, list[OrderEvent]]]:
        """The generator body, kept apart so `schedule` validates its arguments eagerly."""
        scenario = self.scenario
        curve = scenario.curve
        mix = scenario.mix
        rng = random.Random(scenario.seed)
        rand = rng.random

        # Per-SKU fields pre-packed so the hot loop does one index instead of five getattrs.
        rows = [
            (s.sku, s.merchant, s.country, s.category, s.unit_price_cents)
            for s in self.catalog.skus
        ]
        sku_cum = self.catalog.cum_weights
        sku_total = sku_cum[-1]
        sku_hi = len(sku_cum) - 1
        prov_names, prov_cum, prov_total = _table(PROVINCES)
        prov_hi = len(prov_cum) - 1
        chan_names, chan_cum, chan_total = _table(CHANNELS)
        chan_hi = len(chan_cum) - 1
        pay_names, pay_cum, pay_total = _table(PAYMENTS)
        pay_hi = len(pay_cum) - 1

        dup_rate = mix.duplicate_rate
        dup_delay = mix.duplicate_max_delay
        seed = scenario.seed
        start_ms = self.start_ms
        ms_per_wall_s = curve.compression * 1000.0
        event = OrderEvent
        bisect = bisect_right
        floor = math.floor

        n_slots = None if duration_s is None else math.ceil(duration_s / slot_s - _EPS)
        # Retries keyed by the sequence number of the original order they follow.
        pending: dict[int, list[OrderEvent]] = {}
        pop_pending = pending.pop
        seq = 0
        for k in itertools.count():
            if n_slots is not None and k >= n_slots:
                return
            wall_start = k * slot_s
            final = n_slots is not None and k == n_slots - 1
            wall_end = duration_s if final and duration_s is not None else (k + 1) * slot_s
            # From the exact cumulative count, not a running float sum: no drift over hours.
            n = floor(expected_orders(curve, wall_end)) - seq
            if max_orders is not None and seq + n >= max_orders:
                n = max_orders - seq
                final = True
            events: list[OrderEvent] = []
            append = events.append
            if n > 0:
                step = (wall_end - wall_start) / n
                for j in range(n):
                    sku, merchant, country, category, price = rows[
                        bisect(sku_cum, rand() * sku_total, 0, sku_hi)
                    ]
                    u = rand()
                    if u < _Q1:
                        quantity = 1
                    elif u < _Q2:
                        quantity = 2
                    elif u < _Q3:
                        quantity = 3
                    else:
                        quantity = min(6, 4 + int((u - _Q3) * 100.0))
                    ev = event(
                        order_id=f"o{seed}-{seq:09d}",
                        type="created",
                        event_ts_ms=start_ms + int((wall_start + (j + 0.5) * step) * ms_per_wall_s),
                        sku=sku,
                        merchant=merchant,
                        country=country,
                        category=category,
                        quantity=quantity,
                        unit_price_cents=price,
                        province=prov_names[bisect(prov_cum, rand() * prov_total, 0, prov_hi)],
                        channel=chan_names[bisect(chan_cum, rand() * chan_total, 0, chan_hi)],
                        payment=pay_names[bisect(pay_cum, rand() * pay_total, 0, pay_hi)],
                        emit_ns=0,
                    )
                    append(ev)
                    if rand() < dup_rate:
                        due = seq + 1 + int(rand() * dup_delay)
                        retries = pending.get(due)
                        if retries is None:
                            pending[due] = [ev]
                        else:
                            retries.append(ev)
                    due_now = pop_pending(seq, None)
                    if due_now is not None:
                        events.extend(due_now)
                    seq += 1
            if final:
                for due in sorted(pending):
                    events.extend(pending[due])
                pending.clear()
                yield wall_start, events
                return
            yield wall_start, events


def _table(pairs: tuple[tuple[str, float], ...]) -> tuple[tuple[str, ...], list[float], float]:
    """Names, cumulative weights and total of a weighted table, for bisect sampling."""
    names = tuple(name for name, _ in pairs)
    cum = list(itertools.accumulate(weight for _, weight in pairs))
    return names, cum, cum[-1]


def _total_orders(curve: CurveSpec) -> float:
    """Orders the curve yields over all time (infinite unless it decays to zero)."""
    if curve.shape == "constant" or curve.floor_fraction > 0:
        return math.inf
    offset = curve.peak_offset_s
    # Everything up to the peak, plus the full exponential tail peak * decay_s.
    rise = expected_orders(curve, offset / curve.compression)
    return rise + curve.peak_rate * curve.decay_s / curve.compression
