"""Locust users for flashsale: shoppers on the HTTP gateway, and Kafka-native order senders.

Run by `flashsale loadtest` in locust's own process(es), or by hand:

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8060 ShopperUser
    locust -f loadtests/locustfile.py --flashsale-bootstrap-servers 127.0.0.1:9092 KafkaOrdersUser

The options are locust custom arguments, `--flashsale-*` (loadtests/options.py): in the web
UI and `flashsale loadtest --help` (locust prints its own --help before it reads a
locustfile), sent by a master to its workers, each with an environment variable for its
default; the Kafka client's other settings are `FLASHSALE_*` as everywhere. Distributed, the
Kafka users of locust worker `i` of `N` send the orders whose sequence number is `i` modulo
`N`, so the workers send the one-process stream between them (loadtests/share.py); the master
sends the restocks first. One locust request is one order event. Docs: docs/loadtesting.md.
"""

from __future__ import annotations

import os
import sys

from loadtests.kafka_orders import KafkaOrdersUser
from loadtests.options import shape_asked
from loadtests.shoppers import ShopperUser

# Locust takes the user and shape classes it finds in this module; the shape only when one
# is asked for, so that without it locust's own -u, -r and -t apply, as usual.
__all__ = ["KafkaOrdersUser", "ShopperUser"]
if shape_asked(sys.argv[1:], os.environ):
    from loadtests.shapes import SinglesDayShape

    __all__ += ["SinglesDayShape"]
