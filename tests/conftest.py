"""Shared fixtures: the broker tier and fresh topic names per test.

Every test that takes `broker` (or a fixture built on it) runs twice: on the embedded broker
(`[embedded]`, marker `embedded`) and on a one-node Apache Kafka (`[kafka]`, marker `kafka`);
`-m kafka` or `-m "not kafka"` picks one. Each test process starts one broker of each kind, once;
tests that need replication take `kafka3`, a three-node cluster, also started once.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pytest

from flashsale.brokers.apache import KafkaCluster, KafkaToolMissing, SecureListener
from flashsale.brokers.embedded import EmbeddedBroker, TansuNotFound, find_tansu
from flashsale.settings import EMBEDDED_DEFAULTS, Settings
from tests.tls import Certs, make_certs

BrokerKind = Literal["embedded", "kafka"]

REQUIRE_ALL = os.environ.get("FLASHSALE_REQUIRE_ALL") == "1"

# Under pytest-xdist (`make test` runs the broker tests in two processes), each process's
# commands get their own default ports, so two demos never race for 6066 or 8050.
_XDIST = os.environ.get("PYTEST_XDIST_WORKER", "")
if _XDIST.startswith("gw"):
    _OFFSET = 100 * (int(_XDIST[2:]) + 1)
    for _name, _port in (
        ("FLASHSALE_WEB_PORT", 6066),
        ("FLASHSALE_DASHBOARD_PORT", 8050),
        ("FLASHSALE_GATEWAY_PORT", 8060),
    ):
        os.environ.setdefault(_name, str(_port + _OFFSET))


def skip_or_fail(reason: str) -> None:
    """Skip for a missing tool, or fail when CI requires every tool (FLASHSALE_REQUIRE_ALL=1)."""
    if REQUIRE_ALL:
        pytest.fail(f"required tool missing: {reason}")
    pytest.skip(reason)


@dataclass
class TestBroker:
    """A broker of the tier: the embedded one or an Apache Kafka cluster."""

    __test__ = False  # not a test class, whatever its name

    kind: BrokerKind
    server: EmbeddedBroker | KafkaCluster

    @property
    def bootstrap(self) -> str:
        """`HOST:PORT[,…]` for clients."""
        return self.server.bootstrap

    @property
    def pid(self) -> int | None:
        """The broker's process (the first node's JVM for Kafka)."""
        return self.server.pid

    def fresh_settings(self, **overrides: object) -> Settings:
        """Settings on this broker with topic names and an app id no other run uses."""
        return fresh_settings(self.bootstrap, kind=self.kind, **overrides)

    def env(self) -> dict[str, str]:
        """What a command given this broker as `--bootstrap-servers` needs in its environment:
        it cannot tell the embedded broker from a Kafka, so on the embedded one its defaults
        (`EMBEDDED_DEFAULTS`) are set explicitly; nothing on Kafka."""
        if self.kind == "kafka":
            return {}
        return {f"FLASHSALE_{k.upper()}": str(v) for k, v in EMBEDDED_DEFAULTS.items()}

    def cli_args(self) -> list[str]:
        """What a `flashsale` command that would start its own broker is given to run on this
        broker's kind: nothing for the embedded one (each command starts its own), the
        cluster's servers for Kafka (shared by the process's tests, topics of their own)."""
        return [] if self.kind == "embedded" else ["--bootstrap-servers", self.bootstrap]


def start_embedded() -> EmbeddedBroker:
    """A started Tansu, or a skip (a failure in CI) when Tansu is missing."""
    try:
        find_tansu()
    except TansuNotFound as exc:
        skip_or_fail(str(exc))
    brk = EmbeddedBroker()
    brk.start()
    return brk


def start_kafka(nodes: int = 1, **kwargs: object) -> KafkaCluster:
    """A started Apache Kafka cluster, or a skip (a failure in CI) without Java or Maven."""
    cluster = KafkaCluster(nodes=nodes, **kwargs)  # type: ignore[arg-type]
    try:
        cluster.start()
    except KafkaToolMissing as exc:
        skip_or_fail(str(exc))
    return cluster


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("embedded", marks=pytest.mark.embedded),
        pytest.param("kafka", marks=pytest.mark.kafka),
    ],
)
def broker(request: pytest.FixtureRequest) -> Iterator[TestBroker]:
    """The embedded Tansu broker, or a one-node Apache Kafka; each started once a session."""
    server: EmbeddedBroker | KafkaCluster = (
        start_embedded() if request.param == "embedded" else start_kafka(1)
    )
    try:
        yield TestBroker(request.param, server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka3() -> Iterator[TestBroker]:
    """A three-node Apache Kafka cluster, started once a session (replication factor 3)."""
    cluster = start_kafka(3)
    try:
        yield TestBroker("kafka", cluster)
    finally:
        cluster.stop()


@dataclass
class SecureKafka:
    """A one-node Apache Kafka with a SASL_SSL listener (SCRAM-SHA-512 over TLS), its
    certificate signed by a CA the test made, and one SCRAM user."""

    cluster: KafkaCluster
    certs: Certs
    username: str
    password: str
    mechanism: str = "SCRAM-SHA-512"

    @property
    def bootstrap(self) -> str:
        """The SASL_SSL listener's `HOST:PORT`."""
        return self.cluster.secure_bootstrap

    def env(self, **changes: str) -> dict[str, str]:
        """The `FLASHSALE_*` security variables a client of the listener is given (a value in
        `changes`, keyed by the setting's name, replaces one)."""
        values = {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": self.mechanism,
            "sasl_username": self.username,
            "sasl_password": self.password,
            "ssl_cafile": str(self.certs.cafile),
            **changes,
        }
        return {f"FLASHSALE_{k.upper()}": v for k, v in values.items()}

    def settings(self, **overrides: object) -> Settings:
        """Fresh settings (topics and app id of their own) on the SASL_SSL listener."""
        secure: dict[str, object] = {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": self.mechanism,
            "sasl_username": self.username,
            "sasl_password": self.password,
            "ssl_cafile": self.certs.cafile,
        }
        return fresh_settings(self.bootstrap, kind="kafka", **{**secure, **overrides})


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """A one-node Apache Kafka with a SASL_SSL listener beside PLAINTEXT, started once a
    session; its CA and server certificate (for 127.0.0.1) made here."""
    certs = make_certs(tmp_path_factory.mktemp("tls"))
    password = f"pw-{uuid.uuid4().hex}"
    cluster = start_kafka(
        1, secure=SecureListener(certs.certfile, certs.keyfile, users={"shop": password})
    )
    try:
        yield SecureKafka(cluster, certs, "shop", password)
    finally:
        cluster.stop()


@pytest.fixture
def run_settings(broker: TestBroker) -> Settings:
    """Settings with topic names and an app id of this test's own."""
    return broker.fresh_settings()


def fresh_settings(bootstrap: str, kind: BrokerKind = "embedded", **overrides: object) -> Settings:
    """Settings on `bootstrap` with topic names and an app id no other run uses; on the
    embedded broker with its defaults (`Settings.for_embedded_broker`), as flashsale gives
    them to an embedded broker it starts itself. `overrides` are set explicitly."""
    tag = uuid.uuid4().hex[:8]
    names: dict[str, object] = {
        "topic_orders": f"orders-{tag}",
        "topic_decisions": f"order-decisions-{tag}",
        "topic_inventory": f"inventory-events-{tag}",
        "topic_dlq": f"orders-dlq-{tag}",
        "topic_late": f"orders-late-{tag}",
        "topic_revenue_second": f"revenue-per-second-{tag}",
        "topic_revenue_minute": f"revenue-per-minute-{tag}",
        "topic_hot": f"hot-products-{tag}",
        "app_id": f"flashsale-{tag}",
    }
    settings = Settings(bootstrap_servers=bootstrap, **{**names, **overrides})  # type: ignore[arg-type]
    return settings.for_embedded_broker() if kind == "embedded" else settings


def session_processes(sid: int) -> list[int]:
    """Pids of live processes in session `sid` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp, session, ...; zombies are already dead.
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry))
    return out


#: The head of a worker's log record: `[2026-12-01 23:01:52,681] [6563] [WARNING] `.
RECORD_HEAD = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] \[\d+\] \[[A-Z]+\] ", re.M)

#: How a traceback's own lines begin; none of them begins a record of its own.
TRACEBACK_LINES = (
    "Traceback (most recent call last)",
    'File "',
    "During handling of the above exception",
    "The above exception was the direct cause",
)
#: A record that is a piece of a traceback: a caret line, an exception's bare name or a part
#: of it (`asyncio.exceptions`, `.`, `CancelledError`, `:`).
FRAGMENT = re.compile(r"[\^~]+|[.:]|[A-Za-z_][\w.]*(Error|Exception|exceptions|Interrupt)")


def log_records(log: str) -> tuple[str, list[str]]:
    """A worker log cut into what came before the first record and its records (each a
    message with the lines that follow it, up to the next record's head)."""
    heads = list(RECORD_HEAD.finditer(log))
    if not heads:
        return log, []
    records = [
        log[head.end() : nxt.start() if nxt else len(log)]
        for head, nxt in zip(heads, [*heads[1:], None], strict=True)
    ]
    return log[: heads[0].start()], records


def traceback_fragment(record: str) -> bool:
    """True for a record whose message is a piece of a traceback."""
    first = record.strip().split("\n", 1)[0].strip()
    return FRAGMENT.fullmatch(first) is not None or first.startswith(TRACEBACK_LINES)


def assert_tracebacks_whole(log: str) -> None:
    """Every traceback in a worker's log sits inside one record, whole: no record is a piece
    of one, and a record holding a traceback ends with its exception line."""
    before, records = log_records(log)
    assert "Traceback (most recent call last)" not in before, before[-3000:]
    pieces = [r.strip() for r in records if traceback_fragment(r)]
    assert not pieces, f"{len(pieces)} records are pieces of a traceback: {pieces[:20]}"
    for record in records:
        if "Traceback (most recent call last)" in record:
            lines = [line for line in record.rstrip().splitlines() if line.strip()]
            assert any(line.lstrip().startswith('File "') for line in lines), record
            assert not lines[-1].startswith(" "), f"a traceback cut short:\n{record}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per broker of the tier: how many of its tests passed, failed, skipped."""
    from collections import Counter

    from flashsale.brokers.apache import KAFKA_VERSION

    counts: dict[str, Counter[str]] = {"kafka": Counter(), "embedded": Counter()}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            keywords = getattr(report, "keywords", {})
            tier = "kafka" if "kafka" in keywords else "embedded" if "embedded" in keywords else ""
            # A test passes in its call; setup and teardown errors count as errors.
            if tier and (outcome != "passed" or getattr(report, "when", "call") == "call"):
                counts[tier][outcome] += 1
    if not any(counts.values()):
        return
    for tier, label in (("kafka", f"Apache Kafka {KAFKA_VERSION}"), ("embedded", "embedded")):
        c = counts[tier]
        if not c:
            continue
        terminalreporter.write_line(
            f"broker tier, {label}: {c['passed']} passed, {c['failed']} failed, "
            f"{c['error']} errors, {c['skipped']} skipped"
        )
