"""Verify a run on its broker: every topic of the run read from Kafka, then `reconcile`."""

from __future__ import annotations

from flashsale.kafka.reading import read_newest, read_topic
from flashsale.settings import Settings
from verify.reconcile import VerifyResult, reconcile

__all__ = ["verify_live"]


async def verify_live(settings: Settings, bootstrap: str) -> VerifyResult:
    """Read every topic of the run from the broker and reconcile."""
    return reconcile(
        orders=await read_topic(bootstrap, settings.topic_orders),
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
