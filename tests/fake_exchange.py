"""A fake Binance REST API on 127.0.0.1 for tests: real HTTP, Binance's documented JSON shapes.

It runs in its own thread and event loop, like ``fake_telegram``, so the real ccxt client can talk
to it from the test's loop. It serves the public endpoints ccxt 4.5.90 calls for our market data:

- ``GET /api/v3/exchangeInfo`` and ``GET /fapi/v1/exchangeInfo`` (full market fixtures, so the
  spot ``BTC/USDT`` and the perpetual ``BTC/USDT:USDT`` both exist with the same id ``BTCUSDT``),
- ``GET /api/v3/klines`` (``symbol``, ``interval``, ``startTime``, ``endTime``, ``limit``),
- ``GET /api/v3/ticker/24hr``, ``GET /fapi/v1/premiumIndex``, ``GET /fapi/v1/openInterest``.

Every request is recorded; anything else answers 404 the way Binance does. The next request can
be told to fail with 429/418 (``Retry-After``), 5xx, or to hang past the client's timeout.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.loopback import LoopbackServer

FIXTURES = Path(__file__).parent / "fixtures" / "exchange"
INTERVAL_MS = {"1m": 60_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}


@dataclass(frozen=True, slots=True)
class Request:
    """One request the fake received."""

    path: str
    params: dict[str, str]
    at: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class Failure:
    """How to answer one upcoming request instead of serving it."""

    status: int = 429
    retry_after: int | None = 1
    hang_s: float = 0.0  # > 0: wait this long before answering normally (a client timeout)
    path: str | None = None  # None: whichever request comes next


TOO_MANY = Failure(429, retry_after=1)
BANNED = Failure(418, retry_after=2)
UNAVAILABLE = Failure(503, retry_after=None)


def hang(seconds: float, path: str | None = None) -> Failure:
    """A request that stalls for ``seconds`` before it is answered."""
    return Failure(status=200, retry_after=None, hang_s=seconds, path=path)


def make_klines(
    start: datetime, interval: str, count: int, first_price: float = 100.0
) -> list[list[Any]]:
    """``count`` consecutive klines in Binance's array shape, opening at ``start``.

    Prices walk deterministically so each bar is distinguishable by its open time.
    """
    step = INTERVAL_MS[interval]
    t0 = int(start.timestamp() * 1000)
    rows: list[list[Any]] = []
    price = first_price
    for i in range(count):
        o = price
        c = round(o * (1.01 if i % 3 else 0.985), 2)
        h, lo = round(max(o, c) * 1.005, 2), round(min(o, c) * 0.995, 2)
        vol = 10.0 + i
        open_time = t0 + i * step
        rows.append(
            [
                open_time,
                f"{o:.8f}",
                f"{h:.8f}",
                f"{lo:.8f}",
                f"{c:.8f}",
                f"{vol:.8f}",
                open_time + step - 1,  # close time
                f"{vol * c:.8f}",  # quote asset volume
                100 + i,  # number of trades
                f"{vol / 2:.8f}",  # taker buy base volume
                f"{vol * c / 2:.8f}",  # taker buy quote volume
                "0",
            ]
        )
        price = c
    return rows


def ticker_24hr(
    symbol: str, last: float, change_pct: float, volume: float, close_time: datetime
) -> dict[str, Any]:
    """A spot ``/api/v3/ticker/24hr`` answer (FULL type) for one symbol."""
    close_ms = int(close_time.timestamp() * 1000)
    open_price = last / (1 + change_pct / 100)
    return {
        "symbol": symbol,
        "priceChange": f"{last - open_price:.8f}",
        "priceChangePercent": f"{change_pct:.3f}",
        "weightedAvgPrice": f"{(last + open_price) / 2:.8f}",
        "prevClosePrice": f"{open_price:.8f}",
        "lastPrice": f"{last:.8f}",
        "lastQty": "0.00731000",
        "bidPrice": f"{last - 0.01:.8f}",
        "bidQty": "7.15931000",
        "askPrice": f"{last:.8f}",
        "askQty": "0.09592000",
        "openPrice": f"{open_price:.8f}",
        "highPrice": f"{max(last, open_price) * 1.01:.8f}",
        "lowPrice": f"{min(last, open_price) * 0.99:.8f}",
        "volume": f"{volume:.8f}",
        "quoteVolume": f"{volume * last:.8f}",
        "openTime": close_ms - 86_400_000,
        "closeTime": close_ms,
        "firstId": 5116031635,
        "lastId": 5117964946,
        "count": 1933312,
    }


def premium_index(symbol: str, mark: float, funding_rate: float, at: datetime) -> dict[str, Any]:
    """A ``/fapi/v1/premiumIndex`` answer (mark price and the current funding rate)."""
    at_ms = int(at.timestamp() * 1000)
    return {
        "symbol": symbol,
        "markPrice": f"{mark:.8f}",
        "indexPrice": f"{mark * 0.9998:.8f}",
        "estimatedSettlePrice": f"{mark * 0.9997:.8f}",
        "lastFundingRate": f"{funding_rate:.8f}",
        "interestRate": "0.00010000",
        "nextFundingTime": (at_ms // 28_800_000 + 1) * 28_800_000,
        "time": at_ms,
    }


def open_interest(symbol: str, contracts: float, at: datetime) -> dict[str, Any]:
    """A ``/fapi/v1/openInterest`` answer (in base-asset units)."""
    return {
        "symbol": symbol,
        "openInterest": f"{contracts:.3f}",
        "time": int(at.timestamp() * 1000),
    }


@dataclass
class FakeBinance:
    """The fake server's state; ``start()`` it and pass ``base_url`` to ``build_exchange``."""

    spot_info: dict = field(
        default_factory=lambda: json.loads((FIXTURES / "spot_exchange_info.json").read_text())
    )
    usdm_info: dict = field(
        default_factory=lambda: json.loads((FIXTURES / "usdm_exchange_info.json").read_text())
    )
    klines: dict[tuple[str, str], list[list[Any]]] = field(default_factory=dict)
    tickers: dict[str, dict] = field(default_factory=dict)  # spot symbol → 24hr ticker
    premium: dict[str, dict] = field(default_factory=dict)  # perpetual symbol → premiumIndex
    interest: dict[str, dict] = field(default_factory=dict)  # perpetual symbol → openInterest
    requests: list[Request] = field(default_factory=list)
    _failures: deque[Failure] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: LoopbackServer = field(init=False)

    def __post_init__(self) -> None:
        self._server = LoopbackServer(
            "fake Binance", lambda app: app.router.add_route("*", "/{tail:.*}", self._handle)
        )

    # ------------------------------------------------------------------ control (test side)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()  # releases hanging requests first

    def fail_next(self, failure: Failure, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``failure``."""
        with self._lock:
            self._failures.extend([failure] * times)

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def calls(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # ------------------------------------------------------------------ server

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        params = dict(request.query)
        with self._lock:
            self.requests.append(Request(path, params, time.monotonic()))
            failure = self._take_failure(path)
        if failure is not None:
            if failure.hang_s > 0:
                deadline = time.monotonic() + failure.hang_s
                while time.monotonic() < deadline and not self._server.closing:
                    await asyncio.sleep(0.01)
            else:
                return _failure(failure)
        handler = {
            "/api/v3/exchangeInfo": lambda p: _json(self.spot_info),
            "/fapi/v1/exchangeInfo": lambda p: _json(self.usdm_info),
            "/api/v3/klines": self._klines,
            "/api/v3/ticker/24hr": lambda p: self._by_symbol(self.tickers, p),
            "/fapi/v1/premiumIndex": lambda p: self._by_symbol(self.premium, p),
            "/fapi/v1/openInterest": lambda p: self._by_symbol(self.interest, p),
        }.get(path)
        if handler is None or request.method != "GET":
            return _error(404, -1, f"Not found: {request.method} {path}")
        return handler(params)

    def _take_failure(self, path: str) -> Failure | None:
        for failure in self._failures:
            if failure.path in (None, path):
                self._failures.remove(failure)
                return failure
        return None

    def _klines(self, params: dict[str, str]) -> web.Response:
        # GET /api/v3/klines: bars whose open time lies in [startTime, endTime]; oldest first.
        symbol, interval = params.get("symbol"), params.get("interval")
        if symbol is None or interval is None:
            return _error(400, -1102, "Mandatory parameter was not sent, was empty/null.")
        if interval not in INTERVAL_MS:
            return _error(400, -1120, "Invalid interval.")
        if (symbol, interval) not in self.klines and not self._spot_listed(symbol):
            return _error(400, -1121, "Invalid symbol.")
        limit = int(params.get("limit", 500))
        if not 1 <= limit <= 1000:
            return _error(400, -1100, "Illegal characters found in parameter 'limit'.")
        rows = self.klines.get((symbol, interval), [])
        if "startTime" in params:
            start = int(params["startTime"])
            rows = [r for r in rows if r[0] >= start]
        if "endTime" in params:
            end = int(params["endTime"])
            rows = [r for r in rows if r[0] <= end]
        # With a start time Binance returns the oldest ``limit`` bars after it, otherwise the
        # newest ``limit`` bars.
        rows = rows[:limit] if "startTime" in params else rows[-limit:]
        return _json(rows)

    def _by_symbol(self, table: dict[str, dict], params: dict[str, str]) -> web.Response:
        symbol = params.get("symbol")
        if symbol not in table:
            return _error(400, -1121, "Invalid symbol.")
        return _json(table[symbol])

    def _spot_listed(self, symbol: str) -> bool:
        return any(s["symbol"] == symbol for s in self.spot_info["symbols"])


def _json(body: Any) -> web.Response:
    return web.json_response(body)


def _error(status: int, code: int, msg: str) -> web.Response:
    return web.Response(
        status=status, text=json.dumps({"code": code, "msg": msg}), content_type="application/json"
    )


def _failure(failure: Failure) -> web.Response:
    headers = {} if failure.retry_after is None else {"Retry-After": str(failure.retry_after)}
    if failure.status in (418, 429):
        msg = "Too much request weight used; current limit is 6000 request weight per 1 MINUTE."
        if failure.status == 418:
            msg = f"Way too much request weight used; IP banned until {_ban_until()}."
        body = json.dumps({"code": -1003, "msg": msg})
    else:
        body = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
    content_type = "application/json" if failure.status in (418, 429) else "text/html"
    return web.Response(
        status=failure.status, text=body, headers=headers, content_type=content_type
    )


def _ban_until() -> int:
    return int((datetime.now(UTC) + timedelta(minutes=2)).timestamp() * 1000)
