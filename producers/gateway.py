"""`flashsale gateway`: an HTTP front door that takes checkouts and publishes them as orders.

A shopper's checkout is validated strictly (size, types, ranges, unknown fields, known SKUs),
priced from the catalog (never from the client), split into one `created` event per line on
the line's SKU key, and handed to the same producer as `flashsale produce` uses; the answer is
202 with the order id once the broker has acknowledged every line (acks=all), so a gateway
killed after answering loses no confirmed checkout. When the producer already holds its bound
of unacknowledged orders, or the broker does not confirm, the answer is 503 with
`Retry-After` (retrying with the same order id is safe: the workers dedupe). Malformed
requests get a 4xx with a one-line reason; a client over its request rate gets 429 with
`Retry-After`; one that sends its request too slowly is cut. The gateway is a producer like
the others: `flashsale verify` reconciles its orders.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from flashsale.events import MAX_ID_LEN, OrderEvent
from flashsale.scenario.catalog import Catalog, Sku

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_LINES",
    "MAX_LINE_QUANTITY",
    "GatewayMetrics",
    "OrderSink",
    "RateLimiter",
    "Rejected",
    "make_gateway",
    "openapi",
    "parse_checkout",
]

#: Largest request body accepted (a checkout of 20 lines is under 2 KB).
MAX_BODY_BYTES: Final = 16 * 1024
#: Lines of one checkout.
MAX_LINES: Final = 20
#: Units of one line a shopper may buy.
MAX_LINE_QUANTITY: Final = 99
#: Seconds a client is asked to wait when the producer is full.
RETRY_AFTER_S: Final = 1
#: Client addresses whose request buckets are kept (least recently seen dropped first).
MAX_TRACKED_CLIENTS: Final = 10_000

_ORDER_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_CHECKOUT_KEYS: Final = frozenset({"order_id", "lines", "buyer"})
_LINE_KEYS: Final = frozenset({"sku", "quantity"})
_BUYER_KEYS: Final = frozenset({"province", "channel", "payment"})


class Rejected(ValueError):
    """A request the gateway refuses: HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class OrderSink(Protocol):
    """What the gateway publishes to (the producer's sink)."""

    async def deliver(self, events: Sequence[OrderEvent]) -> None: ...

    @property
    def in_flight(self) -> int: ...


class GatewayMetrics:
    """What the gateway exports on `/metrics`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "flashsale_gateway_requests_total",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.orders = Counter(
            "flashsale_gateway_orders_accepted_total",
            "Checkouts accepted (202) and handed to the producer.",
            registry=registry,
        )
        self.lines = Counter(
            "flashsale_gateway_lines_published_total",
            "Order lines (`created` events) the gateway handed to the producer.",
            registry=registry,
        )


class RateLimiter:
    """A token bucket per client address: `rate_per_s` requests a second, bursts of up to
    one second's worth; the addresses kept are bounded."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = max(rate_per_s, 1.0)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait_s(self, client: str) -> float:
        """0 when `client` may go on (a token is taken), else seconds until it may."""
        now = self.clock()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > MAX_TRACKED_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


def _object(value: Any, keys: frozenset[str], what: str, required: frozenset[str]) -> None:
    if not isinstance(value, dict):
        raise Rejected(422, f"{what} must be a JSON object")
    unknown = sorted(str(k) for k in value.keys() - keys)
    if unknown:
        raise Rejected(422, f"{what}: unknown field {', '.join(unknown)}")
    missing = sorted(required - value.keys())
    if missing:
        raise Rejected(422, f"{what}: missing {', '.join(missing)}")


def _text(value: Any, what: str) -> str:
    if type(value) is not str or not value.strip():
        raise Rejected(422, f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LEN:
        raise Rejected(422, f"{what} is longer than {MAX_ID_LEN} characters")
    return value


def parse_checkout(
    body: bytes, skus: dict[str, Sku], now_ms: int, now_ns: int
) -> tuple[str, list[OrderEvent]]:
    """The order id and the `created` events of a checkout, or `Rejected` with the reason."""
    if len(body) > MAX_BODY_BYTES:
        raise Rejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, f"not JSON: {exc}") from None
    _object(doc, _CHECKOUT_KEYS, "checkout", frozenset({"lines", "buyer"}))
    order_id = doc.get("order_id")
    if order_id is None:
        order_id = f"g-{uuid.uuid4().hex[:20]}"
    elif type(order_id) is not str or not _ORDER_ID.match(order_id):
        raise Rejected(422, "order_id must be 1 to 64 of A-Z a-z 0-9 . _ : -")
    buyer = doc["buyer"]
    _object(buyer, _BUYER_KEYS, "buyer", _BUYER_KEYS)
    province = _text(buyer["province"], "buyer.province")
    channel = _text(buyer["channel"], "buyer.channel")
    payment = _text(buyer["payment"], "buyer.payment")
    lines = doc["lines"]
    if type(lines) is not list or not 1 <= len(lines) <= MAX_LINES:
        raise Rejected(422, f"lines must be a list of 1 to {MAX_LINES} lines")
    events = []
    for i, line in enumerate(lines):
        _object(line, _LINE_KEYS, f"lines[{i}]", _LINE_KEYS)
        sku = _text(line["sku"], f"lines[{i}].sku")
        quantity = line["quantity"]
        if type(quantity) is not int or not 1 <= quantity <= MAX_LINE_QUANTITY:
            raise Rejected(422, f"lines[{i}].quantity must be an integer 1..{MAX_LINE_QUANTITY}")
        product = skus.get(sku)
        if product is None:
            raise Rejected(422, f"lines[{i}].sku {sku!r} is not in the catalog")
        events.append(
            OrderEvent(
                order_id=order_id,
                type="created",
                event_ts_ms=now_ms,
                sku=sku,
                merchant=product.merchant,
                country=product.country,
                category=product.category,
                quantity=quantity,
                unit_price_cents=product.unit_price_cents,
                province=province,
                channel=channel,
                payment=payment,
                emit_ns=now_ns,
                line=i,
            )
        )
    return order_id, events


def make_gateway(
    catalog: Catalog,
    sink: OrderSink,
    max_in_flight: int,
    metrics: GatewayMetrics,
    worker_url: str | None = None,
    clock: Callable[[], int] = time.time_ns,
    rate_per_client: float = 0.0,
    body_timeout_s: float = 10.0,
) -> web.Application:
    """The gateway's aiohttp application over `sink` (which the caller starts and stops).

    `rate_per_client`: requests a second one client address may make (0: no limit);
    `body_timeout_s`: longest a client may take to send a checkout's body. (The server's
    `keepalive_timeout` bounds how long it may take to send the headers.)
    """
    skus = {s.sku: s for s in catalog.skus}
    session: dict[str, aiohttp.ClientSession] = {}
    limiter = RateLimiter(rate_per_client) if rate_per_client > 0 else None

    def counted(route: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            wait = limiter.wait_s(request.remote or "") if limiter is not None else 0.0
            resp: web.StreamResponse
            try:
                if wait > 0:
                    resp = _error(429, f"over {rate_per_client:g} requests/s from one client")
                    resp.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                else:
                    resp = await handler(request)
            except Rejected as exc:
                resp = _error(exc.status, exc.reason)
            metrics.requests.labels(route, str(resp.status)).inc()
            return resp

        return wrapped

    async def post_order(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise Rejected(415, "send the checkout as application/json")
        body = await _read_body(request, body_timeout_s)
        now = clock()
        order_id, events = parse_checkout(body, skus, now // 1_000_000, now)
        if sink.in_flight + len(events) > max_in_flight:
            resp = _error(503, "the producer is at its bound of unacknowledged orders; retry")
            resp.headers["Retry-After"] = str(RETRY_AFTER_S)
            return resp
        try:
            # 202 means on the broker: a shop's confirmed checkout must survive a crash here.
            await sink.deliver(events)
        except Exception as exc:  # any failed send: not confirmed, and the client must know
            resp = _json(
                {
                    "error": f"the broker did not confirm the order ({exc.__class__.__name__}); "
                    "retry with the same order_id",
                    "order_id": order_id,
                },
                status=503,
            )
            resp.headers["Retry-After"] = str(RETRY_AFTER_S)
            return resp
        metrics.orders.inc()
        metrics.lines.inc(len(events))
        return _json({"order_id": order_id, "lines": len(events)}, status=202)

    async def get_product(request: web.Request) -> web.Response:
        product = skus.get(request.match_info["sku"])
        if product is None:
            raise Rejected(404, f"no SKU {request.match_info['sku']!r}")
        return _json(
            {
                "sku": product.sku,
                "merchant": product.merchant,
                "country": product.country,
                "category": product.category,
                "unit_price_cents": product.unit_price_cents,
                "flash_sale": product.flash,
                "initial_stock": product.stock,
            }
        )

    async def get_stock(request: web.Request) -> web.Response:
        sku = request.match_info["sku"]
        if sku not in skus:
            raise Rejected(404, f"no SKU {sku!r}")
        if worker_url is None:
            raise Rejected(503, "no worker to ask: start the gateway with --worker URL")
        client = session.get("client")
        if client is None:
            client = session["client"] = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=3)
            )
        try:
            async with client.get(f"{worker_url.rstrip('/')}/views/stock/{sku}") as resp:
                if resp.status == 404:
                    raise Rejected(404, f"the workers hold no stock of {sku!r} yet")
                resp.raise_for_status()
                return _json(await resp.json())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Rejected(503, f"the worker does not answer ({exc.__class__.__name__})") from None

    async def healthz(request: web.Request) -> web.Response:
        return _json({"ok": True, "in_flight": sink.in_flight})

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    spec = openapi(sorted(skus))

    async def openapi_page(request: web.Request) -> web.Response:
        return _json(spec)

    async def close(app: web.Application) -> None:
        client = session.pop("client", None)
        if client is not None:
            await client.close()

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/orders", counted("/orders", post_order))
    app.router.add_get("/products/{sku}", counted("/products/{sku}", get_product))
    app.router.add_get("/products/{sku}/stock", counted("/products/{sku}/stock", get_stock))
    app.router.add_get("/healthz", counted("/healthz", healthz))
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/openapi.json", openapi_page)
    app.on_cleanup.append(close)
    return app


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    """The body, up to one byte over the limit; a client slower than `timeout_s` gets 408."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while size <= MAX_BODY_BYTES:
                chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except TimeoutError:
        raise Rejected(408, f"the body took longer than {timeout_s:g} s") from None
    return b"".join(chunks)


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status=status)


_ERROR: Final = {
    "description": "refused, with a one-line reason",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}


def openapi(skus: list[str]) -> dict[str, Any]:
    """The gateway's OpenAPI document; SKUs are those of the catalog it serves."""
    sku_schema = {"type": "string", "enum": skus}
    sku_parameter = {"name": "sku", "in": "path", "required": True, "schema": sku_schema}
    text = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN, "pattern": "\\S"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "flashsale gateway", "version": "1"},
        "paths": {
            "/orders": {
                "post": {
                    "summary": "Check out a basket: one created order line per line",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["lines", "buyer"],
                                    "properties": {
                                        "order_id": {
                                            "type": "string",
                                            "pattern": "^[A-Za-z0-9._:-]{1,64}$",
                                        },
                                        "lines": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": MAX_LINES,
                                            "items": {
                                                "type": "object",
                                                "additionalProperties": False,
                                                "required": ["sku", "quantity"],
                                                "properties": {
                                                    "sku": sku_schema,
                                                    "quantity": {
                                                        "type": "integer",
                                                        "minimum": 1,
                                                        "maximum": MAX_LINE_QUANTITY,
                                                    },
                                                },
                                            },
                                        },
                                        "buyer": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "required": ["province", "channel", "payment"],
                                            "properties": {
                                                name: text
                                                for name in ("province", "channel", "payment")
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "accepted and handed to the producer",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "order_id": {"type": "string"},
                                            "lines": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _ERROR,
                        "408": _ERROR,
                        "413": _ERROR,
                        "415": _ERROR,
                        "422": _ERROR,
                        "429": _ERROR,
                        "503": _ERROR,
                    },
                }
            },
            "/products/{sku}": {
                "get": {
                    "summary": "A product of the catalog",
                    "parameters": [sku_parameter],
                    "responses": {
                        "200": {"description": "the product"},
                        "404": _ERROR,
                    },
                }
            },
            "/products/{sku}/stock": {
                "get": {
                    "summary": "Units left, from the workers' stock view",
                    "parameters": [sku_parameter],
                    "responses": {
                        "200": {"description": "the stock"},
                        "404": _ERROR,
                        "503": _ERROR,
                    },
                }
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}
            },
        },
    }
