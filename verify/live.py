"""Verify a run on its broker: every topic of the run read from Kafka, then `reconcile`."""

from __future__ import annotations

from collections.abc import Sequence

from flashsale.acklog import AckedWrite
from flashsale.kafka.reading import read_newest, read_topic
from flashsale.settings import Settings
from verify.acks import check_acks
from verify.reconcile import VerifyResult, reconcile

__all__ = ["verify_live"]


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
