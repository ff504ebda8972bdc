"""The gateway's limits without a broker: request rate per client, and an order the broker did
not confirm is never a 202."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from flashsale.scenario import load_scenario
from flashsale.scenario.catalog import Catalog
from producers.gateway import MAX_TRACKED_CLIENTS, GatewayMetrics, RateLimiter, make_gateway

CATALOG = Catalog.for_scenario(load_scenario("singles-day-2020"))
CHECKOUT = {
    "order_id": "limits-1",
    "lines": [{"sku": CATALOG.skus[0].sku, "quantity": 1}],
    "buyer": {"province": "Guangdong", "channel": "app", "payment": "alipay"},
}


class Sink:
    def __init__(self, fail: Exception | None = None) -> None:
        self.events: list[Any] = []
        self.in_flight = 0
        self.fail = fail

    async def deliver(self, events: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.events.extend(events)


def test_a_client_gets_one_seconds_burst_then_waits_for_tokens() -> None:
    now = [100.0]
    limiter = RateLimiter(10, clock=lambda: now[0])
    assert [limiter.wait_s("a") for _ in range(10)] == [0.0] * 10
    assert limiter.wait_s("a") == 0.1  # the 11th waits for one token
    assert limiter.wait_s("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert [limiter.wait_s("a") == 0.0 for _ in range(6)] == [True] * 5 + [False]


def test_the_clients_kept_are_bounded() -> None:
    limiter = RateLimiter(1)
    for i in range(MAX_TRACKED_CLIENTS + 50):
        limiter.wait_s(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == MAX_TRACKED_CLIENTS


def _run(sink: Sink, rate: float, posts: int) -> list[tuple[int, dict[str, Any], str | None]]:
    async def main() -> list[tuple[int, dict[str, Any], str | None]]:
        app = make_gateway(CATALOG, sink, 100, GatewayMetrics(CollectorRegistry()), None,
                           rate_per_client=rate)  # fmt: skip
        out = []
        async with TestClient(TestServer(app)) as client:
            for _ in range(posts):
                resp = await client.post("/orders", json=CHECKOUT)
                out.append((resp.status, await resp.json(), resp.headers.get("Retry-After")))
        return out

    return asyncio.run(main())


def test_past_its_burst_a_client_gets_429_with_retry_after() -> None:
    answers = _run(Sink(), rate=20, posts=30)
    statuses = [status for status, _, _ in answers]
    assert statuses[:20] == [202] * 20
    assert 429 in statuses[20:]
    _, body, retry = next(a for a in answers if a[0] == 429)
    assert body == {"error": "over 20 requests/s from one client"}
    assert retry == "1"


def test_no_limit_when_the_rate_is_zero() -> None:
    assert {status for status, _, _ in _run(Sink(), rate=0, posts=50)} == {202}


def test_an_order_the_broker_did_not_confirm_is_503_with_its_id_to_retry() -> None:
    [(status, body, retry)] = _run(Sink(fail=TimeoutError()), rate=0, posts=1)
    assert status == 503
    assert body == {
        "error": "the broker did not confirm the order (TimeoutError); retry with the same "
        "order_id",
        "order_id": "limits-1",
    }
    assert retry == "1"
