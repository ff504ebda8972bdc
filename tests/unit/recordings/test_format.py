"""Run directories without a broker: the writer, the loader's checks, replay's schedule and
emit_ns stamp, and the one-line errors of record, replay and verify RUN_DIR."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashsale.events import OrderEvent, decode_event, decode_packed, encode_event, encode_packed
from recordings.format import MANIFEST, RecordedMessage, RunDirError, RunWriter, load_run
from recordings.replay import restamp, schedule

TOPIC = "orders"
HEADERS = [("flashsale.scenario", b"steady"), ("flashsale.seed", b"7")]


def _event(n: int) -> bytes:
    ev = OrderEvent(
        f"o{n}",
        "created",
        1_000 + n,
        "SKU1",
        "m",
        "FR",
        "wine",
        1,
        500,
        "Zhejiang",
        "app",
        "alipay",
        emit_ns=123_456_789,
    )
    return encode_event(ev)


def write_run(root: Path, rows: int = 6, interrupt_after: int | None = None) -> RunWriter:
    """A run dir of one topic, two partitions: offsets 0..rows/2-1 on each."""
    half = rows // 2
    writer = RunWriter.create(
        root,
        {TOPIC: {0: (0, half), 1: (0, half)}},
        {"orders": TOPIC},
        {"partitions": 2, "dedupe_window": 10, "window_grace_s": 2.0},
    )
    added = 0
    for offset in range(half):
        for partition in (0, 1):
            if interrupt_after is not None and added == interrupt_after:
                writer.close(interrupted=True)
                return writer
            writer.add(
                TOPIC,
                partition,
                offset,
                None if offset == 0 else b"SKU1",
                _event(offset),
                HEADERS if offset == 0 else [],
                10 * offset + partition,
            )
            added += 1
    for partition in (0, 1):
        writer.done(TOPIC, partition)
    writer.close()
    return writer


def part_file(root: Path) -> Path:
    return next((root / "topics" / TOPIC).glob("part-*.parquet"))


def manifest(root: Path) -> dict[str, object]:
    doc: dict[str, object] = orjson.loads((root / MANIFEST).read_bytes())
    return doc


def rewrite_manifest(root: Path, edit: object) -> None:
    doc = manifest(root)
    edit(doc)  # type: ignore[operator]
    (root / MANIFEST).write_bytes(orjson.dumps(doc))


def test_a_written_run_loads_back_message_for_message(tmp_path: Path) -> None:
    write_run(tmp_path)
    run = load_run(tmp_path)
    assert run.manifest["complete"] is True
    assert run.manifest["scenario"] == "steady" and run.manifest["seed"] == 7
    assert run.manifest["topics"][TOPIC]["messages"] == 6
    assert run.role("orders") == TOPIC
    first = run.topic(TOPIC)[1][0]
    assert first == RecordedMessage(TOPIC, 1, 0, None, _event(0), HEADERS, 1)
    assert [m.offset for m in run.topic(TOPIC)[0]] == [0, 1, 2]
    assert run.topic(TOPIC)[0][2].key == b"SKU1" and run.topic(TOPIC)[0][2].headers == []
    assert run.topic("nothing") == {}


def test_an_interrupted_capture_is_consistent_and_continues_where_it_stopped(
    tmp_path: Path,
) -> None:
    write_run(tmp_path, interrupt_after=3)
    run = load_run(tmp_path)
    assert run.manifest["complete"] is False
    assert run.manifest["sessions"][0]["interrupted"] is True
    assert {p: [m.offset for m in msgs] for p, msgs in run.topic(TOPIC).items()} == {
        0: [0, 1],
        1: [0],
    }
    again = RunWriter.open(tmp_path)
    assert again is not None
    assert again.ranges() == {TOPIC: {0: (2, 3), 1: (1, 3)}}
    again.add(TOPIC, 1, 1, b"SKU1", _event(1), [], 11)
    again.add(TOPIC, 1, 2, b"SKU1", _event(2), [], 21)
    again.add(TOPIC, 0, 2, b"SKU1", _event(2), [], 20)
    again.close()
    resumed = load_run(tmp_path)
    assert resumed.manifest["complete"] is True
    assert len(resumed.manifest["topics"][TOPIC]["files"]) == 2
    whole = tmp_path / "whole"
    write_run(whole)
    assert resumed.topics == load_run(whole).topics


def test_missing_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=rf"{tmp_path / MANIFEST}: missing"):
        load_run(tmp_path)


def test_manifest_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    write_run(tmp_path)
    (tmp_path / MANIFEST).write_text('{"format": "flashsale-run", ')
    with pytest.raises(RunDirError, match=rf"{tmp_path / MANIFEST}: not JSON"):
        load_run(tmp_path)


def test_manifest_of_another_format_version_is_refused(tmp_path: Path) -> None:
    write_run(tmp_path)
    rewrite_manifest(tmp_path, lambda d: d.update(format_version=99))
    with pytest.raises(RunDirError, match=r"manifest.json: format version 99, this flashsale"):
        load_run(tmp_path)


def test_tampered_part_file_fails_its_checksum(tmp_path: Path) -> None:
    write_run(tmp_path)
    part = part_file(tmp_path)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(RunDirError, match=rf"{part}: SHA-256 differs"):
        load_run(tmp_path)


def test_truncated_part_file_is_named_even_with_a_matching_checksum(tmp_path: Path) -> None:
    import hashlib

    write_run(tmp_path)
    part = part_file(tmp_path)
    cut = part.read_bytes()[:-40]
    part.write_bytes(cut)
    digest = hashlib.sha256(cut).hexdigest()
    rewrite_manifest(tmp_path, lambda d: d["topics"][TOPIC]["files"][0].update(sha256=digest))
    with pytest.raises(RunDirError, match=rf"{part}: not a readable Parquet file"):
        load_run(tmp_path)


def test_missing_part_file_is_named(tmp_path: Path) -> None:
    write_run(tmp_path)
    part = part_file(tmp_path)
    part.unlink()
    with pytest.raises(RunDirError, match=rf"{part}: missing"):
        load_run(tmp_path)


def test_a_message_count_that_disagrees_with_the_files_is_named(tmp_path: Path) -> None:
    write_run(tmp_path)
    rewrite_manifest(tmp_path, lambda d: d["topics"][TOPIC].update(messages=7))
    with pytest.raises(RunDirError, match=r"manifest.json: topic 'orders' has 6 messages"):
        load_run(tmp_path)


def test_offsets_out_of_order_are_named(tmp_path: Path) -> None:
    writer = RunWriter.create(tmp_path, {TOPIC: {0: (0, 5)}}, {"orders": TOPIC}, {})
    for offset in (0, 2, 1):
        writer.add(TOPIC, 0, offset, b"k", b"{}", [], 1)
    writer.close()
    with pytest.raises(RunDirError, match=r"partition 0 offsets out of order \(1 after 2\)"):
        load_run(tmp_path)


def test_a_part_path_leaving_the_run_folder_is_refused(tmp_path: Path) -> None:
    write_run(tmp_path)
    rewrite_manifest(
        tmp_path, lambda d: d["topics"][TOPIC]["files"][0].update(path="../../etc/passwd")
    )
    with pytest.raises(RunDirError, match="leaves the run folder"):
        load_run(tmp_path)


def msg(partition: int, offset: int, ts: int) -> RecordedMessage:
    return RecordedMessage(TOPIC, partition, offset, b"k", b"{}", [], ts)


def test_replay_interleaves_partitions_by_time_and_keeps_each_partitions_order() -> None:
    orders = {
        0: [msg(0, 0, 100), msg(0, 1, 300), msg(0, 2, 250), msg(0, 3, 400)],
        1: [msg(1, 0, 200), msg(1, 1, 350)],
    }
    got = [(m.partition, m.offset, m.timestamp_ms) for m in schedule(orders)]
    # 0:2 was stamped before 0:1; it still follows it, due no earlier than 300.
    assert got == [(0, 0, 100), (1, 0, 200), (0, 1, 300), (0, 2, 300), (1, 1, 350), (0, 3, 400)]


def test_restamp_moves_emit_ns_and_nothing_else() -> None:
    value = _event(3)
    moved = restamp(value, False, 999_000_000_123)
    assert moved is not None
    assert decode_event(moved) == dataclasses.replace(decode_event(value), emit_ns=999_000_000_123)
    assert moved.replace(b"999000000123", b"123456789") == value


def test_restamp_stamps_every_row_of_a_packed_message() -> None:
    ev = decode_event(_event(1))
    columns = {
        name: [getattr(ev, name)] * 3
        for name in (
            "order_id",
            "type",
            "sku",
            "merchant",
            "country",
            "category",
            "province",
            "channel",
            "payment",
            "line",
            "event_ts_ms",
            "emit_ns",
            "quantity",
            "unit_price_cents",
        )
    }
    moved = restamp(encode_packed(columns), True, 42)
    assert decode_packed(moved).columns["emit_ns"] == [42, 42, 42]


@pytest.mark.parametrize(
    "value", [b"not json", b'{"emit_ns":"soon"}', b'{"emit_ns":-5}', b"", None]
)
def test_restamp_leaves_malformed_values_as_they_are(value: bytes | None) -> None:
    assert restamp(value, False, 42) == value


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("record", "--out", "x"), "--bootstrap-servers"),
        (
            ("record", "--out", "/nonexistent/dir/run", "--bootstrap-servers", "h:1"),
            "/nonexistent/dir",
        ),
        (("record", "--out", "x", "--topics", ",", "--bootstrap-servers", "h:1"), "--topics"),
        (("replay", "RUN", "--speed", "0"), "--speed"),
        (("replay", "RUN", "--speed", "fast"), "--speed"),
        (("replay", "/nonexistent/run"), "/nonexistent/run"),
        (("verify", "/nonexistent/run"), "/nonexistent/run"),
        (("demo", "--record", "/nonexistent/dir/run"), "/nonexistent/dir"),
    ],
)
def test_bad_run_arguments_give_one_line_and_exit_2(args: tuple[str, ...], named: str) -> None:
    result = _cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]


def test_verify_of_a_tampered_run_dir_is_one_line_naming_the_file(tmp_path: Path) -> None:
    write_run(tmp_path)
    part = part_file(tmp_path)
    part.write_bytes(part.read_bytes()[:-10])
    result = _cli("verify", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"flashsale: error: {part}: SHA-256 differs from the manifest's (changed or truncated)"
    )


def test_demo_refuses_to_record_over_a_run(tmp_path: Path) -> None:
    write_run(tmp_path)
    result = _cli("demo", "--record", str(tmp_path))
    assert result.returncode == 2
    assert "already holds a run" in result.stderr


# -- Hostile run directories, fuzzed: any change to the manifest or a part file is either
# -- harmless or a RunDirError naming a file; never another exception.

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(min_value=0, max_value=99), max_size=2),
)


def _paths(doc: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every key path of a JSON document."""
    out: list[tuple[object, ...]] = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


def _loads_or_names_a_file(root: Path) -> None:
    try:
        load_run(root)
    except RunDirError as exc:
        line = str(exc)
        assert "\n" not in line
        assert str(root) in line, line


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_manifest_value_anywhere_is_loaded_or_refused_naming_a_file(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("run")
    write_run(root)
    doc = manifest(root)
    paths = _paths(doc)
    for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        target: Any = doc
        try:
            for key in path[:-1]:
                target = target[key]
            if isinstance(target, dict) != isinstance(path[-1], str):
                continue  # an earlier change replaced a list by an object, or the reverse
            target[path[-1]] = data.draw(_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced a parent
    (root / MANIFEST).write_bytes(orjson.dumps(doc))
    _loads_or_names_a_file(root)


@settings(max_examples=100, deadline=None)
@given(
    where=st.sampled_from(["manifest", "part"]),
    at=st.floats(min_value=0, max_value=1, exclude_max=True),
    junk=st.binary(min_size=1, max_size=8),
    cut=st.booleans(),
)
def test_any_byte_flipped_or_cut_in_any_file_is_loaded_or_refused_naming_a_file(
    tmp_path_factory: pytest.TempPathFactory, where: str, at: float, junk: bytes, cut: bool
) -> None:
    root = tmp_path_factory.mktemp("run")
    write_run(root)
    target = root / MANIFEST if where == "manifest" else part_file(root)
    raw = target.read_bytes()
    i = int(at * len(raw))
    target.write_bytes(raw[:i] if cut else raw[:i] + junk + raw[i + len(junk) :])
    _loads_or_names_a_file(root)
