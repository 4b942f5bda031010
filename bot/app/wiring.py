"""The composition root: the scorer, the pipeline and every connector built from one
`Settings` and wired together for `moodring run` and `demo`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.errors import ConfigError, ModelUnavailable
from bot.settings import Settings, config_file, shown_key

if TYPE_CHECKING:  # imported lazily, so `moodring --help` stays quick
    from bot.chat.digest import RoleLookup
    from bot.chat.inbox import ChatSource, QueueSource
    from bot.chat.links import DashboardLinks, Grant
    from bot.market.composite import MarketWeights
    from bot.pipeline.config import PipelineConfig
    from bot.pipeline.observer import Observer
    from bot.pipeline.runner import Pipeline
    from bot.pipeline.workers import Role, StageWorker
    from bot.store import Store
    from bot.web.app import ApiConfig
    from connectors.base import Sink, Source
    from connectors.types import Command
    from connectors.x import XSource
    from nlp.scorer import Scorer
    from nlp.types import Score

log = logging.getLogger("moodring")


def load_scorer(settings: Settings, threads: int | None = None, dedupe: bool = True) -> Scorer:
    """The shipped scorer (``threads``: the model's intra-op threads, default every core;
    ``dedupe`` off for evaluations, which score every text as it comes); nlp's load errors
    become one clear ModelUnavailable.

    Its cache of scores across calls is off: int8 scores move slightly with a text's
    batch-mates, so a repeated text served from one process's memory would score as in an
    earlier chunk, and the same message could score differently with the number of scoring
    workers, which of them took a chunk, or a restart (a scoring worker killed mid-stream
    once gave a BTC reading 33 where the one-process run gave 32). Each chunk scored on its
    own gives every message one score wherever and whenever it is scored; repeats within a
    call are still scored once."""
    from nlp.errors import ModelLoadError
    from nlp.scorer import Scorer

    try:
        return Scorer(
            settings.model_dir,
            device=settings.device,
            batch_size=settings.batch_size,
            cache_size=0,
            dedupe=dedupe,
            threads=threads,
        )
    except ModelLoadError as exc:
        raise ModelUnavailable(str(exc)) from exc


# ---------------------------------------------------------------------- demo / run


def pipeline_config(settings: Settings, **overrides: Any) -> PipelineConfig:
    from bot.pipeline.config import PipelineConfig

    given: dict[str, Any] = dict(
        tick_s=settings.tick_s,
        assets=tuple(settings.assets),
        min_asset_mentions=settings.min_asset_mentions,
        queue_size=max(1, settings.queue_size // 256),
        retention_days=settings.retention_days,
        alert_max_age_s=settings.alert_max_age_s,
        communities=frozenset(settings.communities),
        public_sources=tuple(settings.public_sources),
        alert_assets=tuple(settings.alert_assets),
        alert_min_authors=settings.alert_min_authors,
        max_held_rows=settings.max_held_rows,
        need_breadth=needs_breadth(settings),
        score_chunk=settings.score_chunk,
        delivery_s=settings.delivery_s,
        outbox_lease_s=settings.outbox_lease_s,
    )
    return PipelineConfig(**(given | overrides))


def dashboard_links(settings: Settings) -> DashboardLinks:
    """The signer of ``/dashboard``'s links: ``dashboard_secret``, or a secret generated
    into a 0600 file beside the config file (the cache folder without one), never the
    database."""
    from bot.chat.links import DashboardLinks, load_or_create_secret, secret_file
    from nlp.onnx_backend import cache_root

    if settings.dashboard_secret is not None:
        secret = settings.dashboard_secret.get_secret_value()
    else:
        secret = load_or_create_secret(secret_file(config_file(settings), cache_root()))
    return DashboardLinks(secret, settings.public_url, settings.dashboard_ttl_s)


def api_config(settings: Settings) -> ApiConfig:
    """The web app's settings (``moodring serve`` and ``run --serve`` alike)."""
    from bot.web.app import ApiConfig

    return ApiConfig(
        public_sources=tuple(settings.public_sources),
        trusted_proxies=tuple(settings.trusted_proxies),
        rate_per_minute=settings.api_rate_per_minute,
        links=dashboard_links(settings),
    )


def warn_unlisted(settings: Settings) -> None:
    """Say at start when a chat is on but no community is allow-listed (nothing is read)."""
    chats = settings.telegram_token is not None or settings.discord_token is not None
    if chats and not settings.communities:
        log.warning(
            "MOODRING_COMMUNITIES is empty: no group or server is read; add"
            ' "platform:id" entries (e.g. telegram:-1001234567890) to read them'
        )


def needs_breadth(settings: Settings) -> bool:
    """Whether all-sources extreme and hype alerts need breadth: the bot reads more than one
    community and not all of them are trusted public sources. One community's own voice, or
    the operator's chosen public sources, may speak alone."""
    public = set(settings.public_sources)
    untrusted = [
        c for c in settings.communities if c not in public and c.split(":")[0] not in public
    ]
    return len(settings.communities) > 1 and bool(untrusted)


def market_weights(settings: Settings) -> MarketWeights:
    """The composite's weights from the settings (unset ones keep the defaults).

    Raises:
        ConfigError: an unknown component or a bad weight.
    """
    from dataclasses import fields

    from bot.market.composite import MarketWeights

    known = {f.name for f in fields(MarketWeights)}
    unknown = sorted(set(settings.market_weights) - known)
    if unknown:
        raise ConfigError(
            # Shortened: a key is whatever was typed there, a pasted token included.
            f"MOODRING_MARKET_WEIGHTS: unknown {', '.join(map(shown_key, unknown))};"
            f" known: {', '.join(sorted(known))}"
        )
    try:
        return MarketWeights(**settings.market_weights)
    except ValueError as exc:
        raise ConfigError(f"MOODRING_MARKET_WEIGHTS: {exc}") from None


def build_pipeline(
    settings: Settings,
    store: Store,
    sinks: dict[str, Sink],
    config: PipelineConfig | None = None,
    observer: Observer | None = None,
) -> Pipeline:
    from bot.mood.spam import SpamConfig, SpamMarker
    from bot.pipeline.runner import Pipeline, Queues
    from nlp.assets import AssetTable
    from nlp.language import LanguageDetector

    config = config or pipeline_config(settings)
    # Publish the composite's weights, so /fear in any process reads it the same way.
    from bot.market.reads import save_weights

    save_weights(store, market_weights(settings), datetime.now(UTC))
    from bot.pipeline.status import save_communities

    save_communities(store, settings.communities, datetime.now(UTC))
    return Pipeline(
        store=store,
        scorer=load_scorer(settings),
        assets=AssetTable.load(),
        language=LanguageDetector(),
        spam=SpamMarker(SpamConfig()),
        sinks=sinks,
        queues=Queues.in_process(config.queue_size),
        config=config,
        observer=observer,
    )


class NoScorer:
    """The scorer of a stage worker that does not score: its model is never loaded."""

    def score(self, texts: Sequence[str]) -> list[Score]:
        raise RuntimeError("this worker does not score")


def build_worker(
    settings: Settings,
    store: Store,
    role: Role,
    sinks: dict[str, Sink],
    config: PipelineConfig | None = None,
    threads: int | None = None,
) -> StageWorker:
    """One stage's worker over the Redis Streams of ``settings.queue``: only a scoring
    worker loads the model; only the index worker gets the index lease."""
    from bot.market.reads import save_weights
    from bot.mood.spam import SpamConfig, SpamMarker
    from bot.pipeline.redis_queue import RedisQueueConfig, redis_queues
    from bot.pipeline.status import save_communities
    from bot.pipeline.workers import CommandsEngine, StageWorker
    from bot.store.lease import INDEX_KEY, Lease
    from nlp.assets import AssetTable
    from nlp.language import LanguageDetector

    if settings.queue is None:
        raise ConfigError("stage workers need MOODRING_QUEUE=redis://host:6379/0 (or --queue)")
    config = config or pipeline_config(settings)
    save_weights(store, market_weights(settings), datetime.now(UTC))
    save_communities(store, settings.communities, datetime.now(UTC))
    queues = redis_queues(
        settings.queue,
        settings.queue_prefix,
        RedisQueueConfig(
            max_backlog=config.queue_size,
            claim_idle_ms=int(settings.queue_claim_idle_s * 1000),
            # Ride out a Redis restart as long as the store rides out a database one.
            retry_s=settings.db_retry_s,
        ),
    )
    worker = StageWorker(
        store=store,
        scorer=load_scorer(settings, threads=threads) if role == "score" else NoScorer(),
        assets=AssetTable.load(),
        language=LanguageDetector(),
        spam=SpamMarker(SpamConfig()),
        sinks=sinks,
        queues=queues,
        config=config,
        # The index worker makes its own engine when it takes the lease; the others lend
        # one that holds nothing to commands, which then read the store.
        index=None if role == "index" else CommandsEngine(store, config),
    )
    worker.role = role
    if role == "index":
        worker.lease = Lease(str(settings.db), INDEX_KEY, "index worker")
    return worker


async def deliverer_sinks(settings: Settings, worker: StageWorker, sinks: dict[str, Sink]) -> None:
    """Run a delivery worker with its sinks: the console and, with their tokens, Telegram
    and Discord (the sinks alone: the one intake worker polls getUpdates and holds the Discord
    gateway; a deliverer only sends, over HTTP)."""
    async with AsyncExitStack() as stack:
        if settings.telegram_token is not None:
            from connectors.errors import SourceUnavailable
            from connectors.telegram import TelegramSink, login

            try:
                token = settings.telegram_token.get_secret_value()
                tg = await login(token, settings.telegram_api_url)
            except SourceUnavailable as exc:
                raise ConfigError(str(exc)) from None
            stack.push_async_callback(tg.shutdown)
            sinks["telegram"] = TelegramSink(tg)
        if settings.discord_token is not None:
            from connectors.discord import DiscordSink, rest_client
            from connectors.errors import SourceUnavailable

            try:
                client = await rest_client(settings.discord_token.get_secret_value())
            except SourceUnavailable as exc:
                raise ConfigError(str(exc)) from None
            stack.push_async_callback(client.close)
            sinks["discord"] = DiscordSink(client)
        await worker.run_until_signalled([])


async def queue_report(settings: Settings) -> str:
    """``moodring status``'s lines on the queues between the stage workers."""
    from bot.pipeline.codec import SCORE_CHUNKS, SCORED_CHUNKS, Codec
    from bot.pipeline.redis_queue import QueueUnavailable, RedisStreamQueue
    from bot.store.postgres import redact

    assert settings.queue is not None
    lines = [f"queues on {redact(settings.queue)}:"]
    codecs: dict[str, Codec[Any]] = {"to_score": SCORE_CHUNKS, "to_index": SCORED_CHUNKS}
    for name, codec in codecs.items():
        queue: RedisStreamQueue[Any] = RedisStreamQueue(
            settings.queue, name, codec, prefix=settings.queue_prefix
        )
        try:
            s = await queue.stats()
        except QueueUnavailable as exc:
            return f"queues: {exc}"
        finally:
            await queue.aclose()
        lines.append(
            f"  {name}: {s.backlog} waiting ({s.undelivered} undelivered, {s.pending} pending),"
            f" {s.dead_lettered} dead-lettered, {s.lost} lost"
        )
    return "\n".join(lines)


SHUTDOWN_GRACE_S = 3.0


async def serve(
    settings: Settings,
    store: Store,
    pipeline: Pipeline,
    sources: list[Source],
    sinks: dict[str, Sink],
    console: bool = False,
    web: tuple[str, int] | None = None,
) -> None:
    """Run the pipeline with every connector that is configured, side by side in this one
    event loop, each under the supervisor; say which are off and why. With ``web`` (host,
    port) the API and the dashboards are served too, their links re-checked against the
    platforms' live roles."""
    from bot.chat.inbox import console_roles

    observer = pipeline.observer
    if store.backend == "postgresql":
        # Shown in `moodring status` as the "database" connector: outages the store rode
        # out (it retries while the server is away), with the last reason.
        observer.on_source_start("database", datetime.now(UTC))
        store.on_outage = lambda reason: database_state(observer, reason)
    tasks: list[asyncio.Task[None]] = []
    # Each chat platform's live role lookup: the digests re-check their moderators with it.
    roles: dict[str, RoleLookup] = {"console": console_roles}
    async with AsyncExitStack() as stack:
        if settings.telegram_token is not None:
            sources.append(await _telegram(settings, store, pipeline, sinks, stack, tasks, roles))
        else:
            observer.on_source_off("telegram", "MOODRING_TELEGRAM_TOKEN is not set")
        if settings.discord_token is not None:
            sources.append(_discord(settings, store, pipeline, sinks, tasks, roles))
        else:
            observer.on_source_off("discord", "MOODRING_DISCORD_TOKEN is not set")
        if settings.x_bearer_token is not None:
            sources.append(_x(settings, store, pipeline))
        else:
            observer.on_source_off("x", "MOODRING_X_BEARER_TOKEN is not set (X is optional)")
        if settings.price_exchange is not None:
            tasks.append(await _prices(settings, store, pipeline, stack))
        else:
            observer.on_source_off("prices", "MOODRING_PRICE_EXCHANGE is not set")
        for exchange in settings.liquidation_exchanges:
            tasks.append(_liquidations(settings, store, pipeline, exchange))
        if not settings.liquidation_exchanges:
            observer.on_source_off(
                "liquidations", "MOODRING_LIQUIDATION_EXCHANGES is not set (binanceusdm, bybit)"
            )
        if settings.implied_vol:
            tasks.append(await _implied_vol(settings, store, pipeline, stack))
        if settings.quotes_api_key is not None:
            tasks.append(await _quotes(settings, store, pipeline, stack))
        else:
            observer.on_source_off(
                "quotes", "MOODRING_QUOTES_API_KEY is not set: bundled reference closes"
            )
        chats = settings.telegram_token is not None or settings.discord_token is not None
        warn_unlisted(settings)
        if (console or not chats) and sys.stdin is not None:  # None: stdin closed (<&-)
            from bot.chat.inbox import ConsoleSource

            sources.append(
                ConsoleSource(
                    sys.stdin.buffer,
                    sinks["console"],
                    store,
                    pipeline.stopping,
                    pipeline.index,
                    dashboard_links(settings),
                )
            )
            log.info("serving commands on the console: type /help (end of input stops it)")
        for h in observer.health_snapshot():
            if h.state == "off":
                log.info("connector %s off: %s", h.name, h.note)
        if web is not None:
            tasks.append(_web(settings, store, pipeline, roles, web))
        if tasks:
            from bot.chat.inbox import UntilStopped

            sources.append(UntilStopped(pipeline.stopping))
        from bot.chat.digest import send_due_digests

        pipeline.periodic.append(lambda now: send_due_digests(store, sinks, now, roles))
        from bot.chat.privacy import InboxRetention

        keep = timedelta(days=settings.inbox_retention_days)
        pipeline.periodic.append(InboxRetention(store, keep))
        from bot.pipeline.observer import StateLog

        pipeline.periodic.append(StateLog(lambda: state_sizes(pipeline, sources)))
        try:
            await pipeline.run_until_signalled(sources, live=True)
        finally:
            pipeline.stop()
            # Connectors stop at their next step; one stuck retrying an unreachable exchange
            # is cancelled after a grace period, so shutdown fits a container's stop timeout
            # (its work is keyed: the next start resumes from the store).
            if tasks:
                _, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
                for task in stuck:
                    task.cancel()
                # Failures were logged and counted by the supervisor as they happened.
                await asyncio.gather(*tasks, return_exceptions=True)
            await pipeline.save_health()


def live_moderator_check(
    roles: Mapping[str, RoleLookup], loop: asyncio.AbstractEventLoop, timeout_s: float = 10.0
) -> Callable[[Grant], bool | None]:
    """Whether a dashboard link's user is a moderator of its community *now*, asked of the
    platform with the same lookup its commands use. The page is rendered in the web server's
    thread pool, so the lookup runs on the bot's loop; None when it cannot be told (no lookup
    for the platform, or the platform does not answer): the link's lifetime bounds that."""
    from connectors.types import Command

    def check(grant: Grant) -> bool | None:
        lookup = roles.get(grant.platform)
        if lookup is None:
            return None
        cmd = Command(grant.platform, grant.community, grant.community, grant.user, "dashboard")

        async def ask() -> frozenset[str]:
            return await lookup(cmd)

        future = asyncio.run_coroutine_threadsafe(ask(), loop)
        try:
            held = future.result(timeout_s)
        except Exception as exc:  # any failure to ask: unknown, not refused
            future.cancel()  # a lookup that timed out must not pile up on the loop
            log.warning(
                "dashboard role check of %s on %s failed: %r", grant.user, grant.platform, exc
            )
            return None
        return "admin" in held

    return check


@contextlib.contextmanager
def platform_moderator_check(
    settings: Settings, login_timeout_s: float = 30.0, relogin_s: float = 60.0
) -> Iterator[Callable[[Grant], bool | None]]:
    """``live_moderator_check`` for a process with no chat connectors (``moodring serve``):
    logs in to each platform whose token is set over HTTP only (Telegram's ``getMe``, Discord
    without its gateway), both at once, and asks roles from an event loop in a thread of its
    own.

    A platform whose login fails or takes longer than ``login_timeout_s`` is left out with a
    warning: its links then cannot be re-checked (``None``, unknown) and their lifetime bounds
    them, as in an outage. It is tried again every ``relogin_s`` seconds until it answers, so
    an outage at start does not last until the next restart. The API is never held back by a
    chat platform.
    """
    from bot.chat.inbox import console_roles

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="moodring-roles", daemon=True)
    thread.start()
    stack = AsyncExitStack()

    async def telegram() -> RoleLookup:
        from connectors.telegram import TelegramRoles, login

        assert settings.telegram_token is not None
        tg = await login(settings.telegram_token.get_secret_value(), settings.telegram_api_url)
        stack.push_async_callback(tg.shutdown)
        return TelegramRoles(tg).check

    async def discord() -> RoleLookup:
        from connectors.discord import rest_client, rest_roles

        assert settings.discord_token is not None
        client = await rest_client(settings.discord_token.get_secret_value())
        stack.push_async_callback(client.close)
        admin_roles = settings.discord_admin_roles

        async def roles_of(command: Command) -> frozenset[str]:
            return await rest_roles(client, command, admin_roles)

        return roles_of

    async def open_lookups() -> dict[str, RoleLookup]:
        logins = {
            name: login
            for name, login, token in (
                ("telegram", telegram, settings.telegram_token),
                ("discord", discord, settings.discord_token),
            )
            if token is not None
        }
        results = await asyncio.gather(
            *(asyncio.wait_for(login(), login_timeout_s) for login in logins.values()),
            return_exceptions=True,
        )
        failed: dict[str, Callable[[], Awaitable[RoleLookup]]] = {}
        for name, result in zip(logins, results, strict=True):
            if isinstance(result, BaseException):
                # Any failure (a refused token, an outage, a timeout): the message never
                # holds the token (the connectors' logins mask it; see their docstrings).
                log.warning(
                    "dashboards: %s moderators cannot be re-checked (login failed: %s);"
                    " trying again every %.0f s",
                    name,
                    result if str(result) else type(result).__name__,
                    relogin_s,
                )
                failed[name] = logins[name]
            else:
                roles[name] = result
        if failed:
            retrying = asyncio.create_task(relogin(failed))
            stack.callback(retrying.cancel)
        return roles

    async def relogin(failed: dict[str, Callable[[], Awaitable[RoleLookup]]]) -> None:
        while failed:
            await asyncio.sleep(relogin_s)
            for name, login in list(failed.items()):
                try:
                    # The lookups' dict is read from the server's threads: one key set at a
                    # time is safe, and a view reads either no lookup (unknown) or this one.
                    roles[name] = await asyncio.wait_for(login(), login_timeout_s)
                except Exception as exc:
                    log.debug("dashboards: %s login failed again: %r", name, exc)
                else:
                    del failed[name]
                    log.info("dashboards: %s moderators are re-checked live again", name)

    roles: dict[str, RoleLookup] = {"console": console_roles}

    try:
        opening = asyncio.run_coroutine_threadsafe(open_lookups(), loop)
        try:
            opening.result(login_timeout_s + 5)
        except Exception:
            opening.cancel()
            raise
        log.info("dashboards: moderators re-checked live on %s", ", ".join(sorted(roles)))
        yield live_moderator_check(roles, loop)
    finally:
        closing = asyncio.run_coroutine_threadsafe(stack.aclose(), loop)
        with contextlib.suppress(Exception):  # shutting down: a failed logout changes nothing
            closing.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():  # else a stuck logout holds it; the daemon thread ends with us
            loop.close()


def _web(
    settings: Settings,
    store: Store,
    pipeline: Pipeline,
    roles: Mapping[str, RoleLookup],
    address: tuple[str, int],
) -> asyncio.Task[None]:
    """The API and the dashboards (``run --serve``) in the bot's own loop, until it stops."""
    import uvicorn

    from bot.web.app import create_app

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the bot's own handlers stop everything, this server included

    check = live_moderator_check(roles, asyncio.get_running_loop())
    app = create_app(store, api_config(settings), moderator_check=check)
    host, port = address
    server = _Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )

    async def run() -> None:
        serving = asyncio.create_task(server.serve())
        stopping = asyncio.create_task(pipeline.stopping.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        try:
            await serving
        except SystemExit:  # uvicorn exits when it cannot bind: say so, keep the bot running
            log.error("web: cannot listen on %s:%d (in use, or not an address here)", host, port)
            pipeline.observer.on_source_error("web", f"cannot listen on {host}:{port}")

    log.info(
        "serving the API and dashboards on http://%s:%d (links: %s)",
        host,
        port,
        settings.public_url,
    )
    return asyncio.create_task(run(), name="web")


def database_state(observer: Observer, reason: str | None) -> None:
    """Record a database outage (``reason``) or its end (None) as the "database" health."""
    if reason is None:
        observer.on_source_state("database", "running")
    else:
        observer.on_source_error("database", reason)
        observer.on_source_state("database", "backoff")


def state_sizes(pipeline: Pipeline, sources: Sequence[Source]) -> dict[str, int]:
    """The live bot's in-memory state sizes: the pipeline's, then each source's that reports
    any (chat fronts: rate limiter, titles, admin lists), named ``source.part``."""
    from bot.pipeline.observer import ReportsSizes

    sizes = pipeline.state_sizes()
    for source in sources:
        if isinstance(source, ReportsSizes):
            sizes |= {f"{source.name}.{k}": v for k, v in source.state_sizes().items()}
    return sizes


def _supervised(
    pipeline: Pipeline, name: str, start: Callable[[], Awaitable[None]]
) -> asyncio.Task[None]:
    """A connector's own task (a poller, a gateway client), restarted with backoff on failure
    while the others keep running."""
    return asyncio.create_task(pipeline.supervisor.supervise(name, start), name=name)


async def _telegram(
    settings: Settings,
    store: Store,
    pipeline: Pipeline,
    sinks: dict[str, Sink],
    stack: AsyncExitStack,
    tasks: list[asyncio.Task[None]],
    roles: dict[str, RoleLookup],
) -> ChatSource:
    from bot.chat.inbox import ChatSource
    from connectors.errors import SourceUnavailable
    from connectors.telegram import TelegramPoller, TelegramRoles, TelegramSink, login

    assert settings.telegram_token is not None  # serve starts Telegram only when it is set
    token = settings.telegram_token.get_secret_value()
    try:
        tg = await login(token, settings.telegram_api_url)  # getMe: fails fast on a bad token
    except SourceUnavailable as exc:  # one line, naming the URL asked, without the token
        raise ConfigError(str(exc)) from None
    stack.push_async_callback(tg.shutdown)
    log.info("connector telegram on as @%s", tg.username)
    sinks["telegram"] = TelegramSink(tg)
    poller = TelegramPoller(tg, store)
    tasks.append(
        _supervised(pipeline, "telegram:getUpdates", lambda: poller.run(pipeline.stopping))
    )
    admins = TelegramRoles(tg)  # admin lists cached a minute per chat
    roles["telegram"] = admins.check  # the digests': a failed lookup waits, not "no"
    return ChatSource(
        "telegram",
        poller,
        sinks["telegram"],
        store,
        admins,
        pipeline.stopping,
        operators=settings.operators,
        communities=frozenset(settings.communities),
        held=pipeline.index,
        links=dashboard_links(settings),
    )


def _x(settings: Settings, store: Store, pipeline: Pipeline) -> XSource:
    """X recent search as a pipeline source, its checkpoints and read meter in the store."""
    from bot.pipeline.feeds import StoreXState, XReadings
    from bot.pipeline.status import save_x_plan
    from connectors.x import XSource, build_client

    assert settings.x_bearer_token is not None  # serve starts X only when it is set
    now = datetime.now(UTC)
    save_x_plan(store, settings.x_monthly_read_cap, settings.x_price_per_read_usd, now)
    source = XSource(
        build_client(settings.x_bearer_token.get_secret_value()),
        settings.x_queries,
        StoreXState(store, settings.x_monthly_read_cap),
        poll_s=settings.x_poll_s,
        max_pages=settings.x_max_pages,
        stopping=pipeline.stopping,
    )

    pipeline.observer.add(XReadings(pipeline.observer, source))
    log.info("connector x on: %d queries every %.0fs", len(settings.x_queries), settings.x_poll_s)
    return source


async def _quotes(
    settings: Settings, store: Store, pipeline: Pipeline, stack: AsyncExitStack
) -> asyncio.Task[None]:
    """Reference assets' daily closes from the quote service, refreshed under the supervisor."""
    from bot.pipeline.feeds import refresh_quotes
    from connectors.quotes import StooqQuotes

    assert settings.quotes_api_key is not None  # serve starts quotes only when it is set
    quotes = StooqQuotes(settings.quotes_url, settings.quotes_api_key.get_secret_value())
    await stack.enter_async_context(quotes)
    log.info("connector quotes on: %s", "/".join(settings.quotes_symbols))

    def start() -> Awaitable[None]:
        return refresh_quotes(quotes, store, settings.quotes_symbols, pipeline.stopping)

    return _supervised(pipeline, "quotes", start)


def _liquidations(
    settings: Settings, store: Store, pipeline: Pipeline, exchange: str
) -> asyncio.Task[None]:
    """One exchange's liquidation stream, under the supervisor (a new connection each start;
    the stretch between is recorded as a gap)."""
    from bot.pipeline.feeds import LiquidationReadings, run_liquidations
    from connectors.liquidations import LiquidationFeed

    sensors: list[LiquidationReadings] = []

    async def start() -> None:
        feed = LiquidationFeed(
            exchange,
            settings.price_assets,
            settings.price_quote,
            ws_url=settings.liquidation_ws_url,
            rest_url=settings.liquidation_api_url,
        )
        for old in sensors:
            pipeline.observer.remove(old)
        sensors[:] = [LiquidationReadings(pipeline.observer, feed)]
        pipeline.observer.add(sensors[0])
        try:
            await run_liquidations(feed, store, pipeline.stopping)
        finally:
            await feed.close()

    log.info("connector liquidations on: %s %s", exchange, "/".join(settings.price_assets))
    return _supervised(pipeline, f"liquidations:{exchange}", start)


async def _implied_vol(
    settings: Settings, store: Store, pipeline: Pipeline, stack: AsyncExitStack
) -> asyncio.Task[None]:
    """Deribit's DVOL for BTC and ETH, read under the supervisor."""
    from bot.pipeline.feeds import run_implied_vol
    from connectors.volatility import VolatilityFeed

    feed = VolatilityFeed(settings.deribit_api_url)
    await stack.enter_async_context(feed)
    log.info("connector implied-vol on: deribit DVOL every %.0fs", settings.implied_vol_poll_s)

    def start() -> Awaitable[None]:
        return run_implied_vol(
            feed, store, settings.price_assets, pipeline.stopping, settings.implied_vol_poll_s
        )

    return _supervised(pipeline, "implied-vol", start)


async def _prices(
    settings: Settings, store: Store, pipeline: Pipeline, stack: AsyncExitStack
) -> asyncio.Task[None]:
    """Candles and tickers from the configured exchange, polled under the supervisor."""
    from bot.pipeline.feeds import PriceFeedReadings, run_prices
    from connectors.exchange import ExchangeFeed, build_exchange

    assert settings.price_exchange is not None  # serve starts prices only when it is set
    try:
        exchange = build_exchange(settings.price_exchange, settings.price_api_url)
    except ValueError as exc:
        raise ConfigError(f"MOODRING_PRICE_EXCHANGE: {exc}") from None
    feed = ExchangeFeed(exchange, quote=settings.price_quote)
    await stack.enter_async_context(feed)
    log.info(
        "connector prices on: %s %s every %.0fs",
        settings.price_exchange,
        "/".join(settings.price_assets),
        settings.price_poll_s,
    )

    def start() -> Awaitable[None]:
        return run_prices(
            feed, store, settings.price_assets, pipeline.stopping, settings.price_poll_s
        )

    pipeline.observer.add(PriceFeedReadings(pipeline.observer, feed))
    return _supervised(pipeline, "prices", start)


def _discord(
    settings: Settings,
    store: Store,
    pipeline: Pipeline,
    sinks: dict[str, Sink],
    tasks: list[asyncio.Task[None]],
    roles: dict[str, RoleLookup],
) -> QueueSource:
    from bot.chat.inbox import discord_front
    from connectors.discord import DiscordSink

    connector, source = discord_front(
        store,
        pipeline.stopping,
        settings.discord_channel_ids,
        settings.discord_admin_roles,
        operators=settings.operators,
        communities=frozenset(settings.communities),
        held=pipeline.index,
        shards=settings.discord_shards,
        links=dashboard_links(settings),
    )
    roles["discord"] = connector.roles_of
    sinks["discord"] = DiscordSink(connector.client)
    assert settings.discord_token is not None  # serve starts Discord only when it is set
    token = settings.discord_token.get_secret_value()
    tasks.append(
        _supervised(pipeline, "discord:gateway", lambda: connector.run(token, pipeline.stopping))
    )
    log.info("connector discord starting")
    return source
