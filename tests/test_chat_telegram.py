"""End to end on Telegram: group messages in through the real PTB client and the fake Bot
API, scored and stored once; commands answered in plain text; alerts delivered to a
subscriber once; a restart loses and repeats nothing."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.chat.charts import png_size
from bot.chat.inbox import ChatSource, RateLimiter
from bot.store import Store
from connectors.telegram import (
    TelegramPoller,
    TelegramRoles,
    TelegramSink,
    build_bot,
    roles_for,
)
from connectors.types import Command, Message
from nlp.scorer import Scorer
from tests.conftest import synthetic_text
from tests.doubles import RecordingSink
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.test_pipeline_e2e import make_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
GROUP = -1001234567890
ADMIN = 42


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram()
    server.admins[GROUP] = [ADMIN]
    server.start()
    yield server
    server.stop()


def group_update(update_id: int, text: str, user_id: int, at: datetime) -> dict:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": {"id": user_id, "is_bot": False, "first_name": f"u{user_id}"},
            "chat": {"id": GROUP, "title": "Crypto Talk", "type": "supergroup"},
            "date": int(at.timestamp()),
            "text": text,
            **(
                {"entities": [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]}
                if text.startswith("/")
                else {}
            ),
        },
    }


async def serve_until(store: Store, fake: FakeTelegram, model: Path, done, timeout: float = 30):
    """Run the real pipeline + Telegram front end until ``done()`` or the timeout."""
    tg = build_bot(TOKEN, fake.base_url)
    await tg.initialize()
    sink = TelegramSink(tg)
    pipeline = make_pipeline(store, Scorer(model, cache_size=0), {"telegram": sink}, flush_s=0.1)
    poller = TelegramPoller(tg, store, timeout=0)
    chat = ChatSource(
        "telegram",
        poller,
        sink,
        store,
        lambda cmd: roles_for(tg, cmd),
        pipeline.stopping,
        limiter=RateLimiter(per_user=3, per_chat=50),
        idle_s=0.05,
    )
    poll = asyncio.create_task(poller.run(pipeline.stopping))
    run = asyncio.create_task(pipeline.run([chat], live=True))
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    pipeline.stop()
    await asyncio.gather(run, poll)
    await tg.shutdown()
    return pipeline.observer.counters


def sent_texts(fake: FakeTelegram) -> list[str]:
    return [c.params["text"] for c in fake.requests("sendMessage")]


def test_group_chat_end_to_end(tmp_path: Path, fake: FakeTelegram, tiny_model_dir: Path) -> None:
    rng = random.Random(5)
    now = datetime.now(UTC).replace(microsecond=0)
    store = Store(tmp_path / "tg.db")
    # An admin subscribes the group to alerts; then a calm day and panicking last hours.
    fake.queue_update(group_update(1, "/subscribe", ADMIN, now - timedelta(hours=31)))
    n = 1
    for k in range(160):
        at = now - timedelta(hours=30) + timedelta(minutes=11 * k)
        mood = "negative" if at > now - timedelta(hours=8) else rng.choice(["positive", "neutral"])
        n += 1
        fake.queue_update(group_update(n, synthetic_text(rng, mood), 1000 + rng.randrange(40), at))
    nasty = "*bold* <b>x</b> @everyone [link](http://evil.example)"
    fake.queue_update(group_update(n + 1, nasty, 1001, now))
    n += 1
    messages = n - 1  # every update but the /subscribe

    def alerted() -> bool:
        return any("Extreme Fear" in t for t in sent_texts(fake))

    asyncio.run(serve_until(store, fake, tiny_model_dir, alerted))
    stored = store.query("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM messages")
    assert stored == [(messages, messages)]  # the command was answered, not scored
    assert store.query("SELECT COUNT(*) FROM scores") == [(messages,)]
    assert store.query("SELECT COUNT(*) FROM chat_inbox WHERE done_at IS NULL") == [(0,)]
    alerts = [c for c in fake.requests("sendMessage") if "Extreme Fear" in c.params["text"]]
    assert len(alerts) >= 1 and all(c.params["chat_id"] == str(GROUP) for c in alerts)
    assert len({c.params["text"] for c in alerts}) == len(alerts)  # each alert once

    # Commands: a member asks for the mood; a member and an admin subscribe in the group.
    before = len(fake.requests("sendMessage"))
    fake.queue_update(group_update(n + 1, "/mood", 1005, now))
    fake.queue_update(group_update(n + 2, "/subscribe extreme", 1006, now))
    fake.queue_update(group_update(n + 3, "/why", 1007, now))

    def answered() -> bool:
        return len(fake.requests("sendMessage")) >= before + 3

    stats = asyncio.run(serve_until(store, fake, tiny_model_dir, answered))
    assert stats.added == 0 and stats.delivered == 0  # a restart stores or sends nothing twice
    texts = sent_texts(fake)
    mood = next(t for t in texts if t.startswith("Mood as of"))
    assert "here — all assets in Crypto Talk" in mood and "Fear" in mood  # its title, not id
    assert any("Subscribed by direct message" in t for t in texts)  # member → DM
    assert any("Subscribed here" in t for t in texts)  # admin (getChatAdministrators) → group
    calls = fake.requests("sendMessage")
    assert all("parse_mode" not in c.params for c in calls)
    why = next(c for c in calls if c.params["text"].startswith("Why"))
    assert why.params["chat_id"] == str(GROUP)
    assert "u10" not in why.params["text"]  # quotes, never authors
    assert store.query("SELECT COUNT(*) FROM chat_inbox WHERE done_at IS NULL") == [(0,)]

    # A chart comes back as a photo; a member's /summary is refused, an admin's answered.
    fake.queue_update(group_update(n + 4, "/chart BTC 7d", 1008, now))
    fake.queue_update(group_update(n + 5, "/summary", 1009, now))
    fake.queue_update(group_update(n + 6, "/summary", ADMIN, now))
    texts_before = len(fake.requests("sendMessage"))

    def charted() -> bool:
        return (
            bool(fake.requests("sendPhoto"))
            and len(fake.requests("sendMessage")) >= texts_before + 2
        )

    asyncio.run(serve_until(store, fake, tiny_model_dir, charted))
    [photo] = fake.requests("sendPhoto")
    png = next(iter(photo.files.values())).data
    assert png_size(png) == (1200, 700) and photo.params["chat_id"] == str(GROUP)
    texts = sent_texts(fake)[texts_before:]
    assert any("for this chat's moderators only" in t for t in texts)
    assert any(t.startswith("Summary of the last 24h") for t in texts)
    store.close()


def test_rate_limit_per_user() -> None:
    limiter = RateLimiter(per_user=2, per_chat=10, window_s=60)
    cmd = Command("telegram", "g", "g", "u1", "mood")
    assert limiter.allow(cmd, 0) and limiter.allow(cmd, 1)
    assert not limiter.allow(cmd, 2)
    assert limiter.allow(Command("telegram", "g", "g", "u2", "mood"), 2)
    assert limiter.allow(cmd, 61)  # the window slid


def test_the_rate_limiter_forgets_idle_users_and_chats() -> None:
    """Keys whose windows have passed are dropped, not kept forever; the limits still hold."""
    limiter = RateLimiter(per_user=2, per_chat=1_000, window_s=60)
    for n in range(12_001):  # 12,001 users, each in their own chat: 24,002 keys
        assert limiter.allow(Command("telegram", f"g{n}", f"g{n}", f"u{n}", "mood"), n / 1_000)
    assert limiter.keys_held(now=30) == 24_002  # all still inside their window
    assert limiter.keys_held(now=3_600) == 0  # an hour later: every window has passed
    cmd = Command("telegram", "g", "g", "u1", "mood")
    assert limiter.allow(cmd, 3_600) and limiter.allow(cmd, 3_601)
    assert not limiter.allow(cmd, 3_602)  # the per-user limit still holds
    assert limiter.keys_held(now=3_602) == 2
    assert limiter.allow(cmd, 3_661)  # and still slides


def test_a_bounded_limiter_forgets_the_least_recent_keys_first() -> None:
    limiter = RateLimiter(per_user=5, per_chat=1_000, window_s=60, max_keys=100)
    for n in range(500):
        limiter.allow(Command("telegram", "g", "g", f"u{n}", "mood"), 1.0)
    assert limiter.keys_held(now=1.0) <= 100


def settings_updates(count: int, first_id: int = 1) -> list[tuple[int, Message | Command | None]]:
    """``count`` /settings from one member of GROUP, as a feed hands them over."""
    cmd = Command("telegram", str(GROUP), str(GROUP), "1005", "settings")
    return [(first_id + i, cmd) for i in range(count)]


def answer_all(source: ChatSource, events: list[tuple[int, Message | Command | None]]) -> None:
    async def main() -> None:
        for _, event in events:
            assert isinstance(event, Command)
            await source.answer(event)

    asyncio.run(main())


def test_the_rate_limit_comes_before_the_role_lookup(tmp_path: Path) -> None:
    """30 moderator commands from one user: only those within the limit look up roles."""
    asked: list[str] = []

    async def roles(cmd: Command) -> frozenset[str]:
        asked.append(cmd.user)
        return frozenset()

    store = Store(tmp_path / "rl.db")
    sink = RecordingSink()
    feed: Any = None  # only answer() runs here
    limiter = RateLimiter(per_user=5, per_chat=50)
    source = ChatSource("telegram", feed, sink, store, roles, asyncio.Event(), limiter)
    try:
        answer_all(source, settings_updates(30))
    finally:
        store.close()
    assert len(asked) == 5 and len(sink.sent) == 5  # 25 dropped before any lookup


def test_a_burst_of_moderator_commands_costs_one_admin_lookup(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    """Through the real client and the fake Bot API: admin lists are cached per chat."""
    clock = [0.0]
    store = Store(tmp_path / "admins.db")

    async def main() -> None:
        tg = build_bot(TOKEN, fake.base_url)
        await tg.initialize()
        roles = TelegramRoles(tg, ttl_s=60, timer=lambda: clock[0])
        limiter = RateLimiter(per_user=1_000, per_chat=1_000)
        feed: Any = None
        source = ChatSource(
            "telegram", feed, RecordingSink(), store, roles, asyncio.Event(), limiter
        )
        for _, event in settings_updates(30):
            assert isinstance(event, Command)
            await source.answer(event)
        assert len(fake.requests("getChatAdministrators")) == 1
        clock[0] = 61.0  # the cached list expired: the next command asks again
        admin = Command("telegram", str(GROUP), str(GROUP), str(ADMIN), "settings")
        member = Command("telegram", str(GROUP), str(GROUP), "1005", "settings")
        assert await roles(admin) == frozenset({"admin"})
        assert await roles(member) == frozenset()  # from the list fetched just before
        await tg.shutdown()

    try:
        asyncio.run(main())
    finally:
        store.close()
    assert len(fake.requests("getChatAdministrators")) == 2


def test_an_edited_telegram_message_updates_the_stored_text(
    tmp_path: Path, fake: FakeTelegram, tiny_model_dir: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    store = Store(tmp_path / "edit.db")
    original = group_update(1, "$BTC crash dump rekt", 1001, now)
    fake.queue_update(original)
    edit = {"update_id": 2, "edited_message": {**original["message"], "text": "$BTC moon pump"}}
    edit["edited_message"]["edit_date"] = int(now.timestamp()) + 60
    fake.queue_update(edit)

    def edited() -> bool:
        rows = store.query("SELECT text, status FROM messages")
        return rows == [("$BTC moon pump", "scored")]

    asyncio.run(serve_until(store, fake, tiny_model_dir, edited, timeout=15))
    assert store.query("SELECT text, status FROM messages") == [("$BTC moon pump", "scored")]
    assert store.query("SELECT COUNT(*) FROM chat_inbox WHERE done_at IS NULL") == [(0,)]
    store.close()


def test_a_restarted_source_rereads_what_a_failed_intake_never_stored(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    """Intake failed mid-batch (say the disk was full): the inbox rows it was handed stay
    pending, and after the supervisor's reset the restarted source hands them over again."""
    now = datetime.now(UTC)
    for i in range(1, 4):
        fake.queue_update(group_update(i, f"$BTC post {i}", 100 + i, now))
    store = Store(tmp_path / "r.db")

    async def scenario() -> tuple[list[str], list[str]]:
        tg = build_bot(TOKEN, fake.base_url)
        await tg.initialize()
        poller = TelegramPoller(tg, store, timeout=0)
        await poller.poll_once()
        stopping = asyncio.Event()
        source = ChatSource(
            "telegram", poller, TelegramSink(tg), store, lambda c: roles_for(tg, c), stopping
        )

        async def take(n: int) -> list[str]:
            out: list[str] = []
            async for m in source.messages():
                out.append(m.text)
                if len(out) == n:
                    break
            return out

        first = await take(3)  # handed over, never acked: the intake "failed"
        source.reset()
        again = await take(3)
        await tg.shutdown()
        return first, again

    try:
        first, again = asyncio.run(scenario())
        assert first == again == ["$BTC post 1", "$BTC post 2", "$BTC post 3"]
        assert len(store.pending_updates("telegram")) == 3  # nothing was marked done
    finally:
        store.close()


class RecordingFeed:
    """An inbox of stored updates that records from where each read started."""

    def __init__(self, events: list[tuple[int, Message | Command | None]]) -> None:
        self.stored = events
        self.reads: list[int | None] = []

    async def events(
        self, limit: int = 100, after: int | None = None
    ) -> list[tuple[int, Message | Command | None]]:
        self.reads.append(after)
        return [(u, e) for u, e in self.stored if after is None or u > after][:limit]


def test_rows_in_flight_are_not_read_again_while_the_pipeline_stores_them(
    tmp_path: Path,
) -> None:
    """Yielded messages stay unacked until the pipeline stores them; meanwhile each read of the
    inbox starts after the newest row handed out (not from the oldest pending one), and a
    restart (``reset``) reads the unacked rows again."""
    at = datetime(2024, 5, 3, 12, tzinfo=UTC)
    rows: list[tuple[int, Message | Command | None]] = [
        (u, Message("telegram", "g", "-100", str(u), "a", f"post {u}", at)) for u in (7, 8)
    ]
    feed = RecordingFeed(rows)
    store = Store(tmp_path / "inbox.db")

    async def none(cmd: Command) -> frozenset[str]:
        return frozenset()

    async def main() -> list[str]:
        stopping = asyncio.Event()
        source = ChatSource("telegram", feed, RecordingSink(), store, none, stopping, idle_s=0.01)
        stream = source.messages().__aiter__()
        got = [(await stream.__anext__()).message_id for _ in range(2)]
        with pytest.raises(TimeoutError):  # nothing new: it polls, never yielding 7 or 8 again
            await asyncio.wait_for(stream.__anext__(), 0.2)
        source.reset()
        stream = source.messages().__aiter__()
        got.append((await stream.__anext__()).message_id)
        stopping.set()
        return got

    try:
        got = asyncio.run(main())
    finally:
        store.close()
    assert got == ["7", "8", "7"]
    assert feed.reads[0] is None and feed.reads[-1] is None  # the first read, and after reset
    polls = feed.reads[1:-1]
    assert len(polls) >= 3 and set(polls) == {8}
