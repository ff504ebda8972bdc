"""Exactly-once processing (`processing_guarantee` exactly_once): Kafka transactions, one
transactional producer per source partition.

A batch of partition p begins a transaction on p's producer, sends p's decisions, sell-outs,
late events, dead letters, windows and its state record through it, adds the consumed offset
of `orders` p (the state's last offset + 1) for the worker's group, and commits: all of it
becomes visible to `read_committed` readers together, or none of it does.

Why a producer per partition, as Faust's own exactly-once mode has (its transaction manager
names them `<app>-<group>-<partition>`): aiokafka sends the consumed offsets with
`TxnOffsetCommit` version 0, which carries no consumer generation (the broker-side check of
KIP-447 is not used; https://github.com/aio-libs/aiokafka/issues/844 shows a revoked member
committing its transaction after a rebalance). What fences a worker that lost a partition,
or a zombie still running after it was replaced, is the transactional id alone: whoever
takes partition p starts a producer with p's id (`<app_id>-eos-<p>`), which bumps the
epoch, aborts the open transaction of the id's previous holder and makes its later sends and
commits fail (ProducerFenced). `fence` does it for each partition of a new assignment before
the partition's state is read, so the state read is the last one anybody can commit. Faust's
own mode could not be used as is: it runs the per-message agent path and Faust's table
changelog, not the batch loop and its state records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import faust
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from flashsale.kafka.clients import aiokafka_security, producer_codec
from flashsale.settings import STATE_RECORD_MAX_BYTES, Settings
from streams.outputs import Outputs, PartitionBatches
from streams.recovery import partition_key
from streams.state import PartitionState

__all__ = [
    "STOP_TIMEOUT_S",
    "Decide",
    "Transactions",
    "TransactionsUnsupported",
    "check_transactions",
    "transactional_id",
]

_log = logging.getLogger(__name__)

#: Longest a discarded or closed producer may take to stop (its broker may be gone).
STOP_TIMEOUT_S: Final = 5.0

#: Longest the start-up check waits for the broker to answer InitProducerId.
CHECK_TIMEOUT_S: Final = 30.0


#: Applies one partition's messages, its outputs sent through the `Outputs` and batches it is
#: given: the state and its counters before (None when nothing changed).
Decide = Callable[
    [int, Outputs, PartitionBatches, list[Awaitable[Any]]],
    Awaitable[tuple[PartitionState, tuple[int, ...]] | None],
]

#: What a committed batch changed: each state, its counters before, its record's bytes.
Committed = list[tuple[PartitionState, tuple[int, ...], bytes]]


class TransactionsUnsupported(Exception):
    """The brokers cannot run transactions (the embedded Tansu answers InitProducerId with
    UnknownError)."""


def transactional_id(settings: Settings, partition: int) -> str:
    """The transactional id of source partition `partition`: the same for every worker of
    the app, so that whoever takes the partition fences whoever had it."""
    return f"{settings.app_id}-eos-{partition}"


def transactional_producer(settings: Settings, txn_id: str) -> AIOKafkaProducer:
    """A transactional producer with the batching of the worker's Faust producer."""
    return AIOKafkaProducer(
        **aiokafka_security(
            settings,
            "producer",
            bootstrap_servers=settings.bootstrap_list(),
            client_id=txn_id,
            transactional_id=txn_id,
            acks="all",
            linger_ms=5,
            max_batch_size=1_000_000,
            max_request_size=STATE_RECORD_MAX_BYTES,
            compression_type=producer_codec(settings),
        )
    )


async def _stop(producer: AIOKafkaProducer) -> None:
    """Abort `producer`'s open transaction and stop it, each at most `STOP_TIMEOUT_S`. An
    abort that fails (a fenced producer, a broker gone) leaves the transaction to the
    coordinator: aborted when the next producer of its id starts, or when it times out."""
    txn = producer._txn_manager
    if txn is not None and txn.is_in_transaction():
        with contextlib.suppress(KafkaError, TimeoutError, AssertionError):
            await asyncio.wait_for(producer.abort_transaction(), STOP_TIMEOUT_S)
    with contextlib.suppress(KafkaError, TimeoutError, AssertionError):
        await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)


async def check_transactions(settings: Settings) -> None:
    """Raise `TransactionsUnsupported` (one line) unless the brokers run a transaction: a
    probe producer of its own id begins and aborts an empty one."""
    probe = transactional_producer(settings, f"{settings.app_id}-eos-probe")
    try:
        await asyncio.wait_for(probe.start(), CHECK_TIMEOUT_S)
        await asyncio.wait_for(probe.begin_transaction(), CHECK_TIMEOUT_S)
        await probe.abort_transaction()
    except (KafkaError, TimeoutError) as exc:
        raise TransactionsUnsupported(
            f"processing guarantee exactly_once needs Kafka transactions, and the brokers at "
            f"{settings.bootstrap_servers} refused one ({type(exc).__name__}: "
            f"{str(exc) or 'no answer'}); the embedded broker (Tansu) has none: run "
            "at_least_once there"
        ) from None
    finally:
        await _stop(probe)


class Transactions:
    """The transactional producers of the partitions a worker holds, one per partition, each
    started for the assignment (`epoch`) it serves."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.group_id = settings.app_id
        self.producers: dict[int, tuple[int, AIOKafkaProducer]] = {}

    async def run_batch(
        self, partitions: Sequence[int], decide: Decide, current: Callable[[], bool]
    ) -> Committed | None:
        """One transaction per partition of `partitions`: begin, `decide` (outputs sent on the
        way), the partition's state record, the consumed offset, commit. Returns what changed,
        or None when `current()` turned false before the commit (a rebalance: every
        transaction aborted). On any error the transactions are aborted and their producers
        discarded (`discard`), then the error goes on."""
        opened: list[int] = []
        pending: list[Awaitable[Any]] = []
        changed: Committed = []
        changelog = self.settings.state_changelog_topic()
        try:
            for partition in partitions:
                producer = self.producer(partition)
                await producer.begin_transaction()
                opened.append(partition)
                out = Outputs(self.app, self.settings, producer)
                decisions = out.decisions()
                decided = await decide(partition, out, decisions, pending)
                if decided is None:
                    continue
                state, before = decided
                value = state.to_bytes()
                pending.extend(await decisions.send())
                pending.append(
                    await producer.send(
                        changelog, value, key=partition_key(partition), partition=partition
                    )
                )
                changed.append((state, before, value))
                # As the at-least-once loop: the broker takes these in while the next
                # partition is decided.
                await asyncio.sleep(0)
            if pending:
                await asyncio.gather(*pending)
            if not current():
                await self.discard(opened)
                return None
            topic = self.settings.topic_orders
            offsets = {state.partition: state.last_offset + 1 for state, _, _ in changed}
            await asyncio.gather(*(self._commit(p, topic, offsets.get(p)) for p in opened))
        except BaseException:
            await asyncio.shield(self.discard(opened))
            raise
        return changed

    async def _commit(self, partition: int, topic: str, offset: int | None) -> None:
        """Add the consumed offset (when the batch moved it) and commit `partition`'s
        transaction (an empty one costs no request)."""
        producer = self.producer(partition)
        if offset is not None:
            await producer.send_offsets_to_transaction(
                {TopicPartition(topic, partition): offset}, self.group_id
            )
        await producer.commit_transaction()

    async def fence(self, partitions: Iterable[int], epoch: int) -> None:
        """Make sure each partition has a producer started in assignment `epoch`: a new one
        fences every earlier holder of its id (this worker's own of an earlier assignment
        included, which is then stopped). Call before reading the partitions' states."""
        stale = [p for p in partitions if self.producers.get(p, (None,))[0] != epoch]
        if not stale:
            return
        fresh = {
            p: transactional_producer(self.settings, transactional_id(self.settings, p))
            for p in stale
        }
        try:
            await asyncio.gather(*(self._start(producer) for producer in fresh.values()))
        except BaseException:
            await asyncio.gather(*(_stop(producer) for producer in fresh.values()))
            raise
        old = [self.producers[p][1] for p in stale if p in self.producers]
        for p, producer in fresh.items():
            self.producers[p] = (epoch, producer)
        await asyncio.gather(*(_stop(producer) for producer in old))

    @staticmethod
    async def _start(producer: AIOKafkaProducer) -> None:
        """Start `producer` and wait for its producer id: InitProducerId, which fences."""
        await producer.start()
        await producer.begin_transaction()
        await producer.abort_transaction()

    def producer(self, partition: int) -> AIOKafkaProducer:
        """The producer of `partition` (fenced in by `fence`)."""
        return self.producers[partition][1]

    async def discard(self, partitions: Iterable[int]) -> None:
        """Stop and forget the producers of `partitions` after a failed batch: their open
        transactions are aborted when `fence` starts their successors (before the partitions'
        states are read again), or by the coordinator's transaction timeout."""
        gone = [self.producers.pop(p)[1] for p in partitions if p in self.producers]
        await asyncio.gather(*(_stop(producer) for producer in gone))

    async def close(self) -> None:
        """Stop every producer."""
        await self.discard(list(self.producers))
