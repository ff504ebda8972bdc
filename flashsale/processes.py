"""Child processes: stopped on exit and with their parent, free ports, waiting for an answer.

Every process flashsale starts (brokers, workers, the gateway, locust) is started with
`die_with_parent` and stopped with `stop_process`, so none is left behind on Ctrl-C, SIGTERM
or a SIGKILL of its parent (Linux).
"""

from __future__ import annotations

__all__ = ["die_with_parent", "free_port", "stop_process", "wait_http"]
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any


def stop_process(proc: subprocess.Popen[Any], timeout_s: float) -> None:
    """SIGTERM a child, then SIGKILL it if it is still there after `timeout_s`; reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that kills the child when this process dies (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def _set_pdeathsig() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent:
            os._exit(1)

    return _set_pdeathsig


#: Where `free_port` looks first: below the kernel's range of ephemeral ports, which every
#: outgoing connection takes its local port from, and above the well-known and our default
#: ports. A port handed out from the ephemeral range is free when checked, but until its
#: server binds it an outgoing connection of any process may take it: on a busy machine (a
#: test suite's Kafka clients) a worker then failed to start, "address already in use".
_OWN_PORTS = (15000, 32768)
_PICK = random.Random()
_PICK_PID = os.getpid()


def _picker() -> random.Random:
    """The random picks of this process (seeded again in a fork, or it would pick as its
    parent does)."""
    global _PICK_PID
    if os.getpid() != _PICK_PID:
        _PICK.seed()
        _PICK_PID = os.getpid()
    return _PICK


def _ephemeral_low() -> int:
    """The lowest ephemeral port of this machine's kernel (Linux), else IANA's 49152."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers that will bind it do (aiohttp, Faust): a port whose last connections
        # linger in TIME_WAIT after a previous run is free for them, so it is free here.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """`preferred` when it is free, else a free port on `host` outside the kernel's ephemeral
    range (`_OWN_PORTS`), picked at random so that processes picking at once rarely pick
    the same; any free port when none of 64 picks is."""
    if preferred and _bindable(host, preferred):
        return preferred
    low, high = _OWN_PORTS[0], min(_OWN_PORTS[1], _ephemeral_low())
    pick = _picker()
    for _ in range(64 if high > low else 0):
        port = pick.randrange(low, high)
        if _bindable(host, port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Block until `url` answers; `RuntimeError` when `proc` exits first, `TimeoutError`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own loopback URL
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer in {timeout_s:.0f} s") from None
            time.sleep(0.2)
