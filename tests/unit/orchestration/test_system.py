"""`demo --system`: the command line a system under test gets for a run."""

from __future__ import annotations

from orchestration.system import SystemUnderTest


def test_the_placeholders_become_the_run_s_servers_and_orders_topic() -> None:
    system = SystemUnderTest(
        "python app.py --brokers {bootstrap} --in {orders} --name 'my job' --x={orders}",
        "my-job",
        "out",
        "decisions",
    )
    assert system.argv("127.0.0.1:9092,127.0.0.1:9093", "orders-7") == [
        "python",
        "app.py",
        "--brokers",
        "127.0.0.1:9092,127.0.0.1:9093",
        "--in",
        "orders-7",
        "--name",
        "my job",
        "--x=orders-7",
    ]
