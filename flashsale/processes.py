"""Child processes: stopped on exit and with their parent, free ports, waiting for an answer.

Every process flashsale starts (brokers, workers, the gateway, locust) is started with
`die_with_parent` and stopped with `stop_process`, so none is left behind on Ctrl-C, SIGTERM
or a SIGKILL of its parent (Linux).
"""

from __future__ import annotations

__all__ = ["die_with_parent", "free_port", "stop_process", "wait_http"]
import ctypes
import os
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


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """`preferred` when it is free, else any free port on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers that will bind it do (aiohttp, Faust): a port whose last connections
        # linger in TIME_WAIT after a previous run is free for them, so it is free here.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, preferred or 0))
        except OSError:
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
