"""A fake Deribit REST API on 127.0.0.1 serving DVOL (``public/get_volatility_index_data``).

Deribit answers the *newest* ``page_size`` bars of ``[start_timestamp, end_timestamp]``, oldest
first, with a ``continuation`` to pass as the next ``end_timestamp`` (null on the last page),
in its JSON-RPC envelope. Every request is recorded; the next ones can be told to fail.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fake_exchange import Request
from tests.loopback import LoopbackServer

DVOL_PATH = "/api/v2/public/get_volatility_index_data"
RESOLUTION_MS = {"3600": 3_600_000, "1D": 86_400_000}


def dvol_rows(start: datetime, resolution: str, count: int, level: float = 50.0) -> list[list[Any]]:
    """``count`` consecutive DVOL bars ``[ts, open, high, low, close]`` from ``start``."""
    step = RESOLUTION_MS[resolution]
    t0 = int(start.timestamp() * 1000)
    rows: list[list[Any]] = []
    for i in range(count):
        o = level + i * 0.25
        c = o + (0.5 if i % 2 else -0.3)
        rows.append([t0 + i * step, o, max(o, c) + 0.2, min(o, c) - 0.2, c])
    return rows


@dataclass
class FakeDeribit:
    """The fake server; ``start()`` it and pass ``base_url`` as ``VolatilityFeed(api_url=...)``."""

    bars: dict[tuple[str, str], list[list[Any]]] = field(default_factory=dict)
    page_size: int = 1000
    #: Sent as ``result`` instead of the bars when set (an answer of the wrong shape).
    result: Any = None
    requests: list[Request] = field(default_factory=list)
    _failures: deque[int] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: LoopbackServer = field(init=False)

    def __post_init__(self) -> None:
        self._server = LoopbackServer(
            "fake Deribit", lambda app: app.router.add_route("*", "/{tail:.*}", self._handle)
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with HTTP ``status``: an HTML page for a 5xx,
        Deribit's JSON-RPC error otherwise."""
        with self._lock:
            self._failures.extend([status] * times)

    def calls(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == DVOL_PATH]

    async def _handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        with self._lock:
            self.requests.append(Request(request.path, params, time.monotonic()))
            failure = self._failures.popleft() if self._failures else None
        if failure is not None and failure >= 500:
            return web.Response(status=failure, text="<html>unavailable</html>")
        if failure is not None:  # Deribit refuses a request with a JSON-RPC error
            return _error(failure, 11_050, "bad_request", "refused by the test")
        if request.path != DVOL_PATH:
            return _error(404, 11_050, "bad_request", f"{request.path} not found")
        try:
            currency = params["currency"]
            start, end = int(params["start_timestamp"]), int(params["end_timestamp"])
            resolution = params["resolution"]
        except (KeyError, ValueError):
            return _error(400, 11_050, "bad_request", "missing or bad parameter")
        if resolution not in RESOLUTION_MS:
            return _error(400, -32602, "Invalid params", "resolution")
        rows = [r for r in self.bars.get((currency, resolution), []) if _in(r, start, end)]
        page = rows[-self.page_size :]
        times = [r[0] for r in page if isinstance(r, list) and r and type(r[0]) is int]
        continuation = min(times) if len(rows) > len(page) and times else None
        result = {"data": page, "continuation": continuation}
        return web.json_response(
            {
                "jsonrpc": "2.0",
                "result": self.result if self.result is not None else result,
                "usIn": 1_700_000_000_000_000,
                "usOut": 1_700_000_000_000_300,
                "usDiff": 300,
                "testnet": False,
            }
        )


def _in(row: Any, start: int, end: int) -> bool:
    # Rows the tests plant may be malformed: the ones without a usable time are always sent.
    ts = row[0] if isinstance(row, list) and row else None
    return not isinstance(ts, int) or isinstance(ts, bool) or start <= ts <= end


def _error(status: int, code: int, message: str, reason: str) -> web.Response:
    body = {
        "jsonrpc": "2.0",
        "error": {"message": message, "data": {"reason": reason}, "code": code},
        "testnet": False,
    }
    return web.json_response(body, status=status)


def hours_ago(now: datetime, hours: int) -> datetime:
    """The start of the hour ``hours`` hours before ``now``'s hour."""
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
