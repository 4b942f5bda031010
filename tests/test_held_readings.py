"""Commands in the live bot read their readings from the index engine's held messages
(``CommandContext.held``) instead of loading days of rows from the store per command: the
replies must be the very ones the store path gives, and the engine must step aside when it
cannot vouch for what it holds (an erasure it has not read, a span before what it loaded)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.chat.commands import CommandContext, handle
from bot.chat.context import reading_at
from bot.pipeline.config import LOOKBACK, PipelineConfig
from bot.pipeline.ticks import IndexEngine
from bot.store import Store, StoredMessage
from bot.types import Scope
from connectors.types import Command, Message
from nlp.types import Score

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 10
NOW = T0 + timedelta(days=DAYS, minutes=-17)
ASSETS = (("BTC",), ("ETH",), ("BTC", "ETH"), ("SOL",), ())
COMMUNITIES = ("-1001", "-1002", "-1003")


def _score(rng: random.Random) -> Score:
    neg = rng.random() * 0.6
    pos = rng.random() * (1 - neg)
    label = "positive" if pos > neg else "negative"
    return Score(neg, 1 - neg - pos, pos, label, "moodring-v2")


def chatter(path: Path, n: int) -> Store:
    """``n`` posts over ten days in three groups about BTC, ETH and SOL (some spam, some set
    aside), scored."""
    s = Store(path)
    rng = random.Random(7)
    items, scores = [], []
    for i in range(n):
        at = T0 + timedelta(seconds=rng.randrange(DAYS * 86400))
        community = rng.choice(COMMUNITIES)
        m = Message(
            "telegram",
            community,
            community,
            str(i),
            f"user{rng.randrange(60)}",
            f"post {i} about the market, {rng.choice(['up only', 'rekt', 'ranging'])}",
            at,
            likes=rng.randrange(5),
        )
        spam = "repeat" if rng.random() < 0.05 else None
        aside = "not English" if rng.random() < 0.03 else None
        items.append(StoredMessage(m, m.text.lower(), rng.choice(ASSETS), spam, aside))
        scores.append(((m.platform, m.channel, m.message_id), _score(rng)))
    s.add_messages(items, T0 + timedelta(days=DAYS))
    s.save_scores(scores, T0 + timedelta(days=DAYS))
    return s


def engine_at(store: Store, now: datetime) -> IndexEngine:
    """An engine that loaded the store and ticked to ``now`` (storing the hourly readings
    the readings' norms come from)."""
    engine = IndexEngine(store, PipelineConfig(tick_s=3600, assets=("BTC", "ETH")))
    engine.load(now)
    engine.advance(now)
    return engine


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, IndexEngine]]:
    """8,000 posts and an engine ticked through them, shared: the commands only read."""
    s = chatter(tmp_path_factory.mktemp("held") / "moodring.db", 8000)
    yield s, engine_at(s, NOW)
    s.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = chatter(tmp_path / "moodring.db", 2000)
    yield s
    s.close()


def ask(text: str, community: str = "-1001") -> Command:
    name, *args = text.lstrip("/").split()
    return Command("telegram", community, community, "99", name, tuple(args))


COMMANDS = ("/mood", "/mood BTC", "/mood ETH 1h", "/mood SOL 7d", "/why BTC", "/why")
COMMANDS += ("/trending", "/fear", "/price BTC")


@pytest.mark.parametrize("text", COMMANDS)
def test_a_command_answers_the_same_from_held_messages_as_from_the_store(
    world: tuple[Store, IndexEngine], text: str
) -> None:
    """The reply (numbers, bands, changes, quotes) is the store path's, word for word."""
    store, engine = world
    from_store = handle(ask(text), CommandContext(store=store, now=NOW))
    from_held = handle(ask(text), CommandContext(store=store, now=NOW, held=engine))
    assert "/100" in from_store.text or "Trending" in from_store.text  # a real reading
    assert from_held.text == from_store.text


def test_the_held_path_is_the_one_taken(world: tuple[Store, IndexEngine]) -> None:
    """With the engine given, a reading reads no scored rows from the store."""
    store, engine = world
    calls: list[object] = []
    real = store.scored_since
    store.scored_since = lambda *a, **k: calls.append(a) or real(*a, **k)  # type: ignore[method-assign]
    try:
        reading, points = reading_at(
            CommandContext(store=store, now=NOW, held=engine), Scope(asset="BTC"), "24h"
        )
    finally:
        del store.scored_since
    assert calls == []
    assert reading.value is not None and points


def test_the_engine_steps_aside_after_an_erasure_it_has_not_read(store: Store) -> None:
    """After /forget (from any process) and before the engine's next look, a command reads
    the store, so /why never quotes an erased post from memory."""
    engine = engine_at(store, NOW)
    since = NOW - timedelta(days=1)
    assert engine.held(since, NOW) is not None
    store.forget_author("telegram", "user1", NOW)
    assert engine.held(since, NOW) is None
    engine.advance(NOW)  # the engine reads the erasure: held rows carry the pseudonym
    got = engine.held(since, NOW)
    assert got is not None
    assert all(p.author != "user1" for p in got[0])


def test_the_engine_does_not_answer_for_before_what_it_loaded(store: Store) -> None:
    """A span older than the engine's lookback (or any span before its first load) goes to
    the store: the engine would give a partial count."""
    empty = IndexEngine(store, PipelineConfig(tick_s=3600))
    assert empty.held(NOW - timedelta(days=1), NOW) is None
    engine = engine_at(store, NOW)
    assert engine.held(NOW - LOOKBACK, NOW) is not None
    assert engine.held(NOW - LOOKBACK - timedelta(hours=1), NOW) is None
    later = NOW + timedelta(days=2)
    engine.prune(later)
    assert engine.held(NOW - LOOKBACK, later) is None
    assert engine.held(later - LOOKBACK, later) is not None


@pytest.mark.parametrize("held", [False, True])
def test_why_quotes_another_group_only_when_the_operator_calls_it_public(
    world: tuple[Store, IndexEngine], held: bool
) -> None:
    """The groups here have public usernames (``Message.public``), yet /why in one group
    quotes only that group's own posts: each path applies the operator's public sources."""
    store, engine = world
    posts = {r.key.rsplit(":", 1)[-1]: r.community for r in store.scored_since(T0, NOW)}
    ctx = CommandContext(store=store, now=NOW, held=engine if held else None)
    reply = handle(ask("/why", community="-1002"), ctx).text
    quoted = [line.split("post ")[1].split()[0] for line in reply.splitlines() if "“post" in line]
    assert quoted, reply
    assert {posts[n] for n in quoted} == {"-1002"}


def test_an_engine_started_on_an_empty_store_answers_from_what_it_was_given(
    tmp_path: Path,
) -> None:
    """A new bot (an empty database) never loads: the scoring stage hands every message to
    the engine (``add``), so what it holds is complete and commands read it, not SQLite."""
    empty = Store(tmp_path / "new.db")
    engine = IndexEngine(empty, PipelineConfig(tick_s=3600))
    full = chatter(tmp_path / "full.db", 300)
    rows = full.scored_since(T0, NOW)
    full.close()
    engine.add(rows)
    got = engine.held(NOW - timedelta(days=8), NOW)
    assert got is not None
    assert len(got[0]) == len([r for r in rows if r.created_at >= NOW - timedelta(days=8)])
    empty.close()


def engine_with_memo(store: Store, now: datetime, memo_s: float) -> IndexEngine:
    engine = IndexEngine(
        store, PipelineConfig(tick_s=3600, assets=("BTC", "ETH"), command_memo_s=memo_s)
    )
    engine.load(now)
    engine.advance(now)
    return engine


def more_btc_posts(store: Store, engine: IndexEngine, n: int, at: datetime) -> None:
    """``n`` new scored posts about BTC at ``at``, stored and handed to the engine as the
    scoring stage hands them over."""
    items = [
        StoredMessage(
            Message("telegram", "-1001", "-1001", f"new{i}", f"late{i}", "btc up", at),
            "btc up",
            ("BTC",),
            None,
            None,
        )
        for i in range(n)
    ]
    store.add_messages(items, at)
    score = Score(0.05, 0.15, 0.8, "positive", "moodring-v2")
    store.save_scores([(("telegram", "-1001", f"new{i}"), score) for i in range(n)], at)
    engine.add([r for r in store.scored_since(at, at) if ":new" in r.key])


def test_a_live_bot_reuses_a_reading_within_its_memo_slot(store: Store) -> None:
    """``command_memo_s``: the same question within the same slot of wall clock gets the
    answer computed first (at most that old), the next slot computes afresh."""
    engine = engine_with_memo(store, NOW, 15)
    btc = Scope(asset="BTC")
    first, _ = reading_at(CommandContext(store=store, now=NOW, held=engine), btc, "24h")
    more_btc_posts(store, engine, 40, NOW - timedelta(minutes=5))
    again, _ = reading_at(CommandContext(store=store, now=NOW + timedelta(seconds=14)), btc, "24h")
    assert again.sample_size == first.sample_size + 40  # the store path sees the new posts
    memo, _ = reading_at(
        CommandContext(store=store, now=NOW + timedelta(seconds=14), held=engine), btc, "24h"
    )
    assert memo is first and engine.memo_hits == 1
    fresh, _ = reading_at(
        CommandContext(store=store, now=NOW + timedelta(seconds=15), held=engine), btc, "24h"
    )
    assert fresh.sample_size == first.sample_size + 40 and engine.memo_hits == 1
    assert engine.sizes()["memo"] == 2


def test_an_erasure_is_never_answered_from_the_memo(store: Store) -> None:
    """After /forget, a memoised /why could quote the erased post: the erasure count is part
    of the memo's key, so the next ask computes again (from the store, until the engine has
    read the erasure)."""
    engine = engine_with_memo(store, NOW, 300)
    before = handle(ask("/why"), CommandContext(store=store, now=NOW, held=engine)).text
    quoted = next(line for line in before.splitlines() if "“post" in line)
    number = quoted.split("post ")[1].split()[0]
    author = next(r.author for r in store.scored_since(T0, NOW) if r.key.endswith(f":{number}"))
    store.forget_author("telegram", author, NOW)
    after = handle(
        ask("/why"), CommandContext(store=store, now=NOW + timedelta(seconds=1), held=engine)
    ).text
    assert engine.memo_hits == 0
    assert f"post {number} " not in after


@pytest.mark.parametrize("text", COMMANDS)
def test_the_memo_changes_no_answer(world: tuple[Store, IndexEngine], text: str) -> None:
    """Asked with the memo on, first and again, a command answers word for word as without."""
    store, plain = world
    memo = IndexEngine(store, PipelineConfig(tick_s=3600, assets=("BTC", "ETH"), command_memo_s=15))
    memo.load(NOW)
    memo.last_tick = plain.last_tick  # the world's readings are stored already
    without = handle(ask(text), CommandContext(store=store, now=NOW, held=plain)).text
    first = handle(ask(text), CommandContext(store=store, now=NOW, held=memo)).text
    again = handle(ask(text), CommandContext(store=store, now=NOW, held=memo)).text
    assert first == again == without
