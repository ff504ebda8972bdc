"""A local Apache Kafka: a pinned release's jars from Maven Central, 1 or 3 KRaft nodes.

Each node is one JVM, combined broker and controller, on free loopback ports (or, with
`network="namespaces"`, in a network namespace of its own: `netns.py`), started as Kafka's own
scripts start it (`kafka.tools.StorageTool format`, then `kafka.Kafka`). The jars
are fetched once with Maven into a cache (~/.cache/flashsale/kafka/VERSION), checked against
the SHA-256 sums written when they were fetched, and reused offline. Every JVM dies with the
manager: on `stop()`, on exit, on Ctrl-C and SIGTERM (the CLI turns SIGTERM into Ctrl-C) and,
on Linux, when the parent is killed outright (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from flashsale.brokers.base import BrokerError, wait_for_kafka
from flashsale.brokers.netns import NodeNetwork, namespaces_unavailable
from flashsale.processes import die_with_parent

__all__ = [
    "KAFKA_VERSION",
    "KafkaCluster",
    "KafkaNode",
    "KafkaToolMissing",
    "Network",
    "SecureListener",
    "broker_settings",
    "cluster_brokers",
    "fetch_kafka",
    "kafka_cache",
]

#: The Apache Kafka release flashsale runs and tests (docker-compose.yml names the same one).
KAFKA_VERSION = "4.1.1"
#: Kafka's POM brings no SLF4J binding; the release's own tarball ships log4j 2.24.
LOG4J_VERSION = "2.24.3"
#: The oldest Java Kafka 4 runs on.
MIN_JAVA = 17
#: Where a cluster's nodes live: all on 127.0.0.1, or each in a network namespace of its own.
Network = Literal["loopback", "namespaces"]
#: The ports of every node with a namespace (an address) of its own: Kafka's usual ones.
NAMESPACE_PORTS = (9092, 9093, 9094)

HOW_TO_GET_JAVA = (
    "Apache Kafka needs Java 17 or newer and Maven (to fetch its jars once): "
    "`apt-get install openjdk-17-jre-headless maven` on Debian or Ubuntu, or use the embedded "
    "broker, or --bootstrap-servers HOST:PORT for a Kafka of your own"
)


class KafkaToolMissing(BrokerError):
    """Java or Maven is missing or too old; the message says how to get them."""


def kafka_cache(version: str = KAFKA_VERSION) -> Path:
    """Where the jars of `version` are kept (FLASHSALE_KAFKA_CACHE overrides the base)."""
    base = os.environ.get("FLASHSALE_KAFKA_CACHE")
    if base:
        return Path(base) / version
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "flashsale" / "kafka" / version


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise KafkaToolMissing(f"java not found; {HOW_TO_GET_JAVA}")
    out = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=30, check=False
    ).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(found.group(1)) if found else 0
    if major == 1 and found and found.group(2):  # "1.8.0_x" is Java 8
        major = int(found.group(2))
    if major < MIN_JAVA:
        raise KafkaToolMissing(f"java at {java} is version {major or '?'}; {HOW_TO_GET_JAVA}")
    return java


def _pom(version: str) -> str:
    deps = [
        ("org.apache.kafka", "kafka_2.13", version),
        ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-api", LOG4J_VERSION),
    ]
    body = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>flashsale</groupId><artifactId>apache-kafka</artifactId>"
        f"<version>{version}</version><packaging>pom</packaging>"
        f"<dependencies>{body}</dependencies></project>"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_libs(home: Path) -> Path | None:
    """The cache's lib folder when every jar the manifest names is there with its sum."""
    manifest = home / "manifest.json"
    libs = home / "libs"
    try:
        sums: dict[str, str] = json.loads(manifest.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not sums or any(
        not (libs / name).is_file() or _sha256(libs / name) != digest
        for name, digest in sums.items()
    ):
        return None
    return libs


def fetch_kafka(version: str = KAFKA_VERSION, say: Callable[[str], None] | None = None) -> Path:
    """The folder of Kafka `version`'s runtime jars: from the cache when it checks out, else
    fetched with Maven (strict checksums) into it. Raises KafkaToolMissing without Maven."""
    home = kafka_cache(version)
    libs = _cached_libs(home)
    if libs is not None:
        return libs
    home.parent.mkdir(parents=True, exist_ok=True)
    # One fetch at a time: two commands (or test processes) starting together on an empty
    # cache would otherwise replace each other's folder while the other reads it.
    with (home.parent / f".{version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        libs = _cached_libs(home)
        if libs is not None:
            return libs
        return _fetch(version, home, say)


def _fetch(version: str, home: Path, say: Callable[[str], None] | None) -> Path:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaToolMissing(f"mvn not found; {HOW_TO_GET_JAVA}")
    if say is not None:
        say(f"fetching Apache Kafka {version} from Maven Central (once) into {home}")
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=home.parent) as tmp:
        work = Path(tmp)
        # The cache's folder is made inside the temporary one and moved into place whole.
        fetched = work / "fetched"
        (work / "pom.xml").write_text(_pom(version))
        command = [
            mvn,
            "-B",
            "-q",
            "-C",  # strict checksums: a corrupt download fails here, not in the JVM
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={fetched / 'libs'}",
        ]
        # Offline first: Maven's local repository may hold every artifact already.
        done = subprocess.run(
            [*command[:1], "-o", *command[1:]], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "ERROR" in ln]
            raise BrokerError(
                f"Maven could not fetch Apache Kafka {version}: "
                + (lines[0] if lines else "no output").strip()
            )
        jars = sorted(p for p in (fetched / "libs").glob("*.jar"))
        if not any(p.name == f"kafka_2.13-{version}.jar" for p in jars):
            raise BrokerError(f"Maven fetched no kafka_2.13-{version}.jar")
        (fetched / "manifest.json").write_text(
            json.dumps({"version": version, "sha256": {p.name: _sha256(p) for p in jars}})
        )
        if home.exists():
            shutil.rmtree(home)
        os.replace(fetched, home)
    libs = _cached_libs(home)
    if libs is None:
        raise BrokerError(f"the jars fetched into {home} do not match their sums")
    return libs


def new_cluster_id() -> str:
    """A random cluster id as `kafka-storage random-uuid` makes one: 16 bytes, URL-safe base64
    without padding, and (as Kafka's `Uuid.randomUuid`) never beginning with `-`, which a
    command line would take for an option."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _free_ports(host: str, count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _metadata(
    host: str, port: int, topics: Iterable[str] = (), timeout_s: float = 2.0
) -> tuple[list[tuple[int, str, int]], dict[str, dict[int, tuple[int, list[int]]]]]:
    """A node's Metadata v1 answer: its brokers (node id, host, port) and, for each of
    `topics` it knows, each partition's (leader, in-sync replicas)."""
    client_id = b"flashsale-probe"
    names = [t.encode() for t in topics]
    body = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id
    body += struct.pack(">i", len(names)) + b"".join(struct.pack(">h", len(n)) + n for n in names)
    with socket.create_connection((host, port), timeout=timeout_s) as conn:
        conn.sendall(struct.pack(">i", len(body)) + body)
        head = _recv(conn, 4)
        data = _recv(conn, struct.unpack(">i", head)[0])
    pos = 4  # correlation id
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    brokers = []
    for _ in range(count):
        node_id, hlen = struct.unpack_from(">ih", data, pos)
        pos += 6
        name = data[pos : pos + hlen].decode()
        pos += hlen
        (bport, rlen) = struct.unpack_from(">ih", data, pos)
        pos += 6 + max(rlen, 0)
        brokers.append((node_id, name, bport))
    pos += 4  # controller id
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    partitions: dict[str, dict[int, tuple[int, list[int]]]] = {}
    for _ in range(count):
        error, tlen = struct.unpack_from(">hh", data, pos)
        pos += 4
        topic = data[pos : pos + tlen].decode()
        pos += tlen + 1  # is_internal
        (pcount,) = struct.unpack_from(">i", data, pos)
        pos += 4
        parts: dict[int, tuple[int, list[int]]] = {}
        for _ in range(pcount):
            _, index, leader, nreplicas = struct.unpack_from(">hiii", data, pos)
            pos += 14 + 4 * nreplicas
            (nisr,) = struct.unpack_from(">i", data, pos)
            isr = list(struct.unpack_from(f">{nisr}i", data, pos + 4))
            pos += 4 + 4 * nisr
            parts[index] = (leader, sorted(isr))
        if error == 0:
            partitions[topic] = parts
    return brokers, partitions


def _metadata_brokers(host: str, port: int) -> list[tuple[int, str, int]]:
    """The brokers a node's Metadata v1 answer lists: (node id, host, port)."""
    return _metadata(host, port)[0]


def _recv(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def cluster_brokers(bootstrap: str) -> list[int]:
    """Node ids of the brokers the first answering bootstrap server lists, sorted."""
    last: Exception | None = None
    for hp in bootstrap.split(","):
        host, _, port = hp.strip().rpartition(":")
        try:
            return sorted(b[0] for b in _metadata_brokers(host, int(port)))
        except (OSError, struct.error, ValueError) as exc:
            last = exc
    raise BrokerError(f"no broker of {bootstrap} answered metadata: {last}")


@dataclass(frozen=True)
class SecureListener:
    """A SASL_SSL listener beside PLAINTEXT: TLS with this PEM key and certificate chain,
    SCRAM users created when storage is formatted.

    Kafka's PEM key store reads a PKCS#8 key only (`BEGIN PRIVATE KEY`, or `BEGIN ENCRYPTED
    PRIVATE KEY` with `key_password`); a PKCS#1 or SEC1 key (`BEGIN RSA PRIVATE KEY`,
    `BEGIN EC PRIVATE KEY`) is refused here, before a JVM starts.
    """

    certfile: Path
    keyfile: Path
    users: Mapping[str, str] = field(repr=False)
    mechanism: str = "SCRAM-SHA-512"
    key_password: str | None = field(default=None, repr=False)

    def keystore(self) -> str:
        """The PEM key store Kafka reads: the key, then the certificate chain."""
        key = Path(self.keyfile).read_text()
        encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----" in key
        if not (encrypted or "-----BEGIN PRIVATE KEY-----" in key):
            raise BrokerError(
                f"{self.keyfile} is not a PKCS#8 key (BEGIN PRIVATE KEY), the only kind "
                "Kafka's PEM key store reads; convert it with `openssl pkcs8 -topk8 -nocrypt`"
            )
        if encrypted != (self.key_password is not None):
            raise BrokerError(
                f"{self.keyfile}: an encrypted key needs key_password, a plain one none"
            )
        return key.rstrip() + "\n" + Path(self.certfile).read_text()


@dataclass
class KafkaNode:
    """One combined broker+controller JVM of a cluster."""

    node_id: int
    port: int
    controller_port: int
    data: Path
    secure_port: int | None = None
    host: str = "127.0.0.1"
    advertised: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def log(self) -> Path:
        """The node's own log (its JVM's stdout and stderr)."""
        return self.data / "server.log"

    def alive(self) -> bool:
        """True while the JVM runs."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 1) -> str:
        """The last error, or else the last line, of the node's log."""
        with contextlib.suppress(OSError):
            text = self.log.read_text(errors="replace").strip().splitlines()
            errors = [ln for ln in text if " ERROR " in ln or "Exception" in ln]
            picked = errors[-lines:] or text[-lines:]
            return " | ".join(picked) if picked else "no output"
        return "no log"


def broker_settings(nodes: int) -> dict[str, str]:
    """The broker settings of a local cluster of `nodes`, on top of Kafka's defaults (which
    stay as they are otherwise, `group.min.session.timeout.ms` of 6 s and `message.max.bytes`
    of 1 MB included, so what runs here runs on a stock broker). docker-compose.yml sets the
    same ones."""
    replicas = str(min(3, nodes))
    return {
        # Internal topics default to 3 replicas: one node must make them with 1.
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": str(min(2, nodes)),
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": str(min(2, nodes)),
        # Fewer partitions of the internal topics: they are made at the first group's join.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.num.partitions": "8",
        # Every new consumer group would wait 3 s for more members first.
        "group.initial.rebalance.delay.ms": "0",
        # flashsale creates every topic it uses; a client that relies on auto-creation (and
        # would get one partition) fails here instead of passing by accident.
        "auto.create.topics.enable": "false",
        # The log cleaner (compacted changelogs) takes 128 MB of heap by default.
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
    }


class KafkaCluster:
    """1 or 3 Apache Kafka nodes in KRaft mode on loopback; a context manager.

    `data`: a folder of the cluster's own, kept after `stop()`; a later cluster on it starts
    on the same data (same cluster id, ports when free). Without it, a temporary folder,
    removed at `stop()`. `advertised`: per node id, the HOST:PORT its PLAINTEXT listener
    names in metadata (the fault tests put a proxy there); `ports`: per node id, the port of
    its PLAINTEXT listener (else a free one).

    `network="namespaces"` (Linux, root, iproute2) starts each node's JVM in a network
    namespace of its own (`flashsale/brokers/netns.py`): node i listens, advertises and votes
    on 10.111.Y.i, ports 9092 (PLAINTEXT), 9093 (CONTROLLER) and 9094 (SASL_SSL), `host` is
    not used, and `cut_node` / `heal_node` pull and plug back a node's cable. `stop()`
    removes the namespaces. `pause_node` / `resume_node` stall a JVM in either network.
    The fault methods (`cut_node`, `heal_node`, `pause_node`, `resume_node`) are short
    blocking calls, safe from another thread.
    """

    def __init__(
        self,
        nodes: int = 1,
        data: Path | str | None = None,
        host: str = "127.0.0.1",
        heap_mb: int = 512,
        start_timeout_s: float = 180.0,
        secure: SecureListener | None = None,
        advertised: Mapping[int, str] | None = None,
        ports: Mapping[int, int] | None = None,
        overrides: Mapping[str, str] | None = None,
        version: str = KAFKA_VERSION,
        say: Callable[[str], None] | None = None,
        network: Network = "loopback",
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if network not in ("loopback", "namespaces"):
            raise ValueError(f"network is loopback or namespaces, not {network!r}")
        self.network: Network = network
        self._net: NodeNetwork | None = None
        # The fault methods may be called from another thread than start() and stop().
        self._faults = threading.RLock()
        self._cut: set[int] = set()
        self._paused: set[int] = set()
        self.size = nodes
        self.host = host
        self.heap_mb = heap_mb
        #: The wait ends as soon as the metadata lists every node, or when a node's process
        #: ends; the bound is for nodes that run but never answer. Three JVMs starting beside
        #: a busy suite on two cores took more than a minute.
        self.start_timeout_s = start_timeout_s
        #: A node started again after a stop or a kill replays its logs first, and the run
        #: around it goes on.
        self.node_back_timeout_s = max(start_timeout_s, 180.0)
        self.secure = secure
        self.advertised = dict(advertised or {})
        self.ports = dict(ports or {})
        self.overrides = dict(overrides or {})
        self.version = version
        self.say = say
        self._keep = data is not None
        self._data = Path(data) if data is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.nodes: list[KafkaNode] = []
        self.cluster_id = ""
        self._java = ""
        self._libs: Path | None = None
        self.started_s: float | None = None

    # -- the cluster ----------------------------------------------------------------------

    @property
    def data(self) -> Path:
        """The cluster's folder (one sub-folder per node)."""
        if self._data is None:
            raise BrokerError("cluster not started")
        return self._data

    @property
    def bootstrap(self) -> str:
        """`HOST:PORT,…` of every node's PLAINTEXT listener."""
        return ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    @property
    def secure_bootstrap(self) -> str:
        """`HOST:PORT,…` of every node's SASL_SSL listener."""
        if self.secure is None:
            raise BrokerError("the cluster has no SASL_SSL listener")
        return ",".join(f"{n.host}:{n.secure_port}" for n in self.nodes)

    @property
    def node_network(self) -> NodeNetwork | None:
        """The namespaces and bridge of a running cluster with `network="namespaces"`."""
        return self._net

    @property
    def pid(self) -> int | None:
        """The first running node's JVM pid (the only one of a one-node cluster)."""
        return next((n.pid for n in self.nodes if n.pid is not None), None)

    def node(self, node_id: int) -> KafkaNode:
        """The node with this id (1-based)."""
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id}")

    def start(self) -> str:
        """Fetch the jars if needed, format new nodes, start every node and wait until each
        answers and the metadata lists them all; return the bootstrap servers."""
        started = time.monotonic()
        self._java = _java()
        self._libs = fetch_kafka(self.version, self.say)
        if self.say is not None:
            nodes = f"{self.size} node{'s' if self.size > 1 else ''}"
            self.say(f"starting Apache Kafka {self.version}, {nodes}...")
        if self._data is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="flashsale-kafka-")
            self._data = Path(self._tmp.name)
        self._data.mkdir(parents=True, exist_ok=True)
        try:
            if self.network == "namespaces":
                why = namespaces_unavailable()
                if why is not None:
                    raise BrokerError(why)
                self._net = NodeNetwork(self.size)
                self._net.create()
            self._layout()
            self._format()
            for node in self.nodes:
                self._spawn(node)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - started
        return self.bootstrap

    def _layout(self) -> None:
        """Nodes, ports and cluster id: from cluster.json when the folder holds a cluster."""
        meta = self.data / "cluster.json"
        saved: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(meta.read_text())
        if saved and saved.get("nodes") and len(saved["nodes"]) != self.size:
            raise BrokerError(
                f"{self.data} holds a {len(saved['nodes'])}-node cluster, not {self.size}"
            )
        self.cluster_id = saved.get("cluster_id") or new_cluster_id()
        if self._net is not None:
            self._layout_namespaces(saved)
            return
        per = 3 if self.secure else 2
        fresh = iter(_free_ports(self.host, per * self.size))
        self.nodes = []
        for i in range(self.size):
            old = (saved.get("nodes") or [{}] * self.size)[i]
            wanted = [old.get("port"), old.get("controller_port"), old.get("secure_port")]
            node_id = i + 1
            if node_id in self.ports:
                wanted[0] = self.ports[node_id]
            ports: list[int] = [
                p if p and _port_free(self.host, p) else next(fresh, 0) for p in wanted[:per]
            ]
            ports = [p or _free_ports(self.host, 1)[0] for p in ports]
            self.nodes.append(
                KafkaNode(
                    node_id=node_id,
                    port=ports[0],
                    controller_port=ports[1],
                    secure_port=ports[2] if self.secure else None,
                    data=self.data / f"node-{node_id}",
                    advertised=self.advertised.get(node_id),
                    host=self.host,
                )
            )
        meta.write_text(
            json.dumps(
                {
                    "version": self.version,
                    "cluster_id": self.cluster_id,
                    "nodes": [
                        {
                            "port": n.port,
                            "controller_port": n.controller_port,
                            "secure_port": n.secure_port,
                        }
                        for n in self.nodes
                    ],
                }
            )
        )

    def _layout_namespaces(self, saved: dict[str, Any]) -> None:
        """Each node on its namespace's address with Kafka's usual ports. cluster.json keeps
        the loopback ports it had (a later loopback cluster on the folder reuses them)."""
        assert self._net is not None
        port, controller, secure = NAMESPACE_PORTS
        self.nodes = [
            KafkaNode(
                node_id=i,
                port=self.ports.get(i, port),
                controller_port=controller,
                secure_port=secure if self.secure else None,
                data=self.data / f"node-{i}",
                advertised=self.advertised.get(i),
                host=self._net.address(i),
            )
            for i in range(1, self.size + 1)
        ]
        empty = {"port": None, "controller_port": None, "secure_port": None}
        (self.data / "cluster.json").write_text(
            json.dumps(
                {
                    "version": self.version,
                    "cluster_id": self.cluster_id,
                    "nodes": saved.get("nodes") or [empty] * self.size,
                }
            )
        )

    def _properties(self, node: KafkaNode) -> dict[str, str]:
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.nodes)
        listeners = [f"PLAINTEXT://{node.host}:{node.port}"]
        advertised = [f"PLAINTEXT://{node.advertised or f'{node.host}:{node.port}'}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(node.data / "logs"),
            **broker_settings(self.size),
        }
        if self.secure is not None:
            listeners.append(f"SASL_SSL://{node.host}:{node.secure_port}")
            advertised.append(f"SASL_SSL://{node.host}:{node.secure_port}")
            protocols.append("SASL_SSL:SASL_SSL")
            mech = self.secure.mechanism
            keystore = node.data / "keystore.pem"
            # The private key: readable by its owner only.
            keystore.touch(mode=0o600)
            keystore.write_text(self.secure.keystore())
            props.update(
                {
                    "sasl.enabled.mechanisms": mech,
                    f"listener.name.sasl_ssl.{mech.lower()}.sasl.jaas.config": (
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                    ),
                    "ssl.keystore.type": "PEM",
                    "ssl.keystore.location": str(keystore),
                }
            )
            if self.secure.key_password is not None:
                props["ssl.key.password"] = self.secure.key_password
        listeners.append(f"CONTROLLER://{node.host}:{node.controller_port}")
        props["listeners"] = ",".join(listeners)
        props["advertised.listeners"] = ",".join(advertised)
        props["listener.security.protocol.map"] = ",".join(protocols)
        props.update(self.overrides)
        return props

    def _write_properties(self, node: KafkaNode) -> Path:
        node.data.mkdir(parents=True, exist_ok=True)
        path = node.data / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self._properties(node).items()))
        (node.data / "log4j2.properties").write_text(_LOG4J)
        return path

    def _classpath(self) -> str:
        assert self._libs is not None
        return str(self._libs / "*")

    def _format(self) -> None:
        """`kafka-storage format` on every node whose storage is not formatted yet, together."""
        running = []
        for node in self.nodes:
            props = self._write_properties(node)
            if (node.data / "logs" / "meta.properties").exists():
                continue
            command = [
                self._java,
                "-Xmx256m",
                f"-Dlog4j2.configurationFile={node.data / 'log4j2.properties'}",
                "-cp",
                self._classpath(),
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={self.cluster_id}",
                "-c",
                str(props),
                "--ignore-formatted",
            ]
            if self.secure is not None:
                for user, password in self.secure.users.items():
                    command += [
                        "--add-scram",
                        f"{self.secure.mechanism}=[name={user},password={password}]",
                    ]
            running.append(
                (
                    node,
                    subprocess.Popen(
                        command,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        preexec_fn=die_with_parent(),
                    ),
                )
            )
        for node, proc in running:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                last = out.decode(errors="replace").strip().splitlines()[-1:]
                raise BrokerError(
                    f"formatting node {node.node_id} failed: {' '.join(last) or 'no output'}"
                )

    def _spawn(self, node: KafkaNode) -> None:
        props = self._write_properties(node)
        # `ip netns exec` execs the JVM: the child's pid stays the JVM's.
        inside = self._net.exec_argv(node.node_id) if self._net is not None else []
        command = [
            *inside,
            self._java,
            f"-Xmx{self.heap_mb}m",
            f"-Xms{min(self.heap_mb, 256)}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            # IPv4 sockets: the listeners bind 127.0.0.1 itself, not ::ffff:127.0.0.1.
            "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j2.configurationFile={node.data / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={node.data}",
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(props),
        ]
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
                # Its own process group: a Ctrl-C at the terminal reaches the manager, which
                # stops the nodes in order, not every JVM at once.
                start_new_session=True,
            )

    def wait_ready(
        self, nodes: Iterable[KafkaNode] | None = None, timeout_s: float | None = None
    ) -> None:
        """Block until each running node answers metadata listing every running node (at
        most `timeout_s`, by default `start_timeout_s`)."""
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        wanted = [n for n in (nodes or self.nodes) if n.proc is not None]
        expected = sorted(n.node_id for n in self.nodes if n.alive())
        for node in wanted:

            def alive(node: KafkaNode = node) -> bool:
                return node.alive()

            try:
                wait_for_kafka(node.host, node.port, max(deadline - time.monotonic(), 1.0), alive)
            except BrokerError as exc:
                raise BrokerError(
                    f"Kafka node {node.node_id} did not start: {exc}; {node.log_tail()}"
                    f"{self._reach_hint() if node.alive() else ''}"
                ) from None
        last: list[int] = []
        while time.monotonic() < deadline:
            try:
                # The brokers every waited-for node's metadata lists.
                last = sorted(
                    set.intersection(
                        *({b[0] for b in _metadata_brokers(n.host, n.port)} for n in wanted)
                    )
                )
            except (OSError, struct.error):
                last = []
            if last == expected:
                return
            time.sleep(0.1)
        raise BrokerError(
            f"Kafka's metadata lists brokers {last}, not {expected}, after "
            f"{timeout_s:.0f} s{self._reach_hint()}"
        )

    def _reach_hint(self) -> str:
        """What may keep namespaced nodes apart, for an error of a start that failed."""
        if self._net is None:
            return ""
        # Bridged frames pass the host's iptables when br_netfilter's switch is on.
        return (
            "; can the namespaces reach each other? A DROP in the host's iptables FORWARD "
            "chain stops bridged traffic while net.bridge.bridge-nf-call-iptables is 1"
        )

    # -- one node, for fault tests ---------------------------------------------------------

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node's JVM (no controlled shutdown) and reap it."""
        node = self.node(node_id)
        with self._faults:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait()
            node.proc = None
            self._paused.discard(node_id)

    def cut_node(self, node_id: int) -> None:
        """Pull one node's network cable (`network="namespaces"` only): nothing reaches it or
        leaves it, from the other nodes or from clients, until `heal_node`. Its JVM runs on."""
        net = self._need_namespaces("cut_node")
        self.node(node_id)
        with self._faults:
            net.cut(node_id)
            self._cut.add(node_id)

    def heal_node(self, node_id: int) -> None:
        """Plug a cut node's cable back in (nothing happens to a node that is not cut)."""
        net = self._need_namespaces("heal_node")
        self.node(node_id)
        with self._faults:
            net.heal(node_id)
            self._cut.discard(node_id)

    def pause_node(self, node_id: int) -> None:
        """Stall one node: SIGSTOP its JVM. Its sockets stay open and connections are
        accepted by the kernel, but nothing answers until `resume_node` (SIGCONT)."""
        with self._faults:
            proc = self._running(node_id, "pause")
            proc.send_signal(signal.SIGSTOP)
            self._paused.add(node_id)

    def resume_node(self, node_id: int) -> None:
        """SIGCONT a paused node's JVM."""
        with self._faults:
            proc = self._running(node_id, "resume")
            proc.send_signal(signal.SIGCONT)
            self._paused.discard(node_id)

    def cut_nodes(self) -> list[int]:
        """The ids of the nodes cut off now."""
        with self._faults:
            return sorted(self._cut)

    def paused_nodes(self) -> list[int]:
        """The ids of the nodes paused now."""
        with self._faults:
            return sorted(self._paused)

    def partitions(
        self, topic: str, node_id: int | None = None
    ) -> dict[int, tuple[int, list[int]]]:
        """Each partition of `topic` with its leader's id and its in-sync replicas' ids (-1:
        no leader), as node `node_id` sees them (default: the first running node not cut
        off). BrokerError when the node does not answer or does not know the topic."""
        with self._faults:
            cut = set(self._cut) | self._paused
        if node_id is None:
            node_id = next((n.node_id for n in self.nodes if n.alive() and n.node_id not in cut), 0)
            if not node_id:
                raise BrokerError("no running Kafka node to ask for metadata")
        node = self.node(node_id)
        try:
            found = _metadata(node.host, node.port, [topic])[1]
        except (OSError, struct.error) as exc:
            raise BrokerError(f"Kafka node {node_id} gave no metadata: {exc}") from None
        if topic not in found:
            raise BrokerError(f"Kafka node {node_id} does not know topic {topic}")
        return found[topic]

    def _need_namespaces(self, what: str) -> NodeNetwork:
        if self.network != "namespaces":
            raise BrokerError(f"{what} needs a cluster with network='namespaces'")
        net = self._net
        if net is None or not net.created:
            raise BrokerError(f"{what}: the cluster is not running")
        return net

    def _running(self, node_id: int, what: str) -> subprocess.Popen[bytes]:
        proc = self.node(node_id).proc
        if proc is None or proc.poll() is not None:
            raise BrokerError(f"cannot {what} Kafka node {node_id}: it is not running")
        return proc

    def stop_node(self, node_id: int, timeout_s: float = 30.0) -> None:
        """Stop one node with SIGTERM (a controlled shutdown: its leaders move first)."""
        self._stop_all([self.node(node_id)], timeout_s)

    def start_node(self, node_id: int, wait: bool = True) -> None:
        """Start a stopped or killed node again on its data and ports; wait until the
        metadata lists it (unless `wait` is false), at most `node_back_timeout_s`."""
        node = self.node(node_id)
        if node.alive():
            return
        self._spawn(node)
        if wait:
            self.wait_ready([node], self.node_back_timeout_s)

    def restart_node(self, node_id: int, kill: bool = False) -> None:
        """Stop (or SIGKILL) one node and start it again."""
        if kill:
            self.kill_node(node_id)
        else:
            self.stop_node(node_id)
        self.start_node(node_id)

    def restart(self) -> None:
        """Stop every node and start the cluster again on its data (topics survive)."""
        self._stop_all(self.nodes, 30.0)
        for node in self.nodes:
            self._spawn(node)
        self.wait_ready()

    # -- stopping --------------------------------------------------------------------------

    def _stop_all(self, nodes: Iterable[KafkaNode], timeout_s: float) -> None:
        nodes = list(nodes)
        procs = [n.proc for n in nodes if n.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                    # A paused JVM takes the SIGTERM when it runs again.
                    proc.send_signal(signal.SIGCONT)
        with self._faults:
            self._paused.difference_update(n.node_id for n in nodes)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for n in nodes:
            n.proc = None

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop every node (SIGTERM, SIGKILL after `timeout_s`); remove the namespaces and a
        temporary folder."""
        try:
            if self._net is not None:
                # A cut node could not shut down in order: it would wait out `timeout_s`.
                for node_id in self.cut_nodes():
                    with contextlib.suppress(BrokerError):
                        self.heal_node(node_id)
            self._stop_all(self.nodes, timeout_s)
        finally:
            try:
                if self._net is not None:
                    with self._faults:
                        net, self._net = self._net, None
                        self._cut.clear()
                        net.delete()
            finally:
                if self._tmp is not None:
                    self._tmp.cleanup()
                    self._tmp = None
                    self._data = None

    def memory_mb(self) -> dict[int, float]:
        """Resident memory of each running node's JVM, in MiB (Linux /proc)."""
        out = {}
        for n in self.nodes:
            if n.pid is None:
                continue
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{n.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[n.node_id] = int(line.split()[1]) / 1024
        return out

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_LOG4J = """\
status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""
