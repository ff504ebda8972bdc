"""The librdkafka sink's acknowledged count: a lower bound that never counts down, exact at
the end, whatever else sits in librdkafka's queue (its length also counts error and log
events waiting for a poll: rd_kafka_outq_len in librdkafka's rdkafka.h)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from flashsale.settings import Settings
from producers.metrics import ProducerMetrics
from producers.sinks.librdkafka import ConfluentSink


class FakeQueue:
    """librdkafka's producer as the sink sees it: a queue length and poll."""

    def __init__(self) -> None:
        self.waiting = 0  # messages not yet acknowledged
        self.events = 0  # error or log events waiting for a poll

    def __len__(self) -> int:
        return self.waiting + self.events

    def poll(self, timeout: float = 0) -> int:
        return 0


def test_an_event_in_the_queue_does_not_count_acknowledgements_down() -> None:
    registry = CollectorRegistry()
    sink = ConfluentSink(Settings(bootstrap_servers="127.0.0.1:9"), ProducerMetrics(registry))
    fake = FakeQueue()
    sink._producer = fake  # type: ignore[assignment]
    st = sink.stats

    def acked_metric() -> Any:
        return registry.get_sample_value("flashsale_events_acked_total")

    st.sent = 100
    fake.waiting = 40
    sink._settle()
    assert st.acked == 60
    fake.events = 5  # a transport error waits for a poll: the queue looks longer
    sink._settle()  # once raised ValueError (a negative counter increment)
    assert st.acked == 60
    fake.waiting = 10
    sink._settle()
    assert st.acked == 85  # a lower bound while the event waits
    fake.events = 0
    fake.waiting = 0
    sink._settle()
    assert st.acked == 100
    assert acked_metric() == 100.0


def test_sends_waiting_on_a_full_queue_do_not_count_as_acknowledged() -> None:
    sink = ConfluentSink(Settings(bootstrap_servers="127.0.0.1:9"))
    fake = FakeQueue()
    sink._producer = fake  # type: ignore[assignment]
    st = sink.stats
    st.sent = 50  # counted before the loop hands them over one by one
    sink._unproduced = 30
    fake.waiting = 20
    sink._settle()
    assert st.acked == 0
    sink._unproduced = 0
    fake.waiting = 50
    sink._settle()
    assert st.acked == 0
