"""The run directory: it holds every message of a run's topics, and a manifest.

Layout of RUN_DIR (docs/research.md):

    manifest.json                        format version, scenario, seed, flashsale version,
                                         settings, roles (which topic is `orders`...), per topic:
                                         partitions, message count, offset and time ranges, and
                                         each part file with its rows and SHA-256; complete?
    topics/<topic>/part-NNNNN.parquet    one file per capture session: one row per message
                                         (partition, offset, key, value, headers, timestamp_ms)
    faults.json                          when the run had a fault timeline: its fault log, as
                                         in the run summary (`demo --record` writes it)

`load_run` checks the manifest and the files against each other; anything missing,
truncated or tampered raises `RunDirError` naming the file and the problem. `RunWriter` writes
one capture session and rewrites the manifest (atomically) only after its parts are closed, so
an interrupted capture is consistent and the next session continues from where it stopped.

pyarrow is imported inside the functions that need it: the CLI starts without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

    from flashsale.settings import Settings

__all__ = [
    "COLUMNS",
    "FAULTS_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "ROLES",
    "RecordedMessage",
    "RecordedRun",
    "RunDirError",
    "RunWriter",
    "load_run",
    "read_manifest",
    "roles_of",
]


FORMAT = "flashsale-run"


FORMAT_VERSION = 1


MANIFEST = "manifest.json"
#: The fault log of a run with a fault timeline, beside the manifest (optional).
FAULTS_FILE = "faults.json"


#: Columns of a part file, in order.
COLUMNS = ("partition", "offset", "key", "value", "headers", "timestamp_ms")


#: A row group is written when this many rows or bytes wait in memory.
ROW_GROUP_ROWS = 50_000


ROW_GROUP_BYTES = 32 * 1024 * 1024


#: The roles of a run's topics, as `verify` reads them; the manifest maps each to a name.
ROLES = (
    "orders",
    "decisions",
    "inventory",
    "dlq",
    "late",
    "revenue_second",
    "revenue_minute",
    "hot",
    "states",
)


class RunDirError(Exception):
    """A run directory that cannot be read: the message names the file and the problem."""


@dataclass(slots=True)
class RecordedMessage:
    """One recorded Kafka message (it satisfies `verify.records.Record`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int


@dataclass
class RecordedRun:
    """A run directory's manifest and its messages, per topic and partition in offset order."""

    path: Path
    manifest: dict[str, Any]
    topics: Mapping[str, Mapping[int, list[RecordedMessage]]] = field(default_factory=dict)

    def topic(self, name: str) -> Mapping[int, list[RecordedMessage]]:
        """The messages of topic `name` by partition (empty when it was not recorded)."""
        return self.topics.get(name, {})

    def role(self, role: str) -> str | None:
        """The recorded topic that played `role` (one of `ROLES`), or None."""
        name = self.manifest.get("roles", {}).get(role)
        return name if name in self.topics else None

    def partitions(self, name: str) -> int:
        """Partitions topic `name` had when it was recorded."""
        return int(self.manifest["topics"][name]["partitions"])


def roles_of(settings: Settings) -> dict[str, str]:
    """Each role's topic name under `settings`."""
    return {
        "orders": settings.topic_orders,
        "decisions": settings.topic_decisions,
        "inventory": settings.topic_inventory,
        "dlq": settings.topic_dlq,
        "late": settings.topic_late,
        "revenue_second": settings.topic_revenue_second,
        "revenue_minute": settings.topic_revenue_minute,
        "hot": settings.topic_hot,
        "states": settings.state_changelog_topic(),
    }


def _schema() -> pa.Schema:
    import pyarrow as pa

    header = pa.struct([("key", pa.string()), ("value", pa.binary())])
    return pa.schema(
        [
            ("partition", pa.int32()),
            ("offset", pa.int64()),
            ("key", pa.binary()),
            ("value", pa.binary()),
            ("headers", pa.list_(header)),
            ("timestamp_ms", pa.int64()),
        ]
    )


def _read(where: Path, missing: str) -> bytes:
    """The bytes of a run directory's file, or `RunDirError` saying why not (`missing`: what a
    missing file means)."""
    try:
        return where.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"{where}: missing ({missing})") from None
    except OSError as exc:
        raise RunDirError(f"{where}: unreadable ({exc.strerror})") from None


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The checked manifest of run directory `path` (`RunDirError` naming what is wrong)."""
    root = Path(path)
    if not root.is_dir():
        raise RunDirError(f"{root}: not a run directory (no such folder)")
    where = root / MANIFEST
    raw = _read(where, "not a run directory, or never recorded")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RunDirError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RunDirError(f"{where}: not a flashsale run manifest (no format {FORMAT!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise RunDirError(
            f"{where}: format version {doc.get('format_version')!r}, this flashsale reads "
            f"{FORMAT_VERSION}"
        )
    topics = doc.get("topics")
    if not isinstance(topics, dict):
        raise RunDirError(f"{where}: no topics object")
    for name, topic in topics.items():
        if not _topic_entry_ok(topic):
            raise RunDirError(f"{where}: topic {name!r} is incomplete or mistyped")
    problem = _fields_problem(doc)
    if problem:
        raise RunDirError(f"{where}: {problem}")
    return doc


def _int(value: Any) -> bool:
    return type(value) is int


def _topic_entry_ok(topic: Any) -> bool:
    """A manifest's topic entry has the fields and types the readers rely on."""
    if not isinstance(topic, dict) or not (
        _int(topic.get("partitions")) and _int(topic.get("messages"))
    ):
        return False
    offsets, files = topic.get("offsets"), topic.get("files")
    if not isinstance(offsets, dict) or not isinstance(files, list):
        return False
    for partition, off in offsets.items():
        if not (isinstance(partition, str) and partition.isdigit() and isinstance(off, dict)):
            return False
        if not all(_int(off.get(k)) for k in ("start", "end", "target_end")):
            return False
    return all(
        isinstance(part, dict)
        and isinstance(part.get("path"), str)
        and _int(part.get("rows"))
        and isinstance(part.get("sha256"), str)
        for part in files
    )


def _fields_problem(doc: dict[str, Any]) -> str | None:
    """What is wrong with the manifest's other fields the commands read, or None."""
    roles = doc.get("roles", {})
    if not isinstance(roles, dict) or not all(isinstance(v, str) for v in roles.values()):
        return "roles must map each role to a topic name"
    settings = doc.get("settings", {})
    if not isinstance(settings, dict):
        return "settings must be an object"
    for key, kind in (
        ("partitions", int),
        ("dedupe_window", int),
        ("window_grace_s", (int, float)),
    ):
        value = settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            return f"settings.{key} is {value!r}"
    if doc.get("scenario") is not None and not isinstance(doc["scenario"], str):
        return f"scenario is {doc['scenario']!r}"
    if doc.get("seed") is not None and not _int(doc["seed"]):
        return f"seed is {doc['seed']!r}"
    if not isinstance(doc.get("sessions", []), list):
        return "sessions must be a list"
    if not isinstance(doc.get("complete", False), bool):
        return f"complete is {doc['complete']!r}"
    return None


def load_run(path: str | Path) -> RecordedRun:
    """Read and check a run directory written by `flashsale record`."""
    root = Path(path)
    manifest = read_manifest(root)
    topics: dict[str, dict[int, list[RecordedMessage]]] = {}
    for name, info in manifest["topics"].items():
        by_partition: dict[int, list[RecordedMessage]] = {int(p): [] for p in info["offsets"]}
        count = 0
        for part in info["files"]:
            rows = _read_part(root, name, part)
            count += len(rows)
            for msg in rows:
                by_partition.setdefault(msg.partition, []).append(msg)
        if count != int(info["messages"]):
            raise RunDirError(
                f"{root / MANIFEST}: topic {name!r} has {count} messages in its files, the "
                f"manifest says {info['messages']}"
            )
        for partition, msgs in by_partition.items():
            rng = info["offsets"].get(str(partition))
            last = -1
            for msg in msgs:
                if msg.offset <= last:
                    raise RunDirError(
                        f"{root / 'topics' / name}: partition {partition} offsets out of order "
                        f"({msg.offset} after {last})"
                    )
                last = msg.offset
            if msgs and (rng is None or not rng["start"] <= msgs[0].offset <= last < rng["end"]):
                raise RunDirError(
                    f"{root / 'topics' / name}: partition {partition} holds offsets "
                    f"{msgs[0].offset}..{last}, outside the manifest's range"
                )
        topics[name] = by_partition
    return RecordedRun(path=root, manifest=manifest, topics=topics)


def _read_part(root: Path, topic: str, part: Mapping[str, Any]) -> list[RecordedMessage]:
    """The rows of one part file, checked against the manifest's checksum and row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = root / part["path"]
    if not where.resolve().is_relative_to(root.resolve()):
        raise RunDirError(f"{root / MANIFEST}: part path {part['path']!r} leaves the run folder")
    data = _read(where, "the manifest lists it")
    if hashlib.sha256(data).hexdigest() != part["sha256"]:
        raise RunDirError(f"{where}: SHA-256 differs from the manifest's (changed or truncated)")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise RunDirError(f"{where}: not a readable Parquet file ({exc})") from None
    if tuple(table.column_names) != COLUMNS:
        raise RunDirError(f"{where}: columns {table.column_names}, expected {list(COLUMNS)}")
    if table.num_rows != int(part["rows"]):
        raise RunDirError(f"{where}: {table.num_rows} rows, the manifest says {part['rows']}")
    cols = [table.column(c).to_pylist() for c in COLUMNS]
    out: list[RecordedMessage] = []
    append = out.append
    for partition, offset, key, value, headers, ts in zip(*cols, strict=True):
        append(
            RecordedMessage(
                topic,
                partition,
                offset,
                key,
                value,
                [(h["key"], h["value"]) for h in headers] if headers else [],
                ts,
            )
        )
    return out


class _Row(NamedTuple):
    """One message as `RunWriter.extend` takes it."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int


class _PartSink:
    """The part file of one topic in one session, written a row group at a time."""

    def __init__(self, root: Path, topic: str, session: int) -> None:
        self.root = root
        self.rel = f"topics/{topic}/part-{session:05d}.parquet"
        self.columns: list[list[Any]] = [[] for _ in COLUMNS]
        self.bytes = 0
        self.rows = 0
        self.writer: Any = None

    def extend(self, partition: int, records: Sequence[Any]) -> None:
        """Records of one partition (objects with offset, key, value, headers and timestamp,
        as aiokafka's ConsumerRecord): a pass per column, not a call per record."""
        c = self.columns
        c[0].extend([partition] * len(records))
        c[1].extend([r.offset for r in records])
        c[2].extend([r.key for r in records])
        values = [r.value for r in records]
        c[3].extend(values)
        c[4].extend([r.headers or None for r in records])
        c[5].extend([r.timestamp for r in records])
        self.bytes += sum(map(len, filter(None, values)))
        if len(c[0]) >= ROW_GROUP_ROWS or self.bytes >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.columns[0]:
            return
        schema = _schema()
        arrays = [pa.array(col, type=f.type) for col, f in zip(self.columns, schema, strict=True)]
        if self.writer is None:
            target = self.root / self.rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(target, schema, compression="zstd")
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        self.rows += len(self.columns[0])
        self.columns = [[] for _ in COLUMNS]
        self.bytes = 0

    def close(self) -> dict[str, Any] | None:
        """Flush and close; the manifest's entry for the file (None when nothing was written)."""
        self.flush()
        if self.writer is None:
            return None
        self.writer.close()
        self.writer = None
        return {
            "path": self.rel,
            "rows": self.rows,
            "sha256": _sha256(self.root / self.rel),
            "bytes": (self.root / self.rel).stat().st_size,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class RunWriter:
    """One capture session into a run directory: a new one, or the continuation of one that
    stopped early. `add` buffers messages; `close` writes the parts and then the manifest."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest
        self.session = len(manifest.get("sessions", []))
        self.sinks: dict[str, _PartSink] = {}
        self.started = time.time()
        self.added = 0
        # Per topic and partition: the next offset to read (the end of what is captured).
        self.next: dict[str, dict[int, int]] = {
            name: {int(p): int(r["end"]) for p, r in info["offsets"].items()}
            for name, info in manifest["topics"].items()
        }

    @classmethod
    def open(cls, root: Path) -> RunWriter | None:
        """Continue the capture in `root` (None when there is none yet)."""
        if not (root / MANIFEST).exists():
            return None
        return cls(root, read_manifest(root))

    @classmethod
    def create(
        cls,
        root: Path,
        topics: Mapping[str, Mapping[int, tuple[int, int]]],
        roles: Mapping[str, str],
        settings: Mapping[str, Any],
    ) -> RunWriter:
        """A new capture of `topics` (per partition: start offset, end to stop at)."""
        from flashsale import __version__

        if (root / MANIFEST).exists():
            raise RunDirError(f"{root / MANIFEST}: already holds a run")
        root.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "flashsale_version": __version__,
            "scenario": None,
            "seed": None,
            "complete": False,
            "created_at": _now_iso(),
            "settings": dict(settings),
            "roles": {role: name for role, name in roles.items() if name in topics},
            "topics": {
                name: {
                    "partitions": len(ranges),
                    "messages": 0,
                    "offsets": {
                        str(p): {"start": s, "end": s, "target_end": e}
                        for p, (s, e) in sorted(ranges.items())
                    },
                    "time_range_ms": None,
                    "files": [],
                }
                for name, ranges in topics.items()
            },
            "time_range_ms": None,
            "sessions": [],
        }
        return cls(root, manifest)

    def ranges(self) -> dict[str, dict[int, tuple[int, int]]]:
        """What is left to read: per topic and partition, (next offset, end to stop at)."""
        out: dict[str, dict[int, tuple[int, int]]] = {}
        for name, info in self.manifest["topics"].items():
            out[name] = {
                int(p): (self.next[name][int(p)], int(r["target_end"]))
                for p, r in info["offsets"].items()
            }
        return out

    def remaining(self) -> int:
        """Offsets left to read (gaps included)."""
        return sum(max(e - s, 0) for r in self.ranges().values() for s, e in r.values())

    def add(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        timestamp_ms: int,
    ) -> None:
        """Buffer one message (in offset order within its partition)."""
        self.extend(topic, partition, [_Row(offset, key, value, headers, timestamp_ms)])

    def extend(self, topic: str, partition: int, records: Sequence[Any]) -> None:
        """Buffer consecutive records of one partition, in offset order (objects with offset,
        key, value, headers and timestamp, as aiokafka's ConsumerRecord)."""
        if not records:
            return
        sink = self.sinks.get(topic)
        if sink is None:
            sink = self.sinks[topic] = _PartSink(self.root, topic, self.session)
        sink.extend(partition, records)
        self.next[topic][partition] = records[-1].offset + 1
        self.added += len(records)
        stamps = [r.timestamp for r in records]
        self._times(topic, min(stamps), max(stamps))
        if self.manifest["scenario"] is None and topic == self.manifest["roles"].get("orders"):
            for r in records:
                if r.headers:
                    self._identity(r.headers)
                    break

    def _times(self, topic: str, low: int, high: int) -> None:
        info = self.manifest["topics"][topic]
        rng = info["time_range_ms"]
        if rng is None:
            info["time_range_ms"] = [low, high]
        else:
            rng[0], rng[1] = min(rng[0], low), max(rng[1], high)

    def _identity(self, headers: Sequence[tuple[str, bytes]]) -> None:
        """The run's scenario and seed, from the headers the producer puts on restocks."""
        for name, raw in headers:
            if name == "flashsale.scenario":
                self.manifest["scenario"] = raw.decode(errors="replace")
            elif name == "flashsale.seed":
                with contextlib.suppress(ValueError):
                    self.manifest["seed"] = int(raw)

    def done(self, topic: str, partition: int) -> None:
        """Partition read to its end (offsets after the last message may be gaps)."""
        self.next[topic][partition] = max(
            self.next[topic][partition],
            int(self.manifest["topics"][topic]["offsets"][str(partition)]["target_end"]),
        )

    def close(self, interrupted: bool = False) -> dict[str, Any]:
        """Write the session's parts, then the manifest (atomically); return the manifest."""
        m = self.manifest
        for topic, sink in self.sinks.items():
            entry = sink.close()
            if entry is not None:
                info = m["topics"][topic]
                info["files"].append(entry)
                info["messages"] += entry["rows"]
        for topic, info in m["topics"].items():
            for p, rng in info["offsets"].items():
                rng["end"] = self.next[topic][int(p)]
        ranges = [t["time_range_ms"] for t in m["topics"].values() if t["time_range_ms"]]
        m["time_range_ms"] = (
            [min(r[0] for r in ranges), max(r[1] for r in ranges)] if ranges else None
        )
        m["complete"] = all(
            rng["end"] >= rng["target_end"]
            for info in m["topics"].values()
            for rng in info["offsets"].values()
        )
        m["sessions"].append(
            {
                "started_at": _iso(self.started),
                "finished_at": _now_iso(),
                "messages": self.added,
                "interrupted": interrupted,
            }
        )
        m["messages"] = sum(t["messages"] for t in m["topics"].values())
        tmp = self.root / f".{MANIFEST}.tmp"
        tmp.write_bytes(orjson.dumps(m, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / MANIFEST)
        return m


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _now_iso() -> str:
    return _iso(time.time())


def read_faults(path: str | Path) -> list[dict[str, Any]]:
    """The fault log a run directory holds (`FAULTS_FILE`), or [] without one; a file that
    is not a list of entries raises `RunDirError` naming it."""
    file = Path(path) / FAULTS_FILE
    try:
        doc = orjson.loads(file.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, orjson.JSONDecodeError) as exc:
        raise RunDirError(f"{file}: not a fault log ({exc})") from None
    if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
        raise RunDirError(f"{file}: not a fault log (expected a list of entries)")
    return doc
