"""Producer resume: stream positions on every message, and skipping what a partition holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
import pytest

from flashsale.events import decode_packed, encode_event
from flashsale.scenario import Scenario
from producers.generator import Generator
from producers.metrics import ProducerMetrics
from producers.pacing import produce_scenario
from producers.resume import ResumeError
from producers.sinks.base import SEQ_HEADER, Headers, ProduceStats
from producers.sinks.base import CountingSink as _Counting

PARTITIONS = 4
SCENARIO = Scenario.model_validate(
    {
        "name": "resume-unit",
        "seed": 9,
        "curve": {"shape": "constant", "horizon_s": 600.0},
        "scale": {"peak_per_s": 2_000.0, "sample_ratio": 1.0, "compression": 1.0},
        "catalog": {"sku_count": 40},
        "mix": {"pay_delay_mean_s": 0.3, "unpaid_timeout_s": 1.0, "duplicate_rate": 0.05},
    }
)


class MemorySink(_Counting):
    """Keeps (partition, seq, value) of every message, as a keyed Kafka send would place it."""

    wall_clock = False

    def __init__(self, generator: Generator, pack: int = 0) -> None:
        self.metrics: ProducerMetrics | None = None
        self.stats = ProduceStats()
        self.pack = pack
        self.table = generator._sku_partitions(PARTITIONS)
        self.index = {k: i for i, k in enumerate(generator._sku_keys)}
        self.sent: list[tuple[int, int, bytes]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None: ...

    async def partitions(self) -> int:
        return PARTITIONS

    async def _send(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        restocks: int,
        seqs: Sequence[int] | None,
    ) -> None:
        assert seqs is not None, "every message to Kafka carries its stream position"
        for key, value, seq in zip(keys, values, seqs, strict=True):
            self.sent.append((int(self.table[self.index[key]]), seq, value))
        self._count_sent(len(values), restocks)

    async def send_packed(self, messages: Sequence[tuple[int, bytes, int, int]]) -> None:
        for partition, value, events, seq in messages:
            self.sent.append((partition, seq, value))
            self._count_sent(events)


def _run(
    events: int, resume_from: dict[int, int] | None = None, pack: int = 0
) -> list[tuple[int, int, bytes]]:
    gen = Generator(SCENARIO)
    sink = MemorySink(gen, pack)
    asyncio.run(produce_scenario(sink, gen, None, events, paced=False, resume_from=resume_from))
    return sink.sent


def test_every_message_carries_its_position_in_order_per_partition() -> None:
    sent = _run(5_000)
    seqs = [seq for _, seq, _ in sent]
    restocks = SCENARIO.catalog.sku_count
    assert seqs == list(range(-restocks, 5_000))
    assert SEQ_HEADER == "flashsale.seq"


def test_block_positions_do_not_depend_on_the_block_size() -> None:
    def positions(block_s: float) -> list[int]:
        gen = Generator(SCENARIO)
        return [int(i) for b in gen.blocks(None, 3_000, block_s) for i in b.index]

    assert positions(0.01) == positions(0.5) == list(range(3_000))


@pytest.mark.parametrize("pack", [0, 50])
@pytest.mark.parametrize("cut", [0, 7, 400, 2_999])
def test_a_run_cut_anywhere_per_partition_and_resumed_sends_each_event_once(
    cut: int, pack: int
) -> None:
    whole = _run(3_000, pack=pack)
    assert len(_events(whole)) == 3_000 + SCENARIO.catalog.sku_count
    # A kill leaves each partition holding a prefix of what was sent to it: here the messages
    # before `cut` on even partitions and a few more on odd ones (in flight on the others).
    held: list[tuple[int, int, bytes]] = []
    for i, msg in enumerate(whole):
        if i < cut or (msg[0] % 2 and i < cut + 30):
            held.append(msg)
    acked = {partition: seq for partition, seq, _ in held}  # the newest of each
    rest = _run(3_000, resume_from=acked, pack=pack)
    assert sorted(_events(held + rest)) == sorted(_events(whole))


def _events(messages: list[tuple[int, int, bytes]]) -> list[bytes]:
    """Each event of the messages (a packed one unpacked) as single-event JSON."""
    out = []
    for _, _, value in messages:
        if value.startswith(b'{"v":1,"n":'):
            batch = decode_packed(value)
            out.extend(encode_event(batch.event(i)) for i in range(batch.n))
        else:
            out.append(value)
    return out


def test_nothing_held_resends_everything_and_all_held_sends_nothing() -> None:
    whole = _run(1_000)
    assert _run(1_000, resume_from={}) == whole
    last = {p: max(seq for q, seq, _ in whole if q == p) for p in range(PARTITIONS)}
    assert _run(1_000, resume_from=last) == []


def test_a_position_on_an_unknown_partition_is_refused() -> None:
    with pytest.raises(ResumeError, match=r"partition 9 is not in 0\.\.3"):
        _run(10, resume_from={9: 5})


def test_positions_are_a_numpy_int_array() -> None:
    block = next(iter(Generator(SCENARIO).blocks(None, 100, 0.5)))
    assert block.index.dtype == np.int64
    assert block.select(block.index % 2 == 0).index.tolist() == list(range(0, len(block), 2))


def test_a_resumed_paced_run_does_not_wait_for_the_part_of_the_schedule_already_sent() -> None:
    # 20 orders/s: most 10 ms blocks are empty, and the first 200 events span seconds.
    sparse = SCENARIO.model_copy(
        update={"scale": SCENARIO.scale.model_copy(update={"peak_per_s": 20.0})}
    )
    gen = Generator(sparse)
    whole = MemorySink(gen)
    asyncio.run(produce_scenario(whole, gen, None, 200, paced=False))
    held = whole.sent[: len(whole.sent) - 10]
    acked = {partition: seq for partition, seq, _ in held}
    last_block_s = max(b.start_s for b in Generator(sparse).blocks(None, 200))
    gen = Generator(sparse)
    rest = MemorySink(gen)
    started = time.monotonic()
    asyncio.run(produce_scenario(rest, gen, None, 200, paced=True, resume_from=acked))
    took = time.monotonic() - started
    assert sorted(_events(held + rest.sent)) == sorted(_events(whole.sent))
    # What is left is due in the last stretch of the schedule: sent in about that long.
    assert last_block_s > 3.0
    assert took < 1.5, f"waited {took:.1f} s of a {last_block_s:.1f} s schedule"
