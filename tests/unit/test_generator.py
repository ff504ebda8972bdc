"""The order stream: deterministic, paced along the curve, with client retries."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from flashsale.events import OrderEvent, decode_event, encode_event
from flashsale.scenario import CurveSpec, OrderMix, Scenario, get_scenario
from producers import Generator
from producers.curves import expected_orders

ROOT = Path(__file__).resolve().parents[2]
SINGLES_DAY = get_scenario("singles-day")


def _events(
    gen: Generator, duration_s: float | None = None, max_orders: int | None = None
) -> list[OrderEvent]:
    return [e for _, evs in gen.schedule(duration_s, max_orders) for e in evs]


@functools.cache
def _first_orders(max_orders: int) -> tuple[OrderEvent, ...]:
    """The singles-day stream up to `max_orders` originals, shared by read-only tests."""
    return tuple(_events(Generator(SINGLES_DAY), max_orders=max_orders))


def _stream_digest(scenario: Scenario, max_orders: int) -> str:
    gen = Generator(scenario)
    digest = hashlib.sha256()
    for _, evs in gen.schedule(max_orders=max_orders):
        for e in evs:
            digest.update(encode_event(e, emit_ns=0))
    return digest.hexdigest()


_DIGEST_SCRIPT = """
import hashlib
from flashsale.events import encode_event
from flashsale.scenario import get_scenario
from producers import Generator
gen = Generator(get_scenario("singles-day"))
stream = b"".join(
    encode_event(e, emit_ns=0) for _, evs in gen.schedule(max_orders=20_000) for e in evs
)
print(hashlib.sha256(stream).hexdigest())
"""


def test_same_seed_gives_byte_identical_stream() -> None:
    assert _stream_digest(SINGLES_DAY, 20_000) == _stream_digest(SINGLES_DAY, 20_000)


def test_same_seed_gives_byte_identical_stream_across_processes() -> None:
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        digests.add(out.stdout.strip())
    assert digests == {_stream_digest(SINGLES_DAY, 20_000)}


def test_another_seed_gives_another_stream() -> None:
    assert _stream_digest(SINGLES_DAY.with_seed(12), 5_000) != _stream_digest(SINGLES_DAY, 5_000)


def test_schedule_needs_a_limit() -> None:
    with pytest.raises(ValueError, match="duration_s or max_orders"):
        Generator(SINGLES_DAY).schedule()


def test_schedule_refuses_more_orders_than_a_vanishing_curve_ever_yields() -> None:
    scenario = Scenario(name="t", curve=CurveSpec(floor_fraction=0.0, peak_rate=10.0))
    with pytest.raises(ValueError, match="max_orders"):
        Generator(scenario).schedule(max_orders=10_000_000)


@pytest.mark.parametrize("seconds", [0.5, 2.6, 5.0, 8.0])
def test_orders_in_the_first_seconds_match_expected_orders(seconds: float) -> None:
    originals = {e.order_id for e in _events(Generator(SINGLES_DAY), duration_s=seconds)}
    assert abs(len(originals) - expected_orders(SINGLES_DAY.curve, seconds)) <= 1


def test_slots_are_in_order_and_cover_the_duration() -> None:
    offsets = [w for w, _ in Generator(SINGLES_DAY).schedule(duration_s=1.0, slot_s=0.05)]
    assert offsets == pytest.approx([i * 0.05 for i in range(20)])


def test_max_orders_stops_after_that_many_original_orders() -> None:
    events = _events(Generator(SINGLES_DAY), max_orders=7_000)
    assert len({e.order_id for e in events}) == 7_000
    assert events[0].order_id == f"o{SINGLES_DAY.seed}-000000000"


def test_duplicates_follow_the_rate_and_arrive_within_the_max_delay() -> None:
    mix = SINGLES_DAY.mix
    events = _first_orders(50_000)
    originals_seen = 0
    position: dict[str, int] = {}
    duplicates = 0
    for e in events:
        if e.order_id in position:
            duplicates += 1
            delay = originals_seen - 1 - position[e.order_id]
            assert 1 <= delay <= mix.duplicate_max_delay
        else:
            position[e.order_id] = originals_seen
            originals_seen += 1
    assert originals_seen == 50_000
    assert duplicates / originals_seen == pytest.approx(mix.duplicate_rate, abs=0.0025)


def test_a_duplicate_is_the_identical_event() -> None:
    seen: dict[str, OrderEvent] = {}
    repeats = 0
    for e in _events(Generator(SINGLES_DAY), max_orders=10_000):
        if e.order_id in seen:
            assert e == seen[e.order_id]
            repeats += 1
        seen[e.order_id] = e
    assert repeats > 0


def test_every_pending_duplicate_is_emitted_in_the_final_slot() -> None:
    # Every order retried, retries late: most are still pending when generation stops.
    scenario = Scenario(name="t", mix=OrderMix(duplicate_rate=0.5, duplicate_max_delay=5_000))
    slots = list(Generator(scenario).schedule(max_orders=2_000))
    counts = Counter(e.order_id for _, evs in slots for e in evs)
    assert len(counts) == 2_000
    assert set(counts.values()) <= {1, 2}
    duplicates = sum(n == 2 for n in counts.values())
    assert duplicates == pytest.approx(1_000, abs=120)
    final_ids = [e.order_id for e in slots[-1][1]]
    assert len(final_ids) > len(set(final_ids))


def test_pending_duplicates_are_emitted_when_a_duration_ends() -> None:
    scenario = Scenario(name="t", mix=OrderMix(duplicate_rate=0.2, duplicate_max_delay=400))
    counts = Counter(e.order_id for e in _events(Generator(scenario), duration_s=0.3))
    drawn_twice = sum(n == 2 for n in counts.values())
    assert drawn_twice == pytest.approx(0.2 * len(counts), rel=0.25)


def test_event_times_of_originals_never_go_back() -> None:
    gen = Generator(SINGLES_DAY)
    seen: set[str] = set()
    last = gen.start_ms
    for e in _events(gen, duration_s=4.0):
        if e.order_id in seen:
            continue
        seen.add(e.order_id)
        assert e.event_ts_ms >= last
        last = e.event_ts_ms
    assert last <= gen.start_ms + 4.0 * SINGLES_DAY.curve.compression * 1000


def test_orders_are_valid_created_events_of_catalog_skus() -> None:
    gen = Generator(SINGLES_DAY)
    for e in _events(gen, max_orders=3_000):
        assert decode_event(encode_event(e)) == e
        sku = gen.catalog.by_id[e.sku]
        assert e.type == "created"
        assert (e.merchant, e.country, e.category) == (sku.merchant, sku.country, sku.category)
        assert e.unit_price_cents == sku.unit_price_cents
        assert 1 <= e.quantity <= 6
        assert e.emit_ns == 0


def test_quantities_are_mostly_one() -> None:
    counts = Counter(e.quantity for e in _first_orders(20_000))
    total = sum(counts.values())
    assert counts[1] / total == pytest.approx(0.70, abs=0.02)
    assert counts[2] / total == pytest.approx(0.20, abs=0.02)
    assert set(counts) == {1, 2, 3, 4, 5, 6}


def test_restocks_cover_every_sku_once_at_midnight() -> None:
    gen = Generator(SINGLES_DAY)
    restocks = gen.restocks()
    assert [r.sku for r in restocks] == [s.sku for s in gen.catalog.skus]
    for r, sku in zip(restocks, gen.catalog.skus, strict=True):
        assert r.type == "restock"
        assert r.order_id == f"restock-{sku.sku}"
        assert r.quantity == sku.stock
        assert r.event_ts_ms == gen.start_ms
        assert (r.province, r.channel, r.payment) == ("", "", "")
        assert decode_event(encode_event(r)) == r


def test_busiest_scenario_second_is_within_the_first_minute() -> None:
    gen = Generator(SINGLES_DAY)
    per_second = Counter(
        (e.event_ts_ms - gen.start_ms) // 1000 for e in _events(gen, duration_s=12.0)
    )
    busiest, _ = per_second.most_common(1)[0]
    assert 0 <= busiest < 60
    assert abs(busiest - SINGLES_DAY.curve.peak_offset_s) <= 3


def test_flash_skus_are_ordered_beyond_their_stock() -> None:
    gen = Generator(SINGLES_DAY)
    units: Counter[str] = Counter()
    for e in _first_orders(50_000):
        units[e.sku] += e.quantity
    sold_out = [s for s in gen.catalog.flash_skus if units[s.sku] >= s.stock]
    assert len(sold_out) >= len(gen.catalog.flash_skus) // 2


def test_provinces_are_weighted_with_guangdong_the_most_common() -> None:
    provinces = Counter(e.province for e in _first_orders(20_000))
    assert provinces.most_common(1)[0][0] == "Guangdong"
    assert len(provinces) >= 15
