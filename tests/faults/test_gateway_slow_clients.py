"""Slow-loris against a real `flashsale gateway`: a client trickling its headers or its body
is cut within the bound, and hundreds of such connections at once leave memory bounded."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flashsale.settings import Settings
from tests.faults.test_gateway_kill import Gateway

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0
#: Concurrent slow connections, and the RSS growth they may cause (measured: 1.6 MB).
SLOW_CLIENTS, RSS_BOUND_MB = 300, 20


@pytest.fixture
def gateway(run_settings: Settings, tmp_path: Path) -> Iterator[Gateway]:
    settings = run_settings.model_copy(update={"gateway_request_timeout_s": TIMEOUT_S})
    gw = Gateway(settings, tmp_path / "gateway.log")
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _closed(sock: socket.socket) -> bool:
    """True once the server closed the connection (reads what it sent before)."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_client_trickling_its_headers_is_cut_within_the_bound(gateway: Gateway) -> None:
    sock = _connect(gateway.port)
    started = time.monotonic()
    sock.sendall(b"POST /orders HTTP/1.1\r\nHost: shop\r\n")
    sock.setblocking(False)
    while not _closed(sock):
        assert time.monotonic() - started < TIMEOUT_S + 3, "still open past the bound"
        try:
            sock.send(b"X")  # one byte of a header every 0.2 s
        except OSError:
            break
        time.sleep(0.2)
    assert time.monotonic() - started >= TIMEOUT_S - 0.5
    sock.close()


def test_a_client_trickling_its_body_gets_408_within_the_bound(gateway: Gateway) -> None:
    sock = _connect(gateway.port)
    started = time.monotonic()
    sock.sendall(
        b"POST /orders HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200\r\n\r\n{"
    )
    answer = b""
    sock.settimeout(0.2)
    while b"\r\n\r\n" not in answer:
        assert time.monotonic() - started < TIMEOUT_S + 3, "no answer past the bound"
        try:
            sock.send(b" ")
            answer += sock.recv(65536)
        except TimeoutError:
            pass
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert b"the body took longer than 2 s" in answer


def test_hundreds_of_slow_connections_leave_memory_bounded_and_are_all_cut(
    gateway: Gateway,
) -> None:
    assert gateway.proc is not None
    before = _rss_mb(gateway.proc.pid)
    socks = []
    try:
        for _ in range(SLOW_CLIENTS):
            sock = _connect(gateway.port)
            sock.sendall(b"POST /orders HTTP/1.1\r\nHost: shop\r\nX-Slow: ")
            sock.setblocking(False)
            socks.append(sock)
        time.sleep(0.5)
        grown = _rss_mb(gateway.proc.pid) - before
        assert grown < RSS_BOUND_MB, f"RSS grew {grown:.1f} MB for {SLOW_CLIENTS} connections"
        deadline = time.monotonic() + TIMEOUT_S + 5
        while not all(_closed(s) for s in socks):
            assert time.monotonic() < deadline, (
                f"{sum(not _closed(s) for s in socks)} slow connections still open"
            )
            time.sleep(0.2)
        # And the gateway still serves.
        sock = _connect(gateway.port)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
        sock.close()
    finally:
        for sock in socks:
            sock.close()
    print(f"RSS {before:.1f} MB, +{grown:.1f} MB with {SLOW_CLIENTS} slow connections")
