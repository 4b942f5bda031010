"""An aiohttp app served on 127.0.0.1 from a thread of its own: what the loopback fakes share."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web


class LoopbackServer:
    """Serves the routes ``add_routes`` puts on an app, on a free port of 127.0.0.1.

    It runs its own event loop in a daemon thread, so a synchronous test and code under test
    that runs its own loop (PTB, ccxt, tweepy) can both reach it.
    """

    def __init__(self, name: str, add_routes: Callable[[web.Application], None]) -> None:
        self.name = name
        self.port = 0
        #: Set first by ``stop()``: a handler holding a request open (a long poll, a hang)
        #: must let go, or cleanup would wait for it.
        self.closing = False
        self._add_routes = add_routes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError(f"{self.name} server did not start")

    def stop(self) -> None:
        if self._loop is None or self._runner is None or self._thread is None:
            return
        self.closing = True
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _serve(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        ready.set()
        self._loop.run_forever()
