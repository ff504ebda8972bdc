"""`ShopperUser`: HTTP shoppers on the checkout gateway.

Imported by the locustfile only: locust patches the process it is imported in with gevent.
"""

from __future__ import annotations

import functools
import random

from locust import FastHttpUser, between, task

from flashsale.scenario.catalog import Catalog
from loadtests.options import LoadOptions
from loadtests.run import options

__all__ = ["ShopperUser"]

_PROVINCES = ("Guangdong", "Zhejiang", "Jiangsu", "Shanghai", "Beijing", "Sichuan")


@functools.lru_cache(maxsize=4)
def _skus(opts: LoadOptions) -> tuple[list[str], list[str]]:
    """Every SKU of the options' scenario, and its flash-sale ones."""
    catalog = Catalog.for_scenario(opts.load())
    skus = [s.sku for s in catalog.skus]
    return skus, [s.sku for s in catalog.skus if s.flash] or skus


class ShopperUser(FastHttpUser):
    """A shopper: browses products, fills a cart, and checks out or walks away."""

    wait_time = between(0.5, 2.0)  # think time between actions

    def on_start(self) -> None:
        self.rng = random.Random()
        self.skus, self.flash = _skus(options(self.environment))
        self.buyer = {
            "province": self.rng.choice(_PROVINCES),
            "channel": self.rng.choice(("app", "web", "mini-program")),
            "payment": self.rng.choice(("alipay", "wechat-pay", "unionpay")),
        }

    def _pick(self) -> str:
        # A flash-sale SKU now and then: that is what the midnight rush is for.
        return self.rng.choice(self.flash if self.rng.random() < 0.2 else self.skus)

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
