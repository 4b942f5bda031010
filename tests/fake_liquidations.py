"""Fake Binance USDⓈ-M and Bybit v5 liquidation streams on 127.0.0.1: real websockets, real REST.

It speaks as much of each exchange's public protocol as ccxt.pro 4.5.90 uses for liquidations:

- Binance USDⓈ-M: ``GET /fapi/v1/exchangeInfo`` (the full market fixture of ``fake_exchange``)
  and the websocket ``/market/ws/<n>`` that ccxt opens for ``forceOrder`` (it rewrites the
  ``/ws`` base to ``/market/ws`` and appends a stream number). ccxt subscribes with
  ``{"method": "SUBSCRIBE", "params": ["btcusdt@forceOrder", ...], "id": n}`` and the fake
  answers ``{"result": null, "id": n}`` as Binance does. Binance pings with websocket ping
  frames; aiohttp answers ccxt's own pings with pongs.
- Bybit v5: ``GET /v5/market/instruments-info`` (``category=linear``, and the ``PreLaunch``
  call ccxt makes beside it) and the websocket ``/v5/public/linear``. ccxt subscribes with
  ``{"op": "subscribe", "req_id": n, "args": ["allLiquidation.BTCUSDT"]}`` (one topic per
  symbol) and pings with ``{"op": "ping"}``; the fake acknowledges both as Bybit does.

Tests push frames in the exchanges' documented shapes (``force_order``, ``all_liquidation``),
or anything else, to every open socket of one exchange, drop the connections from the server
side, and read back the subscriptions each connection made. Pushes broadcast to the
exchange's sockets whatever they subscribed to: a frame for a symbol nobody asked for is how
a test sends one.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.fake_exchange import Request
from tests.loopback import LoopbackServer

FIXTURES = Path(__file__).parent / "fixtures" / "exchange"
BINANCE, BYBIT = "binanceusdm", "bybit"


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscribe request a client sent over a websocket."""

    venue: str  # "binanceusdm" | "bybit"
    connection: int  # the connection's number, counting from 1 across the fake's life
    topics: tuple[str, ...]  # Binance stream names or Bybit topics
    request_id: Any


@dataclass(eq=False)
class _Socket:
    venue: str
    number: int
    ws: web.WebSocketResponse
    request: web.Request


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def force_order(
    symbol: str, side: str, qty: str, price: str, at: datetime, *, avg_price: str | None = None
) -> dict[str, Any]:
    """A Binance USDⓈ-M ``forceOrder`` event, filled in full (``side`` is the order's: a
    ``"SELL"`` closes a long)."""
    return {
        "e": "forceOrder",
        "E": _ms(at) + 2,
        "o": {
            "s": symbol,
            "S": side,
            "o": "LIMIT",
            "f": "IOC",
            "q": qty,
            "p": price,
            "ap": avg_price if avg_price is not None else price,
            "X": "FILLED",
            "l": qty,
            "z": qty,
            "T": _ms(at),
        },
    }


def all_liquidation(symbol: str, *rows: tuple[str, str, str, datetime]) -> dict[str, Any]:
    """A Bybit v5 ``allLiquidation.<symbol>`` frame; each row is ``(side, size, price, at)``
    with Bybit's side of the *position* (``"Buy"``: a long was liquidated)."""
    data = [
        {"T": _ms(at), "s": symbol, "S": side, "v": size, "p": price}
        for side, size, price, at in rows
    ]
    ts = max((r["T"] for r in data), default=0) + 5
    return {"topic": f"allLiquidation.{symbol}", "type": "snapshot", "ts": ts, "data": data}


@dataclass
class FakeLiquidations:
    """The fake server's state; ``start()`` it, then point ``LiquidationFeed`` at ``base_url``
    (REST) and ``ws_url`` (websockets)."""

    usdm_info: dict = field(
        default_factory=lambda: json.loads((FIXTURES / "usdm_exchange_info.json").read_text())
    )
    bybit_linear: dict = field(
        default_factory=lambda: json.loads((FIXTURES / "bybit_linear_instruments.json").read_text())
    )
    #: False: subscriptions go unanswered (a server that never confirms them).
    acknowledge: bool = True
    #: How many of the next websocket handshakes to refuse with HTTP 503 (an outage).
    refuse: int = 0
    requests: list[Request] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    pings: int = 0  # Bybit's text pings answered
    _sockets: list[_Socket] = field(default_factory=list)
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: LoopbackServer = field(init=False)

    def __post_init__(self) -> None:
        def routes(app: web.Application) -> None:
            app.router.add_get("/market/ws/{stream}", self._websocket)
            app.router.add_get("/v5/public/linear", self._websocket)
            app.router.add_route("*", "/{tail:.*}", self._rest)

        self._server = LoopbackServer("fake liquidations", routes)

    # ------------------------------------------------------------------ control (test side)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._server.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self.drop(BINANCE)
        self.drop(BYBIT)
        self._server.stop()

    def push(self, venue: str, frame: Any) -> int:
        """Send ``frame`` (JSON-encoded unless it is already text) to every open socket of
        ``venue``; returns how many sockets it went to."""
        text = frame if isinstance(frame, str) else json.dumps(frame)
        return self._on_server(self._send_all(venue, text))

    def drop(self, venue: str, *, abrupt: bool = False) -> int:
        """Close every open socket of ``venue`` from the server side: a close frame (Binance
        does so at its 24-hour limit), or with ``abrupt`` the TCP connection cut without one.
        Returns how many were closed."""
        return self._on_server(self._close_all(venue, abrupt))

    def open_sockets(self, venue: str) -> int:
        with self._lock:
            return sum(1 for s in self._sockets if s.venue == venue and not s.ws.closed)

    def subscribed(self, venue: str, connection: int | None = None) -> list[Subscription]:
        """The subscriptions made to ``venue`` (on one connection, or on all so far)."""
        with self._lock:
            return [
                s
                for s in self.subscriptions
                if s.venue == venue and connection in (None, s.connection)
            ]

    def connections(self, venue: str) -> list[int]:
        """The numbers of the connections made to ``venue`` that subscribed to something."""
        return sorted({s.connection for s in self.subscribed(venue)})

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    # ------------------------------------------------------------------ server

    def _on_server(self, coro: Any) -> int:
        loop = self._loop
        if loop is None:  # nothing ever connected: nothing to send to or close
            coro.close()
            return 0
        return int(asyncio.run_coroutine_threadsafe(coro, loop).result(5))

    async def _send_all(self, venue: str, text: str) -> int:
        sent = 0
        for socket in self._open(venue):
            await socket.ws.send_str(text)
            sent += 1
        return sent

    async def _close_all(self, venue: str, abrupt: bool) -> int:
        sockets = self._open(venue)
        for socket in sockets:
            if abrupt and socket.request.transport is not None:
                socket.request.transport.abort()
            else:
                await socket.ws.close(code=1001, message=b"going away")
        return len(sockets)

    def _open(self, venue: str) -> list[_Socket]:
        with self._lock:
            return [s for s in self._sockets if s.venue == venue and not s.ws.closed]

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self._loop = asyncio.get_running_loop()
        venue = BYBIT if request.path.startswith("/v5/") else BINANCE
        with self._lock:
            refused, self.refuse = self.refuse > 0, max(self.refuse - 1, 0)
        if refused:
            return web.Response(status=503, text="<html>503 Service Unavailable</html>")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        socket = _Socket(venue, next(self._numbers), ws, request)
        with self._lock:
            self._sockets.append(socket)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    answer = self._answer(socket, message.data)
                    if answer is not None:
                        await ws.send_str(json.dumps(answer))
        finally:
            with self._lock:
                self._sockets.remove(socket)
        return ws

    def _answer(self, socket: _Socket, text: str) -> dict[str, Any] | None:
        """What the exchange replies to a client's message (None: nothing)."""
        try:
            message = json.loads(text)
        except ValueError:
            return None
        if not isinstance(message, dict):
            return None
        if socket.venue == BINANCE and message.get("method") == "SUBSCRIBE":
            self._record(socket, message.get("params"), message.get("id"))
            return {"result": None, "id": message.get("id")} if self.acknowledge else None
        if socket.venue == BYBIT and message.get("op") == "subscribe":
            self._record(socket, message.get("args"), message.get("req_id"))
            if not self.acknowledge:
                return None
            return _bybit_ack("subscribe", message.get("req_id"), socket.number)
        if socket.venue == BYBIT and message.get("op") == "ping":
            with self._lock:
                self.pings += 1
            return {**_bybit_ack("ping", message.get("req_id"), socket.number), "ret_msg": "pong"}
        return None

    def _record(self, socket: _Socket, topics: Any, request_id: Any) -> None:
        names = tuple(str(t) for t in topics) if isinstance(topics, list) else ()
        with self._lock:
            self.subscriptions.append(Subscription(socket.venue, socket.number, names, request_id))

    async def _rest(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        with self._lock:
            self.requests.append(Request(request.path, params, time.monotonic()))
        handler: dict[str, Callable[[dict[str, str]], web.Response]] = {
            "/fapi/v1/exchangeInfo": lambda p: web.json_response(self.usdm_info),
            "/v5/market/instruments-info": self._instruments,
        }
        serve = handler.get(request.path)
        if serve is None or request.method != "GET":
            body = {"code": -1, "msg": f"Not found: {request.method} {request.path}"}
            return web.json_response(body, status=404)
        return serve(params)

    def _instruments(self, params: dict[str, str]) -> web.Response:
        # GET /v5/market/instruments-info: ccxt asks for the trading instruments and, beside
        # them, the pre-launch ones (none here).
        if params.get("category") != "linear":
            return web.json_response(
                {"retCode": 10001, "retMsg": "params error: category", "result": {}, "time": 0}
            )
        if params.get("status") == "PreLaunch":
            empty = {**self.bybit_linear["result"], "list": [], "nextPageCursor": ""}
            return web.json_response({**self.bybit_linear, "result": empty})
        return web.json_response(self.bybit_linear)


def _bybit_ack(op: str, req_id: Any, connection: int) -> dict[str, Any]:
    return {
        "success": True,
        "ret_msg": "",
        "conn_id": f"fake-{connection}",
        "req_id": "" if req_id is None else str(req_id),
        "op": op,
    }


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait, polling, until ``condition()`` holds; fail after a generous ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.005)
