"""The counters and GMV dimensions are defined once (flashsale/counters.py), and every place
that stores, sums, exports or compares them reads that definition."""

from __future__ import annotations

from dataclasses import fields

import orjson
from prometheus_client import CollectorRegistry

from flashsale.counters import (
    GMV_DIMENSIONS,
    GMV_FIELDS,
    MONEY,
    OTHER_COUNTS,
    OUTCOME_COUNTS,
    OUTCOMES,
    STATE_COUNTERS,
    gmv_field,
)
from flashsale.events import OrderEvent
from streams.metrics import WorkerMetrics
from streams.state import PartitionState
from verify.reconcile import COUNTS
from verify.summary import BUSINESS_FIELDS, NAMES
from verify.truth import Truth


def test_the_state_declares_exactly_the_counters_and_breakdowns() -> None:
    declared = {f.name: f.type for f in fields(PartitionState)}
    integers = [n for n, kind in declared.items() if kind == "int" and n in STATE_COUNTERS]
    assert sorted(integers) == sorted(STATE_COUNTERS)
    breakdowns = [n for n in declared if n.startswith("gmv_by_")]
    assert breakdowns == list(GMV_FIELDS)
    assert tuple(gmv_field(d) for d in GMV_DIMENSIONS) == GMV_FIELDS
    # Each dimension is a field of the order event that paid GMV is broken down by.
    assert set(GMV_DIMENSIONS) <= {f.name for f in fields(OrderEvent)}


def test_the_state_record_and_its_summary_carry_every_counter() -> None:
    state = PartitionState(partition=3, window=10)
    for i, name in enumerate(STATE_COUNTERS, start=1):
        setattr(state, name, i)
    record = orjson.loads(state.to_bytes())
    summary = state.summary()
    for i, name in enumerate(STATE_COUNTERS, start=1):
        assert record[name] == i
        assert summary[name] == i
    for name in GMV_FIELDS:
        assert name in record
    assert PartitionState.from_bytes(state.to_bytes()) == state


def test_every_count_has_one_outcome_a_summary_name_and_a_metric() -> None:
    assert len({c.outcome for c in OUTCOME_COUNTS}) == len(OUTCOME_COUNTS) == len(OUTCOMES)
    assert {outcome for _, outcome in MONEY} <= set(OUTCOMES)
    assert tuple(c.field for c in OUTCOME_COUNTS) == COUNTS
    metrics = WorkerMetrics(CollectorRegistry())
    assert set(metrics.of_state) == {*COUNTS, *(n for n, _ in MONEY), "restocks"}
    assert set(OTHER_COUNTS) >= {"restocks", "dlq", "late"}
    assert set(metrics.gmv_by) <= set(GMV_DIMENSIONS)


def test_the_summary_and_the_truth_name_every_count() -> None:
    for count in OUTCOME_COUNTS:
        assert count.summary in NAMES
        assert count.summary in BUSINESS_FIELDS
        assert isinstance(Truth().count(count.field), int)
    for name, _ in MONEY:
        assert isinstance(Truth().count(name), int)
