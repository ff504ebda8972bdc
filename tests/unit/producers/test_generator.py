"""The order stream: a pure function of (seed, sequence number), whatever the split."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import orjson
import pytest

from flashsale.events import decode_event, encode_event
from flashsale.scenario import Scenario
from flashsale.scenario.curves import Curve
from producers.generator import BOT_CHANNEL, Generator
from tests.paths import ROOT


def scenario(**changes: Any) -> Scenario:
    """A small, fast scenario: 5,000 orders/s emitted, lifecycle on short delays."""
    doc: dict[str, Any] = {
        "name": "gen-test",
        "seed": 5,
        "curve": {"shape": "constant", "horizon_s": 3600.0},
        "scale": {"peak_per_s": 5_000.0, "sample_ratio": 1.0, "compression": 1.0},
        "catalog": {"sku_count": 300, "flash_share": 0.05},
        "mix": {
            "pay_delay_mean_s": 0.5,
            "unpaid_timeout_s": 2.0,
            "refund_delay_mean_s": 1.0,
            "refund_rate": 0.05,
            "duplicate_rate": 0.02,
            "duplicate_max_delay_s": 0.5,
            "out_of_order_share": 0.05,
            "out_of_order_delay": {"distribution": "exponential", "mean_s": 0.2, "max_s": 1.0},
            "bot_share": 0.05,
        },
    }
    for path, value in changes.items():
        node = doc
        *parents, leaf = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return Scenario.model_validate(doc)


BASE = scenario()


def stream(
    sc: Scenario,
    duration_s: float | None = 4.0,
    block_s: float = 0.01,
    worker: int = 0,
    workers: int = 1,
    max_events: int | None = None,
    until: Any = None,
) -> list[bytes]:
    gen = Generator(sc, worker=worker, workers=workers)
    out: list[bytes] = []
    for block in gen.blocks(duration_s, max_events, block_s, until):
        out.extend(block.values())
    return out


@functools.cache
def base_stream() -> tuple[bytes, ...]:
    return tuple(stream(BASE))


@functools.cache
def base_docs() -> tuple[dict[str, Any], ...]:
    return tuple(orjson.loads(v) for v in base_stream())


def test_same_seed_same_bytes_and_another_seed_another_stream() -> None:
    assert stream(BASE, 1.0) == stream(BASE, 1.0)
    assert stream(BASE.with_seed(6), 1.0) != stream(BASE, 1.0)


_DIGEST_SCRIPT = """
import hashlib, sys
from flashsale.scenario import Scenario
from producers.generator import Generator
sc = Scenario.model_validate_json(sys.stdin.read())
h = hashlib.sha256()
for block in Generator(sc).blocks(2.0):
    for v in block.values():
        h.update(v)
print(h.hexdigest())
"""


def test_same_bytes_in_other_processes() -> None:
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT],
            input=BASE.model_dump_json(),
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        digests.add(out.stdout.strip())
    here = hashlib.sha256(b"".join(stream(BASE, 2.0))).hexdigest()
    assert digests == {here}


def test_block_size_never_changes_the_stream() -> None:
    assert stream(BASE, block_s=0.5) == list(base_stream())
    assert stream(BASE, block_s=1.0) == list(base_stream())


@pytest.mark.parametrize("workers", [2, 3])
def test_split_workers_emit_exactly_the_same_multiset(workers: int) -> None:
    parts = [stream(BASE, worker=w, workers=workers) for w in range(workers)]
    assert Counter(v for part in parts for v in part) == Counter(base_stream())
    # Each worker's share keeps the one-process order.
    whole = list(base_stream())
    positions = {v: i for i, v in enumerate(whole)}
    for part in parts:
        assert [positions[v] for v in part] == sorted(positions[v] for v in part)


def test_max_events_is_a_prefix_and_cutoff_splits_it_exactly() -> None:
    whole = list(base_stream())
    n = 7_777
    assert stream(BASE, max_events=n) == whole[:n]
    until = Generator(BASE, worker=1, workers=3).cutoff(n, 4.0)
    parts = [stream(BASE, worker=w, workers=3, until=until) for w in range(3)]
    assert Counter(v for part in parts for v in part) == Counter(whole[:n])


def test_fast_encoding_decodes_to_the_reference_events() -> None:
    gen = Generator(BASE)
    block = next(b for b in gen.blocks(1.0, block_s=0.5) if len(b))
    for value, event, key in zip(block.values(), block.events(), block.keys, strict=True):
        decoded = decode_event(value)
        assert decoded == event
        assert orjson.loads(value) == orjson.loads(encode_event(event))
        assert key == event.sku.encode()
    stamped = block.values(123)
    assert all(decode_event(v).emit_ns == 123 for v in stamped)
    # The wire path: fixed-width values padded with JSON whitespace, the same events.
    now_ns = 1_732_650_000_123_456_789
    wire = block.values(now_ns)
    assert len({len(v) for v in wire}) == 1
    assert [decode_event(v) for v in wire] == block.events(now_ns)


def settled_docs() -> list[dict[str, Any]]:
    """Events of the orders created in the first 3 s: all their lines were delivered by 4 s
    (late deliveries are at most 1 s late)."""
    start = Generator(BASE).start_ms
    return [d for d in base_docs() if d["event_ts_ms"] < start + 3_000]


def test_orders_follow_the_curve_cell_by_cell() -> None:
    created = {d["order_id"] for d in settled_docs() if d["type"] == "created"}
    # Exactly floor(emitted_by(3 s)) orders: the count is cut from the curve's exact integral.
    assert len(created) == int(Curve(BASE).emitted_by(3.0))
    assert len(created) == 15_000


def test_lifecycle_events_follow_their_order_and_the_rates() -> None:
    docs = base_docs()
    first_seen: dict[tuple[str, int, str], int] = {}
    for i, d in enumerate(docs):
        first_seen.setdefault((d["order_id"], d["line"], d["type"]), i)
    lines = [k[:2] for k in first_seen if k[2] == "created"]
    paid = cancelled = refunded = 0
    for (oid, line, kind), i in first_seen.items():
        if kind == "created":
            continue
        # Never before the line's order: per-line causal order survives late delivery.
        created_at = first_seen.get((oid, line, "created"))
        if created_at is not None:
            assert created_at < i
        if kind == "refunded":
            assert first_seen[(oid, line, "paid")] < i
            refunded += 1
        paid += kind == "paid"
        cancelled += kind == "cancelled"
    # Over 4 s most lines reach their second event (pay delay 0.5 s, timeout 2 s).
    settled = paid + cancelled
    assert settled > 0.7 * len(lines)
    assert cancelled / settled == pytest.approx(0.05, abs=0.015)  # 2% failures + 3% cancels
    assert refunded > 0


def test_retries_repeat_the_event_later_within_the_delay() -> None:
    sent: dict[bytes, list[int]] = {}
    for doc in base_docs():
        d = dict(doc)
        emitted = d.pop("emit_ns")
        sent.setdefault(orjson.dumps(d), []).append(emitted)
    repeated = [times for times in sent.values() if len(times) > 1]
    assert len(repeated) / len(sent) == pytest.approx(0.02, abs=0.005)
    assert max(len(times) for times in sent.values()) == 2
    # The copy leaves after the original (emission stamps have millisecond resolution),
    # within duplicate_max_delay_s (0.5 s).
    assert all(0 <= b - a <= 501_000_000 for a, b in repeated)


def test_late_events_carry_their_own_time() -> None:
    docs = base_docs()
    # Emission order vs event time: a late event is emitted after later-timed ones.
    late = 0
    newest = 0
    for d in docs:
        if d["event_ts_ms"] < newest - 1:
            late += 1
            assert newest - d["event_ts_ms"] <= 1_000 + 600  # max_s plus a retry's delay
        newest = max(newest, d["event_ts_ms"])
    assert late > 0.01 * len(docs)


def test_bots_buy_one_unit_of_a_flash_sku_and_shoppers_follow_hot_share() -> None:
    gen = Generator(BASE)
    flash = {gen.catalog.skus[i].sku for i in gen.catalog.flash_indices}
    created = [d for d in base_docs() if d["type"] == "created"]
    bots = [d for d in created if d["channel"] == BOT_CHANNEL]
    assert bots
    assert all(d["sku"] in flash and d["quantity"] == 1 for d in bots)
    shoppers = [d for d in created if d["channel"] != BOT_CHANNEL]
    hot = sum(d["sku"] in flash for d in shoppers) / len(shoppers)
    assert hot == pytest.approx(BASE.popularity.hot_share, abs=0.02)
    assert len(bots) / len({d["order_id"] for d in created}) == pytest.approx(0.05, abs=0.015)


def test_baskets_are_split_into_lines_of_one_order() -> None:
    lines = {(d["order_id"], d["line"]) for d in settled_docs() if d["type"] == "created"}
    per_order: dict[str, set[int]] = {}
    for order_id, line in lines:
        per_order.setdefault(order_id, set()).add(line)
    # Each order's lines are numbered 0..n-1, at most basket_max_lines of them.
    assert all(numbers == set(range(len(numbers))) for numbers in per_order.values())
    assert max(len(numbers) for numbers in per_order.values()) <= BASE.mix.basket_max_lines
    mean = len(lines) / len(per_order)
    assert mean == pytest.approx(BASE.mix.basket_mean_lines, abs=0.1)


def test_restocks_load_every_sku_once() -> None:
    gen = Generator(BASE)
    restocks = gen.restocks()
    assert [r.sku for r in restocks] == [s.sku for s in gen.catalog.skus]
    assert all(r.type == "restock" and r.quantity > 0 for r in restocks)


def test_bad_arguments_are_refused() -> None:
    gen = Generator(BASE)
    with pytest.raises(ValueError, match="multiple"):
        gen.blocks(1.0, block_s=0.015)
    with pytest.raises(ValueError, match="negative"):
        gen.blocks(-1.0)
    with pytest.raises(ValueError, match="worker"):
        Generator(BASE, worker=2, workers=2)
