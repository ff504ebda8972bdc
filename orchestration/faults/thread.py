"""A fault timeline in a thread of its own, for a command whose main thread waits on other
processes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from orchestration.faults.runner import FaultRunner

__all__ = ["FaultThread"]


class FaultThread:
    """A fault timeline beside a command whose own thread waits on other processes (the load
    test waits on locust): the runner and a sampler of the dashboard's lag and p99, in an
    event loop of their own. `start(t0)`, then `stop()` undoes what is still broken."""

    def __init__(self, runner: FaultRunner, source: Any) -> None:
        self.runner = runner
        self.source = source
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    def start(self, t0: float) -> None:
        """Begin the timeline, counted from `t0` (a `time.monotonic()` value)."""
        ready = threading.Event()

        async def main() -> None:
            self._stop = asyncio.Event()
            ready.set()
            await self.source.start()
            faulting = asyncio.create_task(self.runner.run(t0))
            try:
                while not self._stop.is_set():
                    snap = self.source.snapshot
                    self.runner.observe(snap.get("lag"), snap.get("latency_p99_ms"))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 0.5)
            finally:
                faulting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await faulting
                await self.runner.undo_all()
                await self.source.stop()

        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(main(),), name="faults", daemon=True
        )
        self._thread.start()
        ready.wait(5.0)

    def stop(self) -> None:
        """End the timeline: what is still broken comes back; wait for it."""
        if self._thread is None:
            return
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = None
        self._loop.close()
