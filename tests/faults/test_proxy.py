"""The fault proxy itself, in front of a loopback echo server: each mode does what it says,
and stopping it leaves no thread, listener or connection behind."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faults.proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the proxy resets it in the drop tests
            while data := self.request.recv(65536):
                self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with _Server(("127.0.0.1", 0), _Echo) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with FaultProxy(server.server_address[:2]) as fp:
                yield fp
        finally:
            server.shutdown()
            thread.join()


def _connect(fp: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", fp.port), timeout=2)


def _cut(conn: socket.socket) -> bool:
    """True when the proxy has closed or reset `conn`."""
    try:
        return conn.recv(1) == b""
    except TimeoutError:  # still open: nothing came within the socket's timeout
        return False
    except OSError:
        return True


def _refused(fp: FaultProxy) -> bool:
    """True when a new connection through `fp` is reset before it echoes anything."""
    try:
        with _connect(fp) as conn:
            conn.sendall(b"y")
            return _cut(conn)
    except OSError:
        return True


def _echo(conn: socket.socket, data: bytes) -> bytes:
    conn.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = conn.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_pass_forwards_both_ways(proxy: FaultProxy) -> None:
    with _connect(proxy) as conn:
        assert _echo(conn, b"flash sale") == b"flash sale"
    assert proxy.stats.accepted == 1


def test_drop_resets_open_connections_and_refuses_new_ones_for_a_while(
    proxy: FaultProxy,
) -> None:
    with _connect(proxy) as conn:
        assert _echo(conn, b"x") == b"x"
        assert proxy.drop(refuse_s=0.5) == 1
        assert _cut(conn)
    assert _refused(proxy)
    time.sleep(0.6)
    with _connect(proxy) as conn:
        assert _echo(conn, b"back") == b"back"
    assert proxy.stats.refused >= 1


def test_stall_holds_the_bytes_and_the_connection(proxy: FaultProxy) -> None:
    with _connect(proxy) as conn:
        proxy.stall(0.6)
        conn.sendall(b"held")
        conn.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.recv(4)
        conn.settimeout(2)
        assert conn.recv(4) == b"held"
    assert proxy.stats.dropped == 0


def test_slow_caps_the_rate(proxy: FaultProxy) -> None:
    proxy.slow(bytes_per_s=100_000)
    data = b"o" * 40_000
    with _connect(proxy) as conn:
        started = time.monotonic()
        assert _echo(conn, data) == data
        took = time.monotonic() - started
    # 0.4 s each way at 100 kB/s; the two directions overlap.
    assert took >= 0.35
    proxy.pass_through()
    with _connect(proxy) as conn:
        started = time.monotonic()
        assert _echo(conn, data) == data
        assert time.monotonic() - started < 0.3


def test_stop_leaves_no_thread_listener_or_connection() -> None:
    with _Server(("127.0.0.1", 0), _Echo) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        fp = FaultProxy(server.server_address[:2]).start()
        conn = _connect(fp)
        assert _echo(conn, b"x") == b"x"
        fp.stop()
        assert not [t for t in threading.enumerate() if t.name == "fault-proxy"]
        assert _cut(conn)
        conn.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", fp.port), timeout=1).close()
        server.shutdown()
        thread.join()
