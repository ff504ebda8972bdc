"""Locust users for flashsale: shoppers on the HTTP gateway, and Kafka-native order senders.

Run by `flashsale loadtest` in locust's own process(es), or by hand:

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8060 ShopperUser
    FLASHSALE_BOOTSTRAP_SERVERS=127.0.0.1:9092 locust -f loadtests/locustfile.py KafkaOrdersUser

Settings come from the environment: `FLASHSALE_*` as everywhere (bootstrap servers, topic
names), plus `FLASHSALE_LOADTEST_SCENARIO` (preset name or YAML file; its catalog and curve),
`FLASHSALE_LOADTEST_SHAPE` (`singles-day` follows the scenario's curve, `constant` holds the
users; unset: locust's own -u/-r), `FLASHSALE_LOADTEST_USERS` (users at the peak) and
`FLASHSALE_LOADTEST_DURATION` (seconds), `FLASHSALE_LOADTEST_RATE` (Kafka users: most orders per
second per locust process; 0, the default, is as fast as it goes). Docs: docs/loadtesting.md.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import gevent
from locust import FastHttpUser, LoadTestShape, User, between, events, task

from flashsale.events import encode_event
from flashsale.scenario import load_scenario
from flashsale.scenario.curves import Curve
from flashsale.settings import Settings
from producers.generator import Generator
from producers.sinks.librdkafka import librdkafka_config, librdkafka_producer

SCENARIO = load_scenario(os.environ.get("FLASHSALE_LOADTEST_SCENARIO", "singles-day-2020"))
SHAPE = os.environ.get("FLASHSALE_LOADTEST_SHAPE", "")
PEAK_USERS = int(os.environ.get("FLASHSALE_LOADTEST_USERS", "20"))
DURATION_S = float(os.environ.get("FLASHSALE_LOADTEST_DURATION", "60"))
#: Kafka users: most orders per second this locust process sends (0: as fast as it can).
RATE = float(os.environ.get("FLASHSALE_LOADTEST_RATE", "0"))

_GENERATOR = Generator(SCENARIO)
_SKUS = [s.sku for s in _GENERATOR.catalog.skus]
_FLASH = [s.sku for s in _GENERATOR.catalog.skus if s.flash] or _SKUS
_PROVINCES = ("Guangdong", "Zhejiang", "Jiangsu", "Shanghai", "Beijing", "Sichuan")


class ShopperUser(FastHttpUser):
    """A shopper: browses products, fills a cart, and checks out or walks away."""

    wait_time = between(0.5, 2.0)  # think time between actions

    def on_start(self) -> None:
        self.rng = random.Random()
        self.buyer = {
            "province": self.rng.choice(_PROVINCES),
            "channel": self.rng.choice(("app", "web", "mini-program")),
            "payment": self.rng.choice(("alipay", "wechat-pay", "unionpay")),
        }

    def _pick(self) -> str:
        # A flash-sale SKU now and then: that is what the midnight rush is for.
        return self.rng.choice(_FLASH if self.rng.random() < 0.2 else _SKUS)

    @task(5)
    def browse(self) -> None:
        self.client.get(f"/products/{self._pick()}", name="/products/{sku}")

    @task(2)
    def check_out(self) -> None:
        cart = []
        for _ in range(self.rng.randint(1, 3)):
            sku = self._pick()
            self.client.get(f"/products/{sku}", name="/products/{sku}")
            cart.append({"sku": sku, "quantity": self.rng.randint(1, 2)})
        if self.rng.random() < 0.3:
            return  # an abandoned cart
        with self.client.post(
            "/orders", json={"lines": cart, "buyer": self.buyer}, catch_response=True
        ) as resp:
            if resp.status_code != 202:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")


#: Events a Kafka user sends per task: one generator block.
BLOCK_EVENTS = 5_000


class _Stream:
    """The scenario's order stream, shared by the Kafka users of one locust process."""

    def __init__(self) -> None:
        self.blocks: Any = None
        self.restocked = False
        self.sent = 0
        self.started = time.monotonic()

    def next_block(self) -> tuple[list[bytes], list[bytes]]:
        if self.blocks is None:
            # Blocks of about BLOCK_EVENTS at the peak (the generator's grid is 10 ms).
            block_s = max(round(BLOCK_EVENTS / _peak_rate(), 2), 0.01)
            self.blocks = _GENERATOR.blocks(None, None, block_s)
        block = next(self.blocks, None)
        if block is None:  # the horizon is over: start again from its beginning
            self.blocks = None
            return [], []
        return block.keys, block.values(time.time_ns())


def _peak_rate() -> float:
    return max(Curve(SCENARIO).peak()[1] * SCENARIO.scale.sample_ratio, 1.0)


_STREAM = _Stream()


class KafkaOrdersUser(User):
    """Sends the scenario's generated orders straight to Kafka with librdkafka.

    It never blocks on a delivery: each task queues a block of orders and polls; the last
    order of a block carries a delivery callback that fires one locust request event with the
    block's delivery latency (`response_length` = the orders in it).
    """

    wait_time = between(0, 0)

    def on_start(self) -> None:
        from confluent_kafka import Producer

        settings = Settings()
        self.topic = settings.topic_orders
        self.producer = librdkafka_producer(
            Producer,
            settings,
            {
                **librdkafka_config(settings, "flashsale-locust"),
                # librdkafka's default bound: what a stopped run leaves unsent stays small.
                "queue.buffering.max.messages": 100_000,
            },
        )
        if not _STREAM.restocked:
            _STREAM.restocked = True
            for restock in _GENERATOR.restocks():
                self.producer.produce(self.topic, encode_event(restock), restock.sku.encode())
            self.producer.flush(30)

    def on_stop(self) -> None:
        self.producer.flush(30)

    @task
    def send_block(self) -> None:
        keys, values = _STREAM.next_block()
        if not keys:
            return
        produce = self.producer.produce
        poll = self.producer.poll
        started = time.perf_counter()
        count = len(values)
        last = count - 1

        def delivered(err: Any, msg: Any) -> None:
            events.request.fire(
                request_type="kafka",
                name=f"produce {self.topic}",
                response_time=(time.perf_counter() - started) * 1000,
                response_length=count,
                exception=None if err is None else RuntimeError(str(err)),
                context={},
            )

        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            while True:
                try:
                    if i == last:
                        produce(self.topic, value, key, on_delivery=delivered)
                    else:
                        produce(self.topic, value, key)
                    break
                except BufferError:
                    poll(0.001)  # the local queue is full: let librdkafka send
            if i % 1000 == 0:
                poll(0)
        poll(0)
        if RATE > 0:
            # Hold this process's share of the rate: the users of a process share the stream.
            _STREAM.sent += count
            wake = _STREAM.started + _STREAM.sent / RATE
            # Delivery callbacks run inside poll(): keep polling while waiting, so the
            # latency a block reports is the broker's, not this pause's.
            while time.monotonic() < wake:
                poll(0)
                gevent.sleep(min(wake - time.monotonic(), 0.005))


class SinglesDayShape(LoadTestShape):
    """Users over time following the scenario's curve, for `FLASHSALE_LOADTEST_DURATION`
    seconds: `singles-day` scales `FLASHSALE_LOADTEST_USERS` by the curve's share of its peak
    at each second (on the scenario's own clock), `constant` holds them."""

    def __init__(self) -> None:
        super().__init__()
        self.curve = Curve(SCENARIO)
        self.last_users = 0

    def users_at(self, run_s: float) -> int:
        if SHAPE == "constant":
            return PEAK_USERS
        share = self.curve.fraction(run_s * SCENARIO.scale.compression)
        return max(1, round(PEAK_USERS * share))

    def tick(self) -> tuple[int, float] | None:
        run_s = self.get_run_time()
        if run_s >= DURATION_S:
            return None
        users = self.users_at(run_s)
        # Reach each second's user count within that second.
        spawn_rate = float(max(abs(users - self.last_users), 1))
        self.last_users = users
        return users, spawn_rate


if SHAPE not in ("singles-day", "constant"):
    # Locust uses a shape class whenever the locustfile defines one: without a shape asked
    # for, -u, -r and -t apply as usual.
    del SinglesDayShape
