"""What the fuzz tests check of everything a connector hands over: our types, their invariants."""

from __future__ import annotations

import itertools
import math
import os
import re
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings

from bot.store import Store
from bot.store.rows import StoredMessage
from connectors.bounds import EARLIEST_POST, MAX_CLOCK_SKEW_S, MAX_COUNT
from connectors.types import Candle, Command, Message, Ticker

#: ``MOODRING_FUZZ_SCALE=20`` runs 20 times the examples, at random, to hunt for bugs
#: locally; unset, every fuzz test is deterministic and sized for CI.
SCALE = int(os.environ.get("MOODRING_FUZZ_SCALE", "0"))


def fuzz(max_examples: int) -> settings:
    """The settings of every fuzz test: no timing health checks (files and loopback servers
    make example times vary), no deadline (no timed assertions), derandomized in CI."""
    return settings(
        max_examples=max_examples * SCALE if SCALE else max_examples,
        deadline=None,
        derandomize=not SCALE,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
    )


_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_keys = itertools.count()


def storable(text: str) -> bool:
    """Whether SQLite (UTF-8) can take ``text``: no lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_aware_utc(at: datetime, what: str) -> None:
    assert at.tzinfo is not None and at.utcoffset() == timedelta(0), f"{what} {at!r} not UTC"


def check_message(m: Message, now: datetime | None = None) -> None:
    """The invariants every Message keeps, whichever connector made it."""
    assert type(m) is Message
    now = now or datetime.now(UTC)
    for name in ("platform", "community", "channel", "message_id", "author", "text"):
        value = getattr(m, name)
        assert isinstance(value, str), f"{name} is {type(value).__name__}"
        assert storable(value), f"{name} has a lone surrogate"
    for name in ("platform", "community", "channel", "message_id"):
        assert getattr(m, name).strip(), f"{name} is blank"
    assert m.text.strip(), "a Message without text"
    for name in ("language", "tag"):
        value = getattr(m, name)
        assert value is None or (isinstance(value, str) and storable(value)), name
    assert isinstance(m.community_title, str) and storable(m.community_title)
    check_aware_utc(m.created_at, "created_at")
    latest = now + timedelta(seconds=MAX_CLOCK_SKEW_S)
    assert EARLIEST_POST <= m.created_at <= latest, f"created_at {m.created_at} out of bounds"
    for name in ("likes", "replies", "reposts"):
        value = getattr(m, name)
        assert type(value) is int and 0 <= value <= MAX_COUNT, f"{name} = {value!r}"
    assert isinstance(m.public, bool)


def check_command(c: Command) -> None:
    """The invariants every Command keeps."""
    assert type(c) is Command
    for name in ("platform", "community", "channel", "user", "community_title"):
        value = getattr(c, name)
        assert isinstance(value, str) and storable(value), name
    assert _COMMAND_NAME.fullmatch(c.name), f"command name {c.name!r}"
    assert isinstance(c.args, tuple)
    assert all(isinstance(a, str) and a and storable(a) for a in c.args), c.args
    assert c.reply_to_author is None or isinstance(c.reply_to_author, str)
    assert isinstance(c.is_private, bool)


def check_candle(c: Candle, now: datetime | None = None) -> None:
    """A bar the market code can rely on: finite positive prices that make a bar, a
    non-negative volume, an aware open time that is not in the future."""
    assert type(c) is Candle
    check_aware_utc(c.ts, "Candle.ts")
    assert c.ts <= (now or datetime.now(UTC)) + timedelta(seconds=MAX_CLOCK_SKEW_S)
    prices = (c.open, c.high, c.low, c.close)
    assert all(type(p) is float and math.isfinite(p) and p > 0 for p in prices), prices
    assert c.low <= min(c.open, c.close) and max(c.open, c.close) <= c.high, prices
    assert type(c.volume) is float and math.isfinite(c.volume) and c.volume >= 0, c.volume
    assert isinstance(c.asset, str) and c.asset and isinstance(c.interval, str)


def check_ticker(t: Ticker, now: datetime | None = None) -> None:
    """A ticker the market code can rely on: a finite positive price, finite extras or None."""
    assert type(t) is Ticker
    check_aware_utc(t.at, "Ticker.at")
    assert EARLIEST_POST <= t.at <= (now or datetime.now(UTC)) + timedelta(seconds=MAX_CLOCK_SKEW_S)
    assert type(t.last) is float and math.isfinite(t.last) and t.last > 0, t.last
    for name in ("change_24h_pct", "volume_24h", "funding_rate", "open_interest"):
        value = getattr(t, name)
        assert value is None or (type(value) is float and math.isfinite(value)), (name, value)
    for name in ("volume_24h", "open_interest"):
        value = getattr(t, name)
        assert value is None or value >= 0, (name, value)


def store_messages(store: Store, messages: list[Message]) -> None:
    """Store ``messages`` the way intake does (the store must take every one)."""
    items = [StoredMessage(m, m.text, (), None, None) for m in messages]
    store.add_messages(items, datetime.now(UTC))


def fresh_key() -> str:
    """A name no earlier example used, so examples sharing one store never collide."""
    return f"k{next(_keys)}"


_store: Store | None = None


def shared_store() -> Store:
    """One in-memory store for a fuzz module's examples (each example uses fresh keys)."""
    global _store
    if _store is None:
        _store = Store(":memory:", memory=True)
    return _store
