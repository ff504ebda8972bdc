"""A stream processor that is not flashsale's: the order rules as a Quix Streams application.

It reads flashsale's `orders` topic and writes what docs/contract.md asks of a system under
test, so that `flashsale verify --against` can judge it:

- `--decisions`: one decision per message of `orders` (level `decisions`);
- `--totals`: units sold and stock per SKU, each sell-out, and paid GMV per event-time minute,
  country and category (level `totals`).

It shares no code with flashsale: it decodes and validates the events itself
(docs/events.md) and applies the rules (docs/events.md, "The rules") with Quix's own state,
per message key (`orders` is keyed by SKU). `--bug gmv-every-delivery` plants a bug for
`verify` to find. See README.md beside this file.

Run it with a Python that has quixstreams (`make bench` makes .venv/quix):

    .venv/quix/bin/python examples/quix-orders/app.py --bootstrap-servers 127.0.0.1:9092 \
        --orders orders --decisions quix-decisions --totals quix-totals
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from quixstreams import Application, State, message_context
from quixstreams.models import TopicAdmin, TopicConfig

try:  # the same parser as flashsale's producer; the standard library's otherwise
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _DecodeError: tuple[type[Exception], ...] = (orjson.JSONDecodeError,)
except ImportError:  # pragma: no cover - orjson is in the `quix` extra
    import json

    _loads = json.loads
    _DecodeError = (ValueError, UnicodeDecodeError)

log = logging.getLogger("quix-orders")

BUGS = ("gmv-every-delivery",)

# -- The event schema (docs/events.md), checked here on our own -------------------------------

EVENT_TYPES = frozenset({"created", "paid", "cancelled", "refunded", "restock"})
STR_FIELDS = (
    "order_id",
    "type",
    "sku",
    "merchant",
    "country",
    "category",
    "province",
    "channel",
    "payment",
)
INT_FIELDS = ("v", "line", "event_ts_ms", "emit_ns", "quantity", "unit_price_cents")
ALL_FIELDS = frozenset(STR_FIELDS + INT_FIELDS)
#: Only a restock (no buyer) may leave these empty.
BUYER_FIELDS = frozenset({"province", "channel", "payment"})
MAX_TEXT = 128
MAX_TIME = 2**63 - 1
#: Inclusive ranges of the integer fields.
RANGES = {
    "quantity": (1, 1_000_000),
    "unit_price_cents": (1, 100_000_000),
    "line": (0, 99),
    "event_ts_ms": (0, MAX_TIME),
    "emit_ns": (0, MAX_TIME),
}
#: A message with this header packs many events; out of this reference's scope (a dead letter).
PACKED_HEADER = "flashsale.packed"


class Malformed(ValueError):
    """A message that is not a valid order event; the argument is a short reason."""


def parse_event(raw: bytes | None, headers: Any) -> dict[str, Any]:
    """The event a message holds, as its JSON object; `Malformed` when it is not one."""
    for name, _ in headers or ():
        if name == PACKED_HEADER:
            raise Malformed("packed")
    if raw is None:
        raise Malformed("empty")
    try:
        doc = _loads(raw)
    except _DecodeError:
        raise Malformed("not_json") from None
    if type(doc) is not dict:
        raise Malformed("not_object")
    if doc.get("v") != 1 or type(doc.get("v")) is not int:
        raise Malformed("unknown_version")
    if doc.keys() != ALL_FIELDS:
        raise Malformed("missing_field" if ALL_FIELDS - doc.keys() else "unknown_field")
    for name in INT_FIELDS:
        if type(doc[name]) is not int:  # a bool is not an integer, 49.99 is not cents
            raise Malformed("wrong_type")
    for name in STR_FIELDS:
        if type(doc[name]) is not str:
            raise Malformed("wrong_type")
        if len(doc[name]) > MAX_TEXT:
            raise Malformed("out_of_range")
    kind = doc["type"]
    if kind not in EVENT_TYPES:
        raise Malformed("unknown_type")
    for name in STR_FIELDS:
        if not doc[name] and not (kind == "restock" and name in BUYER_FIELDS):
            raise Malformed("out_of_range")
    for name, (low, high) in RANGES.items():
        if not low <= doc[name] <= high:
            raise Malformed("out_of_range")
    return doc


# -- The rules (docs/events.md), on the state of one message key ------------------------------
#
# The state of a key (a SKU) holds, under keys of its own:
#   s:SKU, u:SKU            stock on hand, units sold
#   o:ORDER/LINE            a reserved (open) line: [units, cents, sku, country, category,
#                           merchant, province], as its `created` described it
#   p:ORDER/LINE            a paid line: [seq, the same seven fields]
#   e:ORDER/LINE/TYPE       an event id among the key's last `window` distinct ones
#   en, e#SLOT              how many ids ever joined, and the ring of the last `window` ids
#   ph, pt, pl, p#SEQ       the FIFO of paid lines: head and tail sequence numbers, how many
#                           are still paid (a refund leaves a hole), the line at each seq
# Order ids are free text, but line and type are last and fixed-format, so the keys split
# from the right without ambiguity.


class Rules:
    """The order rules, applied one event at a time to the state of the event's key."""

    def __init__(self, window: int, bug: str | None) -> None:
        self.window = window
        self.bug = bug

    def decide(self, ev: dict[str, Any], state: State) -> tuple[str, int, list[dict[str, Any]]]:
        """The event's outcome, its amount, and the totals records it changes (each with
        `kind` "sku", "sold_out", or "paid" for a GMV amount to add to a cell)."""
        kind = ev["type"]
        line = f"{ev['order_id']}/{ev['line']}"
        mark = f"e:{line}/{kind}"
        if state.exists(mark):
            if self.bug == "gmv-every-delivery" and kind == "paid":
                # The planted bug: a retried payment counts its line's GMV again.
                paid = state.get(f"p:{line}")
                if paid is not None:
                    return "paid", paid[2], [self._gmv(ev, paid[1:])]
            return "duplicate", 0, []
        self._remember(mark, state)
        described = [
            ev["quantity"],
            ev["quantity"] * ev["unit_price_cents"],
            ev["sku"],
            ev["country"],
            ev["category"],
            ev["merchant"],
            ev["province"],
        ]
        held = None
        if kind in ("created", "paid", "cancelled"):
            held = state.get(f"o:{line}")
        if held is None and kind in ("created", "refunded"):
            paid = state.get(f"p:{line}")
            held = None if paid is None else paid[1:]

        if kind == "restock":
            sku = ev["sku"]
            stock = state.get(f"s:{sku}", 0) + ev["quantity"]
            state.set(f"s:{sku}", stock)
            return "restocked", 0, [self._sku(sku, state)]
        if held is not None and held != described:
            return "mismatch", 0, []
        if kind == "created":
            if held is not None:
                return "duplicate", 0, []  # a retry later than the window, its line still held
            sku, units = ev["sku"], ev["quantity"]
            have = state.get(f"s:{sku}", 0)
            if have < units:
                return "rejected_oversell", 0, []
            state.set(f"s:{sku}", have - units)
            state.set(f"o:{line}", described)
            totals = [self._sku(sku, state)]
            if have == units:
                totals.append({"kind": "sold_out", "sku": sku, "event_ts_ms": ev["event_ts_ms"]})
            return "accepted", described[1], totals
        if held is None:
            return "orphan", 0, []
        units, cents, sku = held[0], held[1], held[2]
        if kind == "paid":
            state.delete(f"o:{line}")
            state.set(f"u:{sku}", state.get(f"u:{sku}", 0) + units)
            self._paid(line, held, state)
            return "paid", cents, [self._sku(sku, state), self._gmv(ev, held)]
        if kind == "cancelled":
            state.delete(f"o:{line}")
            state.set(f"s:{sku}", state.get(f"s:{sku}", 0) + units)
            return "cancelled", cents, [self._sku(sku, state)]
        # refunded: the line leaves the paid lines; stock and GMV stay as they are
        state.delete(f"p:{line}")
        state.set("pl", state.get("pl", 0) - 1)
        return "refunded", cents, []

    def _remember(self, mark: str, state: State) -> None:
        """`mark` joins the key's last `window` event ids; the oldest leaves."""
        if self.window <= 0:
            return
        n = state.get("en", 0)
        slot = f"e#{n % self.window}"
        if n >= self.window:
            state.delete(state.get(slot))
        state.set(slot, mark)
        state.set(mark, 1)
        state.set("en", n + 1)

    def _paid(self, line: str, held: list[Any], state: State) -> None:
        """`line` joins the key's last `window` paid lines; the oldest leave."""
        seq = state.get("pt", 0)
        state.set("pt", seq + 1)
        state.set(f"p#{seq}", line)
        state.set(f"p:{line}", [seq, *held])
        live = state.get("pl", 0) + 1
        head = state.get("ph", 0)
        while live > self.window:
            oldest = state.get(f"p#{head}")
            state.delete(f"p#{head}")
            paid = state.get(f"p:{oldest}")
            if paid is not None and paid[0] == head:  # still paid: not refunded since
                state.delete(f"p:{oldest}")
                live -= 1
            head += 1
        state.set("ph", head)
        state.set("pl", live)

    @staticmethod
    def _sku(sku: str, state: State) -> dict[str, Any]:
        return {
            "kind": "sku",
            "sku": sku,
            "units_sold": state.get(f"u:{sku}", 0),
            "stock": state.get(f"s:{sku}", 0),
        }

    @staticmethod
    def _gmv(ev: dict[str, Any], held: list[Any]) -> dict[str, Any]:
        """A paid amount for its GMV cell: the paid event's minute, the line's country and
        category (summed per cell after the repartition)."""
        return {
            "kind": "paid",
            "minute_start_ms": ev["event_ts_ms"] // 60_000 * 60_000,
            "country": held[3],
            "category": held[4],
            "cents": held[1],
        }


# -- The application --------------------------------------------------------------------------


def now_ms(*_: Any) -> int:
    """Wall-clock ms: the output records' timestamp (verify measures latency with it)."""
    return time.time_ns() // 1_000_000


def no_headers(*_: Any) -> list[tuple[str, bytes]]:
    """Outputs carry none of the source's headers (`flashsale.packed` among them)."""
    return []


def total_key(record: dict[str, Any]) -> str:
    """A totals record's key: its kind and key fields, so a key's records share a partition."""
    if record["kind"] == "sku":
        return f"sku|{record['sku']}"
    if record["kind"] == "sold_out":
        return f"sold_out|{record['sku']}|{record['event_ts_ms']}"
    return f"gmv|{record['minute_start_ms']}|{record['country']}|{record['category']}"


def cell_key(paid: dict[str, Any]) -> str:
    """The GMV cell a paid amount belongs to."""
    return f"gmv|{paid['minute_start_ms']}|{paid['country']}|{paid['category']}"


class Progress:
    """Counts outcomes and logs them every `every_s` seconds."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.counts: dict[str, int] = {}
        self.last: float | None = None

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if self.last is None:
            self.last = time.monotonic()
        elif time.monotonic() - self.last >= self.every_s:
            self.report()

    def report(self) -> None:
        self.last = time.monotonic()
        total = sum(self.counts.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        log.info("%d messages decided (%s)", total, parts or "none")


def wait_for_topic(bootstrap: str, topic: str) -> TopicConfig:
    """Wait until `topic` exists (flashsale's producer creates it); its partitions and
    replicas. Quix would otherwise create a missing input topic with one partition."""
    admin = TopicAdmin(bootstrap)
    waiting = False
    while True:
        try:
            found = admin.inspect_topics([topic], timeout=10)[topic]
            why = "no such topic yet"
        except Exception as exc:  # the broker is not up yet
            found, why = None, str(exc)
        if found is not None:
            return TopicConfig(
                num_partitions=found.num_partitions, replication_factor=found.replication_factor
            )
        if not waiting:
            log.info("waiting for topic %s on %s (%s)", topic, bootstrap, why)
            waiting = True
        time.sleep(1.0)


def build(
    app: Application, args: argparse.Namespace, progress: Progress, like: TopicConfig
) -> None:
    """The dataframe: decide each message with its key's state, then write the decisions,
    the SKU totals and sell-outs, and (repartitioned by cell) the GMV cells. Output topics
    that do not exist are created with the partitions and replicas of `orders` (`like`)."""
    rules = Rules(args.dedupe_window, args.bug)
    orders = app.topic(args.orders, key_deserializer="bytes", value_deserializer="bytes")
    decisions = app.topic(
        args.decisions, key_serializer="bytes", value_serializer="json", config=like
    )
    totals = app.topic(args.totals, key_serializer="str", value_serializer="json", config=like)

    def decide(raw: bytes | None, key: Any, timestamp: int, headers: Any, state: State) -> list:
        ctx = message_context()
        decision: dict[str, Any] = {"partition": ctx.partition, "offset": ctx.offset}
        try:
            ev = parse_event(raw, headers)
        except Malformed as exc:
            # A dead letter: the key's state is not touched (the key may be no SKU, or none).
            decision.update(outcome="dlq", amount_cents=0, reason=str(exc))
            progress.add("dlq")
            return [("decision", decision)]
        outcome, cents, changed = rules.decide(ev, state)
        decision.update(
            outcome=outcome,
            amount_cents=cents,
            order_id=ev["order_id"],
            line=ev["line"],
            type=ev["type"],
            sku=ev["sku"],
        )
        progress.add(outcome)
        return [("decision", decision)] + [
            ("paid" if t["kind"] == "paid" else "total", t) for t in changed
        ]

    out = app.dataframe(orders).apply(decide, stateful=True, metadata=True, expand=True)

    # Decisions, keyed as the source message (its SKU).
    decided = out.filter(lambda o: o[0] == "decision").apply(lambda o: o[1])
    decided.set_timestamp(now_ms).set_headers(no_headers).to_topic(decisions)

    # SKU totals and sell-outs: state of the SKU's own key, written in its offset order.
    sku = out.filter(lambda o: o[0] == "total").apply(lambda o: o[1])
    sku.set_timestamp(now_ms).set_headers(no_headers).to_topic(totals, key=total_key)

    # GMV cells: the paid amounts repartitioned by cell, summed in the cell's own state.
    def add(paid: dict[str, Any], state: State) -> dict[str, Any]:
        gmv = state.get("gmv_cents", 0) + paid["cents"]
        state.set("gmv_cents", gmv)
        return {
            "kind": "gmv",
            "minute_start_ms": paid["minute_start_ms"],
            "country": paid["country"],
            "category": paid["category"],
            "gmv_cents": gmv,
        }

    paid = out.filter(lambda o: o[0] == "paid").apply(lambda o: o[1])
    paid = paid.group_by(cell_key, name="gmv-cell", key_serializer="str", key_deserializer="str")
    cells = paid.apply(add, stateful=True)
    cells.set_timestamp(now_ms).set_headers(no_headers).to_topic(totals)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="The order rules as a Quix Streams application: reads flashsale's orders "
        "topic, writes decisions and totals for `flashsale verify --against`."
    )
    p.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT[,...]")
    p.add_argument("--orders", required=True, metavar="TOPIC", help="flashsale's orders topic")
    p.add_argument("--decisions", required=True, metavar="TOPIC", help="one decision a message")
    p.add_argument("--totals", required=True, metavar="TOPIC", help="SKU, sell-out, GMV records")
    p.add_argument("--group", default="quix-orders", help="consumer group [quix-orders]")
    p.add_argument(
        "--dedupe-window",
        type=int,
        default=5_000,
        metavar="N",
        help="event ids and paid lines remembered per SKU [5000]; run verify with the same "
        "FLASHSALE_DEDUPE_WINDOW",
    )
    p.add_argument("--bug", choices=BUGS, help="plant a bug for verify to find")
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="Quix's RocksDB state; default a temporary folder removed at exit (the state is "
        "changelogged to Kafka, so a restart recovers it from there)",
    )
    p.add_argument(
        "--processing-guarantee",
        choices=("at-least-once", "exactly-once"),
        default="at-least-once",
        help="Quix's guarantee [at-least-once]",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s [%(name)s] %(message)s"
    )
    try:
        like = wait_for_topic(args.bootstrap_servers, args.orders)
    except KeyboardInterrupt:
        return 130
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="quix-orders-")
    progress = Progress()
    try:
        app = Application(
            broker_address=args.bootstrap_servers,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            state_dir=state_dir,
            processing_guarantee=args.processing_guarantee,
            loglevel="INFO",
        )
        build(app, args, progress, like)
        log.info(
            "reading %s as group %s: decisions to %s, totals to %s%s",
            args.orders,
            args.group,
            args.decisions,
            args.totals,
            f" (bug planted: {args.bug})" if args.bug else "",
        )
        app.run()  # until SIGTERM or SIGINT (Quix's handlers stop the loop)
        progress.report()
    finally:
        if not args.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
