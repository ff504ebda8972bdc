"""Verify a run on its broker: every topic of the run read from Kafka, then `reconcile`; or
judge another system's output topic against `orders` (`judge_live`)."""

from __future__ import annotations

from collections.abc import Sequence

from flashsale.acklog import AckedWrite
from flashsale.kafka.reading import read_newest, read_topic
from flashsale.settings import Settings
from verify.acks import check_acks
from verify.against import Judgement, judge
from verify.reconcile import VerifyResult, reconcile

__all__ = ["NoSuchTopic", "judge_live", "verify_live"]


class NoSuchTopic(LookupError):
    """A topic verify must read is not on the broker."""


async def verify_live(
    settings: Settings, bootstrap: str, acknowledged: Sequence[AckedWrite] | None = None
) -> VerifyResult:
    """Read every topic of the run from the broker and reconcile; with `acknowledged` (the
    lines of acknowledgement logs), check each of those writes on `orders` too."""
    orders = await read_topic(bootstrap, settings.topic_orders)
    result = reconcile(
        orders=orders,
        decisions=await read_topic(bootstrap, settings.topic_decisions),
        dead_letters=await read_topic(bootstrap, settings.topic_dlq),
        inventory=await read_topic(bootstrap, settings.topic_inventory),
        # Each changelog partition holds one source partition's successive states: its newest
        # record is the one compared, and a long run's thousands of snapshots stay unread.
        states=await read_newest(bootstrap, settings.state_changelog_topic()),
        default_window=settings.dedupe_window,
        late=await read_topic(bootstrap, settings.topic_late),
        revenue=[
            await read_topic(bootstrap, settings.topic_revenue_second),
            await read_topic(bootstrap, settings.topic_revenue_minute),
        ],
        hot=await read_topic(bootstrap, settings.topic_hot),
    )
    if acknowledged is not None:
        result.add_ack_check(check_acks(orders, acknowledged))
    return result


async def judge_live(settings: Settings, bootstrap: str, topic: str, level: str) -> Judgement:
    """Read `orders` and a system's output `topic` from the broker and judge the output at
    `level` (docs/contract.md), with the settings' dedupe window and window grace."""
    orders = await read_topic(bootstrap, settings.topic_orders, settings)
    output = await read_topic(bootstrap, topic, settings)
    for name, records in ((settings.topic_orders, orders), (topic, output)):
        if not records:
            raise NoSuchTopic(f"no topic {name!r} on {bootstrap}")
    return judge(
        orders,
        output,
        level,
        topic,
        window=settings.dedupe_window,
        grace_ms=round(settings.window_grace_s * 1000),
    )
