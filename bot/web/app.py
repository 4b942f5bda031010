"""The FastAPI application: `/api/v1/` routes, caching headers, per-client limits, 4xx errors."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any, Literal, TypeVar, cast

from cachetools import TTLCache
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot.chat.context import (
    CommandContext,
    UnknownAssetError,
    UsageError,
    asset_arg,
    known,
)
from bot.chat.links import DashboardLinks, Grant, LinkError, LinkRefused
from bot.store import Store
from bot.web import page, reads
from bot.web.clients import ClientLimiter, client_ip, networks
from bot.web.dashboard import dashboard_view
from bot.web.fng import fng_csv, fng_document
from bot.web.models import (
    AlertsOut,
    ErrorOut,
    FngOut,
    HealthOut,
    HistoryOut,
    LevelsOut,
    MoodOut,
)
from nlp.assets import AssetTable

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
#: Computed answers kept (the most recent), and for how long (Cache-Control's max-age).
ANSWERS_KEPT = 512
ANSWERS_TTL_S = 60.0
_MISSING = object()
T = TypeVar("T")
CACHE_CONTROL = "public, max-age=60"
#: Nothing is dated before the genesis block (the replay's own rule for a malformed row).
EARLIEST = datetime(2009, 1, 3, tzinfo=UTC)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "bad input"},
    404: {"model": ErrorOut, "description": "unknown asset, or no public source by that name"},
    429: {"model": ErrorOut, "description": "over this address's rate limit (see Retry-After)"},
}

Window = Literal["1h", "24h", "7d"]
Format = Literal["json", "csv"]
Community = Annotated[
    str, Query(pattern=r"^(\*|-?[A-Za-z0-9_.]{1,64})$", description="a community id, or *")
]
Platform = Annotated[str, Query(pattern=r"^(\*|[a-z0-9_]{1,32})$", description="or *")]
Asset = Annotated[str | None, Query(max_length=20, description="e.g. BTC; all assets if absent")]


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """What the API needs of the settings."""

    public_sources: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    rate_per_minute: int = 120
    #: Checks the dashboard's links; None: ``/dashboard/…`` answers 404 (not set up).
    links: DashboardLinks | None = None


class BadInputError(ValueError):
    """A parameter that parsed but cannot be answered (a time outside the data)."""


def create_app(
    store: Store,
    config: ApiConfig = ApiConfig(),
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    monotonic: Callable[[], float] = time.monotonic,
    moderator_check: ModeratorCheck | None = None,
) -> FastAPI:
    """The API over ``store`` (opened and closed by the caller). ``clock`` is the wall clock
    that decides whether the database is live and links have expired; ``monotonic`` the
    rate limiter's and the role cache's time; ``moderator_check`` whether a link's user is
    still a moderator of its community (None from it, or no check: not known here)."""
    app = FastAPI(
        title="moodring",
        version="1",
        description="The mood index and the fear & greed composite, read-only.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI loads its script from a CDN: not at run time
        redoc_url=None,
    )
    table = AssetTable.load()
    trusted = networks(config.trusted_proxies)
    limiter = ClientLimiter(config.rate_per_minute)
    # Answers by what decides them (the endpoint, its arguments and the data's "now"), kept a
    # minute: a popular URL is computed once, not once per client, and never older than the
    # Cache-Control the clients are told. Handlers run in a thread pool, hence the lock.
    answers: TTLCache[tuple[object, ...], Any] = TTLCache(ANSWERS_KEPT, ANSWERS_TTL_S)
    answers_lock = threading.Lock()

    def remember(key: tuple[object, ...], compute: Callable[[], T]) -> T:
        with answers_lock:
            hit = answers.get(key, _MISSING)
        if hit is not _MISSING:
            return cast(T, hit)
        value = compute()
        with answers_lock:
            answers[key] = value
        return value

    def view() -> reads.ApiView:
        now, live = reads.as_of(store, clock())
        ctx = CommandContext(store=store, now=now, assets=table)
        return reads.ApiView(ctx=ctx, live=live, public_sources=config.public_sources)

    def asset_of(v: reads.ApiView, text: str | None) -> str:
        if text is None or text == "*":
            return "*"
        return known(v.ctx, asset_arg(text, table))

    def when(v: reads.ApiView, at: datetime | None, name: str) -> datetime | None:
        if at is None:
            return None
        try:
            got = reads.utc(at)
        except (OverflowError, ValueError):
            raise BadInputError(f"{name}: not a time moodring can read") from None
        if not EARLIEST <= got <= v.ctx.now:
            raise BadInputError(
                f"{name}: must be between {EARLIEST:%Y-%m-%d} and the data's now,"
                f" {v.ctx.now.isoformat()}"
            )
        return got

    @app.middleware("http")
    async def rate_limit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        peer = request.client.host if request.client else None
        ip = client_ip(peer, request.headers.get("x-forwarded-for"), trusted)
        limited = request.url.path.startswith((PREFIX, "/dashboard/"))
        if limited and not limiter.allow(ip, monotonic()):
            return JSONResponse(
                {"error": f"over {config.rate_per_minute} requests a minute from {ip}"},
                status_code=429,
                headers={"Retry-After": str(limiter.retry_after())},
            )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "query")
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "; ".join(parts)[:500]}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(BadInputError)
    @app.exception_handler(UsageError)
    async def usage(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(UnknownAssetError)
    @app.exception_handler(reads.NotFoundError)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        text = f"unknown asset {exc.asset}" if isinstance(exc, UnknownAssetError) else str(exc)
        return JSONResponse({"error": text}, status_code=404)

    @app.get(f"{PREFIX}/mood", response_model=MoodOut, responses=ERRORS)
    def mood(
        request: Request,
        asset: Asset = None,
        community: Community = "*",
        platform: Platform = "*",
        window: Window = "24h",
        at: datetime | None = None,
    ) -> Response:
        """The mood reading of a scope: value, band, components, sample size, confidence and
        the model that scored it, as ``/mood`` reads it."""
        v = view()
        scope = v.scope(asset_of(v, asset), community, platform)
        moment = when(v, at, "at") or v.ctx.now
        doc = remember(
            ("mood", scope, window, moment), lambda: reads.mood(v, scope, window, moment)
        )
        return cached(request, doc)

    @app.get(f"{PREFIX}/history", response_model=HistoryOut, responses=ERRORS)
    def history(
        request: Request,
        asset: Asset = None,
        community: Community = "*",
        platform: Platform = "*",
        window: Window = "24h",
        step: Literal["1h", "1d"] = "1h",
        limit: Annotated[int, Query(ge=1, le=5000)] = 24,
        since: datetime | None = None,
        format: Format = "json",
    ) -> Response:
        """The stored readings of a scope, oldest first; ``format=csv`` for a CSV."""
        v = view()
        scope = v.scope(asset_of(v, asset), community, platform)
        start = when(v, since, "since")
        key = ("history", v.ctx.now, scope, window, step, limit, start)
        doc = remember(key, lambda: reads.history(v, scope, window, step, limit, start))
        if format == "csv":
            return cached(request, reads.history_csv(doc).encode(), "text/csv; charset=utf-8")
        return cached(request, doc)

    @app.get(f"{PREFIX}/fng", response_model=FngOut, responses=ERRORS)
    def fng(
        request: Request,
        asset: Annotated[str, Query(max_length=20)] = "BTC",
        limit: Annotated[int, Query(ge=0, le=100_000, description="days; 0 = all")] = 1,
        format: Format = "json",
        date_format: Literal["world", "us", "cn", "kr"] = "world",
    ) -> Response:
        """The asset's fear & greed composite (market + social) in alternative.me's `/fng/`
        shape: every value a string, newest first. Today's is market-v2 (``/fear``'s);
        earlier days market-v1 with that day's stored social mood."""
        v = view()
        symbol = known(v.ctx, asset_arg(asset, table))
        days, method, error = remember(
            ("fng", v.ctx.now, v.live, symbol, limit), lambda: reads.fng_days(v, symbol, limit)
        )
        days = days[:limit] if limit else days
        name = f"Fear and Greed Index (moodring {symbol}, market + social: {method})"
        headers = {"X-Moodring-Method": method}
        if format == "csv":
            text = fng_csv(name, days, date_format, error)
            return cached(request, text.encode(), "text/plain; charset=utf-8", headers)
        until = None
        if v.live:
            midnight = days[0].day if days else v.ctx.now
            until = int((midnight.timestamp() + 86_400) - v.ctx.now.timestamp())
        doc = fng_document(name, days, until, error)
        return cached(request, json.dumps(doc).encode(), headers=headers)

    @app.get(f"{PREFIX}/levels", response_model=LevelsOut, responses=ERRORS)
    def levels(request: Request, asset: Annotated[str, Query(max_length=20)] = "BTC") -> Response:
        """The nearest supports and resistances from daily candles."""
        v = view()
        symbol = known(v.ctx, asset_arg(asset, table))
        return cached(
            request, remember(("levels", v.ctx.now, symbol), lambda: reads.levels(v, symbol))
        )

    @app.get(f"{PREFIX}/alerts", response_model=AlertsOut, responses=ERRORS)
    def alerts(
        request: Request,
        asset: Asset = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 20,
    ) -> Response:
        """Alerts about all sources and about public sources only, newest first (30 days back
        unless ``since``)."""
        v = view()
        symbol = None if asset_of(v, asset) == "*" else asset_of(v, asset)
        start = when(v, since, "since")
        found = remember(
            ("alerts", v.ctx.now, symbol, start, limit),
            lambda: reads.alerts(v, symbol, start, limit),
        )
        return cached(request, AlertsOut(alerts=found))

    @app.get(f"{PREFIX}/health", response_model=HealthOut, responses=ERRORS)
    def health(request: Request) -> Response:
        """Whether the API answers, and as of when (live, or the newest stored message)."""
        v = view()
        newest = store.newest_message_time()
        doc = HealthOut(status="ok", live=v.live, as_of=v.ctx.now, newest_message=newest)
        return cached(request, doc)

    roles = RoleCache(moderator_check, monotonic)

    @app.get("/dashboard/{token}", include_in_schema=False)
    def dashboard(token: str) -> Response:
        """A moderator's dashboard of the one community their link names."""
        if config.links is None:
            return HTMLResponse(page.refusal(404, "The dashboard is not set up here"), 404)
        wall = clock()
        try:
            grant = config.links.check(token, wall)
            revoked = store.dashboard_revoked_at(grant.platform, grant.community, grant.user)
            if revoked is not None and grant.issued <= revoked:
                raise LinkRefused("this link was revoked")
            if roles.allowed(grant) is False:
                raise LinkRefused("you are no longer a moderator of this community")
        except LinkError as exc:
            headers = dict(page.SECURITY_HEADERS)
            return HTMLResponse(page.refusal(exc.status, str(exc)), exc.status, headers)
        now, _ = reads.as_of(store, wall)
        ctx = CommandContext(store=store, now=now, assets=table)
        body = page.render(dashboard_view(ctx, grant.platform, grant.community))
        return HTMLResponse(body, headers=dict(page.SECURITY_HEADERS))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        """The dashboard's vendored uPlot and its own script and style (a fixed list)."""
        kind = STATIC.get(name)
        if kind is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        data = (resources.files("bot.web") / "static" / name).read_bytes()
        return Response(data, media_type=kind, headers={"Cache-Control": "public, max-age=3600"})

    return app


#: Whether a link's user is still a moderator of its community: True, False, or None when
#: that cannot be told from here (the page is shown: the link's lifetime bounds it).
ModeratorCheck = Callable[[Grant], bool | None]
ROLE_CACHE_S = 60.0
STATIC = {
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


class RoleCache:
    """``check``'s answers, kept a minute per (platform, community, user): each page view
    re-checks the role, without one platform lookup per reload. Pages render in the server's
    thread pool, hence the lock."""

    def __init__(self, check: ModeratorCheck | None, monotonic: Callable[[], float]) -> None:
        self.check = check
        self._seen: TTLCache[tuple[str, str, str], bool | None] = TTLCache(
            maxsize=10_000, ttl=ROLE_CACHE_S, timer=monotonic
        )
        self._lock = threading.Lock()

    def allowed(self, grant: Grant) -> bool | None:
        if self.check is None:
            return None
        key = (grant.platform, grant.community, grant.user)
        with self._lock:
            hit = self._seen.get(key, _MISSING)
        if hit is not _MISSING:
            return cast(bool | None, hit)
        answer = self.check(grant)  # outside the lock: a slow platform holds up no one else
        with self._lock:
            self._seen[key] = answer
        return answer


def cached(
    request: Request,
    body: BaseModel | bytes,
    media_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Response:
    """The response with a strong ETag from its body and ``Cache-Control``; 304 without the
    body when the client's If-None-Match names that ETag."""
    data = body if isinstance(body, bytes) else body.model_dump_json().encode()
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    out = {"ETag": etag, "Cache-Control": CACHE_CONTROL, **(headers or {})}
    asked = request.headers.get("if-none-match", "")
    if any(tag.strip() in (etag, "*") for tag in asked.split(",")):
        return Response(status_code=304, headers=out)
    return Response(content=data, media_type=media_type, headers=out)
