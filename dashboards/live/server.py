"""The live dashboard's web server: the page, its static files, and a snapshot a second (SSE).

aiohttp (already here as Faust's web server) serves `GET /` (the page), `GET /static/...`,
`GET /events` (Server-Sent Events: one JSON snapshot per update, and an `end` event when the
dashboard stops) and `GET /snapshot` (the
newest snapshot as JSON, for scripts and tests). Everything the page needs is in the package:
it works offline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from aiohttp import web

from dashboards.live.source import DashboardSource

__all__ = ["STATIC", "make_app", "serve"]

STATIC = Path(__file__).parent / "static"


def make_app(source: DashboardSource) -> web.Application:
    """The aiohttp application over `source` (which the caller starts and stops)."""

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def snapshot(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(source.snapshot), content_type="application/json")

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        try:
            while not closing.is_set():
                await resp.write(b"data: " + orjson.dumps(source.snapshot) + b"\n\n")
                update = asyncio.ensure_future(source.updated.wait())
                end = asyncio.ensure_future(closing.wait())
                await asyncio.wait([update, end], return_when=asyncio.FIRST_COMPLETED)
                update.cancel()
                end.cancel()
            # The run is over: tell the page, which stops reconnecting, and end the stream.
            await resp.write(b"event: end\ndata: {}\n\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    closing = asyncio.Event()

    async def on_shutdown(app: web.Application) -> None:
        closing.set()
        await asyncio.sleep(0.1)  # let each stream send its end

    app = web.Application()
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", index)
    app.router.add_get("/snapshot", snapshot)
    app.router.add_get("/events", events)
    app.router.add_static("/static/", STATIC)
    return app


@contextlib.asynccontextmanager
async def serve(source: DashboardSource, host: str, port: int) -> AsyncIterator[str]:
    """Run the dashboard on host:port while the block runs; yields its URL."""
    await source.start()
    runner = web.AppRunner(make_app(source), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield f"http://{host}:{port}/"
    finally:
        await runner.cleanup()
        await source.stop()
