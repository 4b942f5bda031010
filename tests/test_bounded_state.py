"""Bounded state, counted and not timed (#14): after tens of thousands of operations with
distinct keys, every piece of long-lived in-memory state of the running bot stays under its
configured bound. The rate limiter, the admin-list and title caches, the spam marker, the
scorer's cache, the index engine's histories and baselines, delivery's backoff, the queues,
the chat inbox and the health board are driven through their real objects; only the network
(Telegram's Bot API) is faked. Also: the live run's periodic "state sizes" log line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.app.wiring import state_sizes
from bot.chat.inbox import ChatSource, CommunityTitles, ConsoleSource, QueueSource, RateLimiter
from bot.chat.privacy import InboxRetention
from bot.mood.spam import SpamConfig, SpamMarker
from bot.pipeline.config import LOOKBACK, PipelineConfig
from bot.pipeline.observer import Observer, StateLog, state_line
from bot.pipeline.queue import InProcessQueue
from bot.pipeline.ticks import IndexEngine
from bot.store import Store, StoredMessage
from bot.types import Alert, Scope
from connectors.errors import DeliveryError
from connectors.telegram import TelegramPoller, TelegramRoles, build_bot
from connectors.types import Command, Message
from nlp.normalize import normalize
from nlp.scorer import Scorer
from nlp.types import Score
from tests.doubles import FlakySink
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.test_pipeline_e2e import make_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

T0 = datetime(2024, 3, 1, tzinfo=UTC)
SCORE = Score(0.7, 0.2, 0.1, "negative", "test")
# Deterministic and quick in CI: the counted loops carry the load, hypothesis the shapes.
SHAPES = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def word(n: int) -> str:
    """A distinct lowercase word for every ``n`` (bijective base 26): distinct texts that
    survive normalisation, unlike digits."""
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(97 + r) + out
    return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "moodring.db")
    yield s
    s.close()


def command(user: int, chat: int, name: str = "mood") -> Command:
    return Command(
        platform="telegram",
        community=str(chat),
        channel=str(chat),
        user=str(user),
        name=name,
        args=(),
        roles=frozenset(),
        is_private=chat > 0,
    )


# ---------------------------------------------------------------------- the rate limiter


def test_the_rate_limiter_holds_at_most_max_keys_under_a_flood_of_new_users() -> None:
    limiter = RateLimiter(max_keys=1_000)
    held = 0
    for i in range(200_000):  # a thousand new accounts a second, each in its own DM
        assert limiter.allow(command(i, i + 1), now=i / 1_000)
        held = max(held, len(limiter))
    assert held <= 1_000


def test_the_rate_limiter_forgets_idle_keys_by_time() -> None:
    limiter = RateLimiter(window_s=60.0)  # the default bound, 100,000, is never reached here
    held = 0
    for i in range(100_000):  # ten new users a second for 10,000 s, over three chats
        limiter.allow(command(i, -100 - i % 3), now=i / 10)
        held = max(held, len(limiter))
    # Only the users of the last window (600) and the chats remain, give or take the edge.
    assert held <= 600 + 3 + 1
    assert limiter.keys_held(now=100_000 / 10 + 61) == 0


def test_one_user_hammering_keeps_one_short_history() -> None:
    limiter = RateLimiter(per_user=5, per_chat=20)
    allowed = sum(limiter.allow(command(7, -100), now=1_000.0 + i / 1e6) for i in range(50_000))
    assert allowed == 5
    assert len(limiter) == 2  # the user and the chat
    # Refused commands are not remembered: each key holds at most its limit of hits.
    assert max(len(hits) for hits in limiter._hits.values()) <= 5


@SHAPES
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 5), st.floats(0, 30)),
        min_size=1,
        max_size=300,
    ),
    st.integers(1, 60),
)
def test_the_rate_limiter_stays_bounded_and_within_limits(
    ops: list[tuple[int, int, float]], max_keys: int
) -> None:
    limiter = RateLimiter(per_user=3, per_chat=6, window_s=10.0, max_keys=max_keys)
    now = 0.0
    allowed: dict[int, list[float]] = {}
    for user, chat, dt in ops:
        now += dt
        if limiter.allow(command(user, -100 - chat), now):
            allowed.setdefault(user, []).append(now)
        assert len(limiter) <= max_keys
    # Forgetting early (over max_keys) may let a user in again, never more than the limit
    # while their key is held; with room for every key the limit holds over any window.
    if max_keys >= 41 + 6:
        for times in allowed.values():
            for i, t in enumerate(times):
                assert sum(1 for u in times[i:] if u < t + 10.0) <= 3


# ---------------------------------------------------------------------- caches of chat fronts


@dataclass(frozen=True)
class _User:
    id: int


@dataclass(frozen=True)
class _Member:
    user: _User


class AdminsBot:
    """Telegram's getChatAdministrators at the network boundary: every group has one admin,
    user 1; counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def get_chat_administrators(self, chat: int | str) -> list[_Member]:
        self.calls += 1
        return [_Member(_User(1))]


def test_the_admin_list_cache_holds_at_most_max_chats() -> None:
    clock = [0.0]
    bot = AdminsBot()
    roles = TelegramRoles(bot, ttl_s=60.0, max_chats=500, timer=lambda: clock[0])  # type: ignore[arg-type]

    async def flood() -> int:
        held = 0
        for i in range(50_000):  # a new group every command, none of them idle yet
            clock[0] = i / 1_000
            assert await roles.is_admin(str(-1_000_000 - i), "1")
            held = max(held, len(roles))
        return held

    assert asyncio.run(flood()) <= 500
    assert bot.calls == 50_000


def test_the_admin_list_cache_forgets_chats_after_their_ttl() -> None:
    clock = [0.0]
    bot = AdminsBot()
    roles = TelegramRoles(bot, ttl_s=60.0, timer=lambda: clock[0])  # type: ignore[arg-type]

    async def flood() -> int:
        held = 0
        for i in range(30_000):  # ten new groups a second, plus one busy group
            clock[0] = i / 10
            await roles.is_admin(str(-1_000_000 - i), "2")
            await roles.is_admin("-42", "1")
            held = max(held, len(roles))
        return held

    assert asyncio.run(flood()) <= 600 + 1 + 1
    assert bot.calls < 30_000 + 30_000 // 600 + 2  # the busy group is asked once a minute


def test_community_titles_remember_at_most_max_communities(store: Store) -> None:
    titles = CommunityTitles(store, max_communities=256)
    held = 0
    for i in range(6_000):
        event = Message(
            "telegram", str(-100 - i), str(-100 - i), "1", "a", "x", T0, community_title=word(i)
        )
        titles.note(event)
        held = max(held, len(titles))
    assert held <= 256
    assert store.community_title("telegram", str(-100 - 5_999)) == word(5_999)


# ---------------------------------------------------------------------- the spam marker


def chatter(i: int, author: str | None = None, at: datetime | None = None) -> Message:
    """Post ``i``: half long enough for near-duplicate checks, half short; distinct texts."""
    text = " ".join(word(i * 8 + j) for j in range(8)) if i % 2 else f"gm {word(i)}"
    return Message(
        "telegram",
        "-100",
        "-100",
        str(i),
        author if author is not None else f"u{i}",
        text,
        at or T0 + timedelta(milliseconds=20 * i),  # 50 posts a second
    )


def test_the_spam_marker_keeps_at_most_max_kept_under_a_flood() -> None:
    marker = SpamMarker(SpamConfig())  # the live bot's: max_kept 5,000
    bound = SpamConfig().max_kept
    for i in range(40_000):  # 800 s of 50 posts a second, each by a new account
        message = chatter(i)
        marker.check(message, normalize(message.text))
        if i % 97 == 0:
            assert max(marker.sizes().values()) <= bound
    assert marker.sizes() == {"kept": bound, "texts": bound, "authors": bound}


def test_the_spam_marker_forgets_by_time_below_its_bound() -> None:
    config = SpamConfig()
    marker = SpamMarker(config)
    for i in range(3_000):  # one post a minute: the 6-hour text window holds 360 of them
        message = chatter(i, at=T0 + timedelta(minutes=i))
        marker.check(message, normalize(message.text))
    sizes = marker.sizes()
    assert sizes["kept"] <= 6 * 60 + 1 and sizes["texts"] <= 6 * 60 + 1
    assert sizes["authors"] <= 60 + 1  # the 1-hour cap window


@SHAPES
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 60), st.floats(0, 4000)),
        min_size=1,
        max_size=150,
    ),
    st.integers(1, 20),
)
@example(ops=[(1, 0, 0.0)] * 30, max_kept=1)  # one author repeating one text
def test_the_spam_marker_stays_bounded_for_any_stream(
    ops: list[tuple[int, int, float]], max_kept: int
) -> None:
    marker = SpamMarker(SpamConfig(max_kept=max_kept))
    at = T0
    for n, (author, text, dt) in enumerate(ops):
        at += timedelta(seconds=dt)
        message = chatter(text, author=f"u{author}" if author else "", at=at)
        message = dataclasses.replace(message, message_id=str(n))  # a repeat is a new post
        marker.check(message, normalize(message.text))
        assert max(marker.sizes().values()) <= max_kept


# ---------------------------------------------------------------------- the scorer's cache


def test_the_scorer_cache_holds_at_most_cache_size(tiny_model_dir: Path) -> None:
    scorer = Scorer(tiny_model_dir, cache_size=128, backend="torch")
    held = 0
    for call in range(24):  # 6,144 distinct texts, with repeats inside each call
        texts = [f"$btc {word(call * 200 + i)} pump" for i in range(256)]
        scores = scorer.score(texts + texts[:16])
        assert len(scores) == 256 + 16
        held = max(held, scorer.cached)
    assert held == 128


# ---------------------------------------------------------------------- the index engine


def post_day(store: Store, day: int) -> None:
    """Three scored posts on ``day`` about a cashtag seen on no other day."""
    at = T0 + timedelta(days=day, hours=12)
    asset = f"Q{word(day).upper()}"
    items = [
        StoredMessage(
            Message("replay", "c", "ch", f"{day}-{i}", f"a{i}", f"${asset} ok", at),
            f"${asset.lower()} ok",
            (asset,),
            None,
            None,
        )
        for i in range(3)
    ]
    store.add_messages(items, at)
    keys = [(m.message.platform, m.message.channel, m.message.message_id) for m in items]
    store.save_scores([(k, SCORE) for k in keys], at)


def test_the_index_engine_holds_bounded_histories_baselines_and_rows(store: Store) -> None:
    # Daily ticks, so 200 days cost 200 ticks; every cashtag is busy (one mention).
    config = PipelineConfig(tick_s=86_400, assets=(), min_asset_mentions=1)
    engine = IndexEngine(store, config, max_history=16, max_baselines=16)
    held = {"rows": 0, "history": 0, "baselines": 0, "evaluated": 0}
    days = 200
    for day in range(days):
        post_day(store, day)
        until = T0 + timedelta(days=day, hours=13)
        engine.load(until)
        engine.advance(until)
        sizes = engine.sizes()
        held = {k: max(v, sizes[k]) for k, v in held.items()}
        assert sizes["due_minutes"] == 0  # every minute up to ``until`` was evaluated
    # 200 cashtags × 3 windows of history, and 200 hours of baselines, went through.
    assert held["history"] <= 16 and held["baselines"] <= 16 and held["evaluated"] <= 16
    # Rows are held for the LOOKBACK before the last tick (and the last day's).
    assert held["rows"] <= 3 * (LOOKBACK.days + 2)
    # The day before's cashtag was read by the last tick (the last day's, by none yet).
    assert len(store.readings(Scope(asset=f"Q{word(days - 2).upper()}"), "24h", T0, until)) == 1


def test_an_evicted_history_is_read_back_as_it_was(tmp_path: Path) -> None:
    """A history dropped for the bound is read back from the stored readings: the rules see
    what an unbounded engine holds."""
    config = PipelineConfig(tick_s=3600, assets=(), min_asset_mentions=1)
    now = T0 + timedelta(days=1)
    held = []
    for name, bound in (("small", 2), ("large", 4096)):
        store = Store(tmp_path / f"{name}.db")
        try:
            engine = IndexEngine(store, config, max_history=bound)
            post_day(store, 0)
            engine.load(now)
            engine.advance(now)  # 12 ticks; all and the cashtag; 1h, 24h and (at 0:00) 7d
            assert engine.sizes()["history"] == min(bound, 6)
            # The all-sources 24h history was evicted from the small engine.
            history = engine._history_of(Scope(), "24h", now)
            held.append([(r.at, r.value, r.sample_size) for r in history])
        finally:
            store.close()
    assert held[0] == held[1] and len(held[0]) == 12


# ---------------------------------------------------------------------- delivery's backoff


class NoScorer:
    def score(self, texts: Sequence[str]) -> list[Score]:
        raise AssertionError("nothing is scored here")


def test_delivery_forgets_the_backoff_of_targets_with_nothing_waiting(store: Store) -> None:
    """Regression: ``_retry_at`` was never cleared, so every target that ever failed (and
    every subscriber, over months) stayed in memory for the rest of the run."""
    sink = FlakySink()
    pipeline = make_pipeline(store, NoScorer(), {"chat": sink}, alert_max_age_s=3600.0)  # type: ignore[arg-type]
    now = T0
    held = 0
    for wave in range(10):  # ten waves of 200 new targets each, every send failing
        targets = [("chat", f"user-{wave}-{i}") for i in range(200)]
        alert = Alert(f"k{wave}", "extreme-fear", Scope(asset="BTC"), now, "t")
        store.save_tick([], [alert], {}, lambda a, t=targets: t, ("t", str(wave)), now)
        sink.failures = [DeliveryError("down") for _ in range(10_000)]
        for _ in range(3):  # sent (failing), then abandoned as too old, then nothing waits
            asyncio.run(pipeline.deliver(now))
            held = max(held, pipeline.backoff_held())
            now += timedelta(hours=2)
    assert held <= 200
    assert pipeline.backoff_held() == 0


def test_delivery_keeps_backoff_while_rows_wait(store: Store) -> None:
    sink = FlakySink([DeliveryError("down")])
    pipeline = make_pipeline(store, NoScorer(), {"chat": sink})  # type: ignore[arg-type]
    alert = Alert("k", "extreme-fear", Scope(asset="BTC"), T0, "t")
    store.save_tick([], [alert], {}, lambda a: [("chat", "x")], ("t", "1"), T0)
    assert asyncio.run(pipeline.deliver(T0)) == 0
    assert asyncio.run(pipeline.deliver(T0 + timedelta(seconds=1))) == 0  # backing off
    assert pipeline.backoff_held() == 1
    assert asyncio.run(pipeline.deliver(T0 + timedelta(seconds=6))) == 1
    assert asyncio.run(pipeline.deliver(T0 + timedelta(seconds=7))) == 0
    assert pipeline.backoff_held() == 0


# ---------------------------------------------------------------------- queues


def test_the_in_process_queue_blocks_at_its_bound_and_keeps_no_acked_tags() -> None:
    async def drive() -> None:
        queue: InProcessQueue[int] = InProcessQueue(maxsize=8)
        for i in range(50_000):  # put, get, ack: nothing piles up
            await queue.put(i)
            received = await queue.get()
            await queue.ack(received)
            assert queue.qsize() == 0 and queue.unacked == 0
        for i in range(8):
            await queue.put(i)
        blocked = asyncio.ensure_future(queue.put(8))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not blocked.done() and queue.qsize() == 8  # the ninth waits: backpressure
        await queue.ack(await queue.get())
        await blocked
        assert queue.qsize() == 8

    asyncio.run(drive())


def test_the_discord_queue_source_blocks_at_its_bound() -> None:
    async def drive() -> None:
        stopping = asyncio.Event()
        source = QueueSource("discord", stopping, maxsize=16)
        stream = source.messages().__aiter__()
        most = 0
        for i in range(20_000):
            await source.put(chatter(i))
            most = max(most, source.qsize())
            if i % 10 == 9:  # intake takes ten at a time
                for _ in range(10):
                    await stream.__anext__()
        assert most <= 10
        for i in range(16):
            await source.put(chatter(i))
        blocked = asyncio.ensure_future(source.put(chatter(16)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not blocked.done() and source.qsize() == 16
        await stream.__anext__()
        await blocked
        stopping.set()
        await stream.aclose()

    asyncio.run(drive())


# ---------------------------------------------------------------------- the chat inbox


def group_post(update_id: int) -> str:
    return json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "from": {"id": 1000 + update_id % 500, "is_bot": False, "first_name": "u"},
                "chat": {"id": -100, "title": "Crypto Talk", "type": "supergroup"},
                "date": int(T0.timestamp()) + update_id,
                "text": f"gm {word(update_id)}",
            },
        }
    )


def test_the_chat_inbox_keeps_no_payload_past_retention(store: Store) -> None:
    """Updates stored, read by the chat source, stored by "intake" (acked in batches, as
    intake does), then purged: in flight stays within a batch, nothing is left pending,
    and no processed payload outlives the retention."""
    n, batch = 6_000, 256
    for first in range(0, n, 100):
        updates = [(u, group_post(u)) for u in range(first, first + 100)]
        store.save_updates("telegram", updates, first + 100, T0)
    fake = FakeTelegram()
    fake.start()
    try:

        async def drive() -> int:
            async with build_bot(TOKEN, fake.base_url) as tg:
                stopping = asyncio.Event()
                source = ChatSource(
                    "telegram",
                    TelegramPoller(tg, store),
                    FlakySink(),
                    store,
                    TelegramRoles(tg),
                    stopping,
                    idle_s=0.0,
                )
                held, got, seen = 0, [], 0
                async for message in source.messages():
                    got.append(message)
                    seen += 1
                    if len(got) == batch or seen == n:
                        source.ack(got)  # stored: the inbox rows are marked done
                        got = []
                    held = max(held, source.state_sizes()["in_flight"])
                    if seen == n:
                        break
                assert source.state_sizes()["in_flight"] == 0
                return held

        held = asyncio.run(drive())
    finally:
        fake.stop()
    assert held <= batch
    assert store.pending_updates("telegram", 10) == []  # every update handled
    retention = InboxRetention(store, keep=timedelta(days=2))
    assert asyncio.run(retention(datetime.now(UTC))) == 0  # processed just now: kept
    later = datetime.now(UTC) + timedelta(days=3)
    assert asyncio.run(retention(later)) == n
    [[payloads]] = store.query("SELECT COUNT(*) FROM chat_inbox WHERE payload IS NOT NULL")
    assert payloads == 0


# ---------------------------------------------------------------------- the health board


def test_the_health_board_holds_one_entry_per_connector() -> None:
    observer = Observer(clock=lambda: T0)
    names = ["telegram", "telegram:getUpdates", "discord", "x", "prices", "replay:a.csv"]
    for i in range(100_000):
        name = names[i % len(names)]
        observer.on_messages(name, 1, T0)
        if i % 1_000 == 0:
            observer.on_source_error(name, f"error {i}")
            observer.on_reading(name, reads=i, note=f"note {i}")
    board = observer.health_snapshot()
    assert len(board) == len(names)
    assert sum(h.messages for h in board) == 100_000


# ---------------------------------------------------------------------- the "state sizes" log


def test_the_state_log_writes_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    sizes = {"index_rows": 3, "telegram.limiter": 2}
    job = StateLog(lambda: sizes, every=timedelta(minutes=1))
    caplog.set_level(logging.INFO, logger="bot.pipeline.observer")
    due = [T0 + timedelta(seconds=s) for s in (0, 30, 59, 60, 90, 121)]
    logged = [asyncio.run(job(now)) for now in due]
    assert logged == [sizes, None, None, sizes, None, sizes]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("state sizes")]
    assert lines == ["state sizes: index_rows=3 telegram.limiter=2"] * 3
    assert state_line({}) == ""


def test_state_sizes_cover_the_pipeline_and_the_chat_fronts(store: Store) -> None:
    pipeline = make_pipeline(store, NoScorer(), {})  # type: ignore[arg-type]
    stopping = asyncio.Event()
    chat = ChatSource(
        "telegram",
        TelegramPoller(None, store),  # type: ignore[arg-type]  # never polled here
        FlakySink(),
        store,
        TelegramRoles(AdminsBot()),  # type: ignore[arg-type]
        stopping,
    )
    chat.limiter.allow(command(5, -100), now=1.0)
    console = ConsoleSource(None, FlakySink(), store, stopping)  # type: ignore[arg-type]
    discord = QueueSource("discord", stopping, limiter=RateLimiter())
    sizes = state_sizes(pipeline, [chat, console, discord])
    assert sizes["telegram.limiter"] == 2  # the user and the chat
    assert sizes["telegram.roles"] == 0 and sizes["telegram.in_flight"] == 0
    assert sizes["console.limiter"] == 0 and sizes["discord.queue"] == 0
    assert {"index_rows", "index_history", "spam_kept", "to_score", "backoff", "health"} <= set(
        sizes
    )


BULL = Score(0.1, 0.2, 0.7, "positive", "moodring-v2")


def feed(
    store: Store,
    engine: IndexEngine,
    days: int,
    per_day: int,
    first: int = 0,
    authors: int = 50,
    spread_s: int = 86_400,
) -> list[Message]:
    """Stored and scored chat messages, ``per_day`` spread over ``spread_s`` of each day
    (every minute with a message is an alert evaluation), read by the engine
    from the store (fresh string objects for every field, as SQLite returns them) and ticked
    through that day; texts a hundred characters long."""
    sent = []
    for day in range(first, first + days):
        batch = [
            Message(
                "telegram",
                f"-100{i % 3}",
                f"-100{i % 3}",
                str(day * per_day + i),
                f"user{i % authors}",
                f"$BTC {word(day * per_day + i)} holding the range, bids under sixty".ljust(
                    100, "."
                ),
                T0 + timedelta(days=day, seconds=spread_s * i // per_day),
            )
            for i in range(per_day)
        ]
        at = batch[-1].created_at
        store.add_messages(
            [StoredMessage(m, m.text.lower(), ("BTC",), None, None) for m in batch], at
        )
        keys = [(m.platform, m.channel, m.message_id) for m in batch]
        store.save_scores([(k, BULL if i % 2 else SCORE) for i, k in enumerate(keys)], at)
        until = T0 + timedelta(days=day + 1)
        engine.load(until)
        engine.advance(until)
        sent += batch
    return sent


def test_the_index_engine_holds_text_only_for_the_alert_window(store: Store) -> None:
    """Messages past the alert window (24h, and a tick spare) are held without their text:
    only alert evidence quotes, and only from its window."""
    config = PipelineConfig(tick_s=3600, assets=("BTC",))
    engine = IndexEngine(store, config)
    sent = feed(store, engine, 4, 240)
    cut = T0 + timedelta(days=4) - timedelta(hours=25)
    recent = [m for m in sent if m.created_at > cut]
    assert engine.sizes()["rows"] == len(sent)
    assert engine.sizes()["texts"] == len(recent) < len(sent) / 3
    assert all(p.text for p in engine._points if p.created_at > cut)
    assert not any(p.text for p in engine._points if p.created_at <= cut)
    # A late message older than the cut arrives without text, inside the slim prefix.
    late = replace(engine._points[0], message_key="late")
    row = next(iter(store.scored_since(T0, T0 + timedelta(hours=1))))
    engine.add([replace(row, key="late", created_at=late.created_at)])
    assert engine.sizes()["texts"] == len(recent)
    assert next(p for p in engine._points if p.message_key == "late").text == ""


def test_the_index_engine_holds_at_most_max_held_rows(tmp_path: Path) -> None:
    """Past ``max_held_rows`` the oldest messages are let go, and the 7d baseline counts
    only windows wholly after the oldest held (never a quiet one made by the cap)."""
    readings = {}
    for cap in (10**6, 1000):
        config = PipelineConfig(tick_s=86_400, assets=("BTC",), max_held_rows=cap)
        own = Store(tmp_path / f"cap{cap}.db")
        engine = IndexEngine(own, config)
        feed(own, engine, 30, 100)
        sizes = engine.sizes()
        readings[cap] = own.readings(Scope(), "7d", T0, T0 + timedelta(days=31))[-1]
        own.close()
        if cap == 1000:
            assert sizes["rows"] <= 1000 and engine.evicted == 3000 - sizes["rows"]
            assert engine.held_from is not None and engine.covered() == engine.held_from
    assert readings[10**6].components["baseline_windows"] == 3  # day 30: 4 weeks back, 3 whole
    assert readings[1000].components["baseline_windows"] == 0  # 10 days held: none whole


def test_a_held_message_costs_under_600_bytes(store: Store) -> None:
    """Counted with tracemalloc: held for 36 days, messages are the index's largest state.
    The chat id, platform, model id, author and assets are shared, and texts older than the
    alert window let go (about 920 bytes a message before, 470 after, a quarter with text)."""
    import tracemalloc

    config = PipelineConfig(tick_s=86_400, assets=("BTC",))
    engine = IndexEngine(store, config)
    feed(store, engine, 1, 100, spread_s=600)  # warm: the tick, the histories, the caches
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        feed(store, engine, 4, 2000, first=1, authors=500, spread_s=600)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert engine.sizes()["rows"] == 8_100
    assert held / 8_000 < 600, f"{held / 8_000:.0f} bytes per held message"
