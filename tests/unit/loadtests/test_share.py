"""A locust process's part of the stream: the split `produce --workers` makes, its pace, and
how its deliveries settle."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from flashsale.scenario import Scenario
from loadtests.share import Deliveries, Share, share_blocks, split
from producers.generator import Generator


def _scenario(horizon_s: float = 3600.0) -> Scenario:
    doc: dict[str, Any] = {
        "name": "share-test",
        "seed": 7,
        "curve": {"shape": "constant", "horizon_s": horizon_s},
        "scale": {"peak_per_s": 3_000.0, "sample_ratio": 1.0, "compression": 1.0},
        "mix": {"pay_delay_mean_s": 0.5, "unpaid_timeout_s": 2.0, "duplicate_rate": 0.02},
    }
    return Scenario.model_validate(doc)


def _events(blocks: Any) -> Counter[tuple[bytes, bytes]]:
    out: Counter[tuple[bytes, bytes]] = Counter()
    for block in blocks:
        out.update(zip(block.keys, block.values(), strict=True))
    return out


def _drain(share: Share) -> list[Any]:
    blocks = []
    while (block := share.next_block()) is not None:
        blocks.append(block)
        share.queued(len(block))
        share.put_down()
    return blocks


def test_a_standalone_process_is_worker_0_of_1() -> None:
    assert split(0, 1) == (0, 1)
    assert split(2, 3) == (2, 3)


@pytest.mark.parametrize(("index", "count"), [(2, 2), (5, 2), (-1, 2), (0, 0)])
def test_a_worker_index_outside_the_expected_workers_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="expect"):
        split(index, count)


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_send_the_one_process_stream_between_them(workers: int) -> None:
    scenario = _scenario()
    events = 12_345
    one = _events(Generator(scenario).blocks(None, events))
    assert sum(one.values()) == events
    parts = [_events(share_blocks(scenario, w, workers, events, 0.5)) for w in range(workers)]
    assert sum(parts, Counter()) == one
    # Each order's events go to one worker only: the parts do not overlap.
    assert all(not (a.keys() & b.keys()) for i, a in enumerate(parts) for b in parts[i + 1 :])


def test_a_standalone_process_sends_the_whole_stream_from_its_beginning() -> None:
    scenario = _scenario()
    mine = share_blocks(scenario, 0, 1, 0, 0.5)
    whole = Generator(scenario).blocks(None, None, 0.5)
    for _ in range(4):
        assert _events([next(mine)]) == _events([next(whole)])


def test_a_single_pass_ends_and_stays_ended() -> None:
    share = Share(_scenario(), 1, 2, 5_000, 0.0)
    sent = _drain(share)
    assert share.exhausted
    assert share.next_block() is None
    assert share.sent == sum(len(b) for b in sent)
    assert _events(sent) == _events(share_blocks(_scenario(), 1, 2, 5_000, share.block_s))


def test_the_whole_scenario_starts_again_at_its_end() -> None:
    share = Share(_scenario(horizon_s=2.0), 0, 1, 0, 0.0)
    first = _drain(share)  # stops at the horizon's end: None, but not exhausted
    assert first and not share.exhausted
    again = _drain(share)
    assert _events(again) == _events(first)


def test_a_paced_process_sends_pieces_and_waits_its_rate() -> None:
    share = Share(_scenario(), 0, 1, 0, rate=10_000.0)
    block = share.next_block()
    assert block is not None and len(block) > share.piece == 200
    pieces = list(share.pieces(block))
    assert [len(p) for p in pieces[:-1]] == [200] * (len(pieces) - 1)
    assert _events(pieces) == _events([block])
    assert share.started is not None
    assert share.queued(500) == pytest.approx(share.started + 0.05)
    assert share.queued(500) == pytest.approx(share.started + 0.1)


def test_a_stopped_process_sends_nothing_more_not_even_the_rest_of_a_block() -> None:
    share = Share(_scenario(), 0, 1, 0, rate=10_000.0)
    block = share.next_block()
    assert block is not None
    pieces = share.pieces(block)
    next(pieces)
    share.stopped = True
    assert list(pieces) == []
    assert share.next_block() is None
    share.put_down()
    assert share.in_hand == 0


def test_unpaced_a_block_goes_out_whole() -> None:
    share = Share(_scenario(), 0, 1, 0, rate=0.0)
    block = share.next_block()
    assert block is not None
    assert list(share.pieces(block)) == [block]
    assert share.queued(len(block)) == float("-inf")


def test_blocks_settle_as_librdkafkas_queue_drains_with_their_failures() -> None:
    deliveries = Deliveries()
    deliveries.queue(100, 10_000, started=1.0)
    deliveries.queue(200, 20_000, started=2.0)
    deliveries.queue(300, 30_000, started=3.0)
    assert deliveries.settle(in_queue=550, now=4.0) == []  # 50 left: not all of the first
    [first] = deliveries.settle(in_queue=500, now=4.0)
    assert (first.events, first.failures, first.latency_ms, first.size_bytes) == (
        100,
        0,
        3000.0,
        10_000,
    )
    deliveries.on_error("Local: Message timed out", None)
    deliveries.on_error(None, None)  # not a failure
    # A length that grew (a report waiting for a poll) never unsettles what has left.
    assert deliveries.settle(in_queue=580, now=5.0) == []
    second, third = deliveries.settle(in_queue=0, now=6.0)
    assert (second.events, second.failures) == (200, 1)
    assert (third.events, third.failures) == (300, 0)
    assert deliveries.last_error == "Local: Message timed out"
    assert deliveries.pending == 0
