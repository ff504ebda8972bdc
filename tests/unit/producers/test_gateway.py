"""The checkout gateway: what it accepts, every way it refuses, and what it publishes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from flashsale.events import decode_event, encode_event
from flashsale.scenario import load_scenario
from flashsale.scenario.catalog import Catalog
from producers.gateway import MAX_BODY_BYTES, GatewayMetrics, make_gateway

CATALOG = Catalog.for_scenario(load_scenario("singles-day-2020"))
SKU = CATALOG.skus[0]
NOW_NS = 1_605_024_026_000_000_000


class FakeSink:
    """Records what the gateway publishes; `in_flight` is set by the test."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.in_flight = 0

    async def deliver(self, events: Any) -> None:
        self.events.extend(events)


def checkout(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "lines": [{"sku": SKU.sku, "quantity": 2}, {"sku": CATALOG.skus[1].sku, "quantity": 1}],
        "buyer": {"province": "Guangdong", "channel": "app", "payment": "alipay"},
    }
    doc.update(changes)
    return doc


def run(test: Callable[[TestClient, FakeSink, GatewayMetrics], Awaitable[None]]) -> None:
    async def main() -> None:
        sink = FakeSink()
        metrics = GatewayMetrics(CollectorRegistry())
        app = make_gateway(CATALOG, sink, 100, metrics, clock=lambda: NOW_NS)
        async with TestClient(TestServer(app)) as client:
            await test(client, sink, metrics)

    asyncio.run(main())


def test_a_checkout_is_accepted_priced_from_the_catalog_and_split_into_lines() -> None:
    async def test(client: TestClient, sink: FakeSink, metrics: GatewayMetrics) -> None:
        resp = await client.post("/orders", json=checkout(order_id="shopper-1.retry"))
        assert resp.status == 202
        assert await resp.json() == {"order_id": "shopper-1.retry", "lines": 2}
        first, second = sink.events
        assert (first.line, second.line) == (0, 1)
        assert first.type == "created" and first.order_id == "shopper-1.retry"
        assert first.unit_price_cents == SKU.unit_price_cents and first.quantity == 2
        assert first.event_ts_ms == NOW_NS // 1_000_000 and first.emit_ns == NOW_NS
        # What goes to Kafka passes the worker's own strict decoder.
        assert decode_event(encode_event(first)) == first
        resp = await client.post("/orders", json=checkout())
        assert (await resp.json())["order_id"].startswith("g-")
        assert metrics.orders._value.get() == 2
        assert metrics.lines._value.get() == 4

    run(test)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "not JSON"),
        (b"[1, 2]", 422, "checkout must be a JSON object"),
        (orjson.dumps(checkout(coupon="FREE")), 422, "unknown field coupon"),
        (orjson.dumps({"lines": []}), 422, "missing buyer"),
        (orjson.dumps(checkout(lines=[])), 422, "lines must be a list of 1 to 20"),
        (orjson.dumps(checkout(lines=[{"sku": SKU.sku, "quantity": 1}] * 21)), 422, "1 to 20"),
        (orjson.dumps(checkout(lines=[{"sku": SKU.sku}])), 422, "lines[0]: missing quantity"),
        (
            orjson.dumps(checkout(lines=[{"sku": SKU.sku, "quantity": 1, "price": 1}])),
            422,
            "unknown field price",
        ),
        (orjson.dumps(checkout(lines=[{"sku": SKU.sku, "quantity": 0}])), 422, "1..99"),
        (orjson.dumps(checkout(lines=[{"sku": SKU.sku, "quantity": 100}])), 422, "1..99"),
        (orjson.dumps(checkout(lines=[{"sku": SKU.sku, "quantity": True}])), 422, "integer"),
        (orjson.dumps(checkout(lines=[{"sku": SKU.sku, "quantity": 1.5}])), 422, "integer"),
        (orjson.dumps(checkout(lines=[{"sku": "XX-NOPE-1", "quantity": 1}])), 422, "not in the"),
        (orjson.dumps(checkout(lines=[{"sku": 7, "quantity": 1}])), 422, "non-empty string"),
        (orjson.dumps(checkout(order_id="has space")), 422, "order_id"),
        (orjson.dumps(checkout(order_id=12)), 422, "order_id"),
        (
            orjson.dumps(checkout(buyer={"province": "", "channel": "app", "payment": "x"})),
            422,
            "buyer.province",
        ),
        (
            orjson.dumps(checkout(buyer={"province": "x" * 200, "channel": "a", "payment": "x"})),
            422,
            "longer than",
        ),
        (b"{" + b" " * MAX_BODY_BYTES + b"}", 413, ""),
    ],
)
def test_every_malformed_checkout_gets_a_4xx_with_its_reason(
    body: bytes, status: int, reason: str
) -> None:
    async def test(client: TestClient, sink: FakeSink, metrics: GatewayMetrics) -> None:
        resp = await client.post("/orders", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == status
        if reason:
            assert reason in (await resp.json())["error"]
        assert sink.events == []

    run(test)


def test_a_form_post_is_refused_as_the_wrong_media_type() -> None:
    async def test(client: TestClient, sink: FakeSink, metrics: GatewayMetrics) -> None:
        resp = await client.post("/orders", data={"lines": "1"})
        assert resp.status == 415
        assert sink.events == []

    run(test)


def test_a_full_producer_answers_503_with_retry_after_instead_of_queueing() -> None:
    async def test(client: TestClient, sink: FakeSink, metrics: GatewayMetrics) -> None:
        sink.in_flight = 99  # the bound is 100: two lines do not fit
        resp = await client.post("/orders", json=checkout())
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert sink.events == []
        sink.in_flight = 98
        assert (await client.post("/orders", json=checkout())).status == 202

    run(test)


def test_products_health_metrics_and_openapi() -> None:
    async def test(client: TestClient, sink: FakeSink, metrics: GatewayMetrics) -> None:
        resp = await client.get(f"/products/{SKU.sku}")
        assert resp.status == 200
        assert (await resp.json())["unit_price_cents"] == SKU.unit_price_cents
        assert (await client.get("/products/NOPE")).status == 404
        # Without a worker the stock view cannot be asked.
        resp = await client.get(f"/products/{SKU.sku}/stock")
        assert resp.status == 503
        assert "--worker" in (await resp.json())["error"]
        assert (await (await client.get("/healthz")).json())["ok"] is True
        text = await (await client.get("/metrics")).text()
        assert 'flashsale_gateway_requests_total{route="/products/{sku}",status="404"} 1.0' in text
        spec = await (await client.get("/openapi.json")).json()
        assert set(spec["paths"]) == {
            "/orders",
            "/products/{sku}",
            "/products/{sku}/stock",
            "/healthz",
        }

    run(test)
