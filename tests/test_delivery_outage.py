"""Alerts across a chat platform's outage: retried with backoff for as long as they are
fresh, delivered once when the platform is back, and abandoned (kept, marked, counted in
``/status`` and ``moodring status``) only once older than ``alert_max_age_s``.

Every test drives delivery with an injected clock: ``deliver(now)`` once per simulated
delivery round, no sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.chat.commands import CommandContext, handle
from bot.pipeline.runner import Pipeline
from bot.pipeline.status import status_report
from bot.prefs.subscriptions import Subscription
from bot.store import Store
from bot.types import Alert, Scope
from connectors.errors import DeliveryError
from connectors.types import Command
from nlp.types import Score
from tests.doubles import FlakySink
from tests.test_pipeline_e2e import make_pipeline

#: Wall-clock time the alert rows are queued at (the tests' clock starts here).
T0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
#: The alerts' own (message) time: a replay of 2022 posts queues alerts this old, today.
MESSAGE_TIME = datetime(2022, 7, 1, 12, tzinfo=UTC)
ROUND = timedelta(seconds=30)  # the live delivery loop's default ``delivery_s``
OLD_MAX_ATTEMPTS = 8  # the attempt cap that used to drop rows


class NoScorer:
    """Delivery never scores; the pipeline only needs something in the scorer's place."""

    def score(self, texts: Sequence[str]) -> list[Score]:
        raise AssertionError("delivery tests score nothing")


def alert(n: int = 1) -> Alert:
    return Alert(
        f"extreme-fear:BTC|*|*:24h:{n}",
        "extreme-fear",
        Scope(asset="BTC"),
        MESSAGE_TIME,
        f"alert {n}",
    )


def queue(store: Store, alerts: list[Alert], queued_at: datetime) -> None:
    """Queue ``alerts`` for every matching subscriber, as the index stage does."""
    subs = store.subscriptions()
    store.save_tick(
        [],
        alerts,
        {},
        lambda a: [(s.platform, s.target) for s in subs if s.matches(a)],
        ("index_tick", MESSAGE_TIME.isoformat()),
        queued_at,
    )


def rounds(pipeline: Pipeline, start: datetime, end: datetime) -> int:
    """Delivery rounds every ``ROUND`` from ``start`` to before ``end``; how many sent."""
    sent = 0
    t = start
    while t < end:
        sent += asyncio.run(pipeline.deliver(t))
        t += ROUND
    return sent


def outbox(store: Store) -> list[tuple]:
    return store.query("SELECT sent_at, attempts FROM outbox")


@pytest.fixture
def bot(tmp_path: Path):
    store = Store(tmp_path / "s.db")
    sink = FlakySink()
    pipeline = make_pipeline(store, NoScorer(), {"telegram": sink}, alert_max_age_s=3 * 3600)
    store.subscribe(Subscription("telegram", "g", "42", "u"), T0)
    yield store, sink, pipeline
    store.close()


def test_an_alert_outlives_an_outage_longer_than_the_old_attempt_cap(bot) -> None:
    store, sink, pipeline = bot
    queue(store, [alert()], T0)
    sink.failures = [DeliveryError("502 Bad Gateway")] * 1000  # down for the next hour
    recovered = T0 + timedelta(hours=1)
    assert rounds(pipeline, T0, recovered) == 0
    [(sent_at, attempts)] = outbox(store)
    assert sent_at is None and attempts > OLD_MAX_ATTEMPTS  # kept trying past the old cap

    sink.failures = []  # the platform is back
    assert rounds(pipeline, recovered, recovered + timedelta(hours=1)) == 1
    assert [r.target for r in sink.sent] == ["42"]  # delivered once: not dropped, not doubled
    [(sent_at, _)] = outbox(store)
    assert sent_at is not None
    assert store.count_abandoned() == 0 and store.count_unsent() == 0


def test_an_alert_older_than_alert_max_age_is_abandoned_counted_and_never_sent(bot) -> None:
    store, sink, pipeline = bot
    queue(store, [alert()], T0)
    sink.failures = [DeliveryError("502 Bad Gateway")] * 1000
    # Down past the 3 h maximum age: retried with backoff until then, abandoned after.
    down_until = T0 + timedelta(hours=4)
    assert rounds(pipeline, T0, down_until) == 0
    tries = 1000 - len(sink.failures)
    assert tries > OLD_MAX_ATTEMPTS
    assert store.query("SELECT given_up FROM outbox") == [("too old",)]

    sink.failures = []  # the platform is back
    assert rounds(pipeline, down_until, down_until + timedelta(hours=2)) == 0
    assert sink.sent == []  # never sent later: a stale alert is worse than none
    assert outbox(store) == [(None, tries)]  # nor even tried again
    assert store.count_abandoned() == 1 and store.count_unsent() == 0

    later = down_until + timedelta(hours=2)
    assert "abandoned as too old: 1" in status_report(store, later)  # `moodring status`
    ctx = CommandContext(store=store, now=later)
    mod = Command("telegram", "g", "g", "mod", "status", (), frozenset({"admin"}))
    assert "abandoned as too old: 1" in handle(mod, ctx).text  # a moderator's /status


def test_the_age_is_checked_before_the_first_send_too(bot) -> None:
    """Rows a stopped bot left queued are not sent hours late when it starts again."""
    store, sink, pipeline = bot
    queue(store, [alert(1)], T0)
    queue(store, [alert(2)], T0 + timedelta(hours=2, minutes=30))
    assert asyncio.run(pipeline.deliver(T0 + timedelta(hours=3, minutes=1))) == 1
    assert [r.text.splitlines()[0][2:] for r in sink.sent] == ["alert 2"]
    assert store.count_abandoned() == 1


def test_age_is_wall_clock_since_queued_not_the_alerts_message_time(bot) -> None:
    """A replay raises alerts dated 2022 and queues them now: they are delivered."""
    store, sink, pipeline = bot
    queue(store, [alert()], T0)
    assert asyncio.run(pipeline.deliver(T0 + timedelta(seconds=1))) == 1
    assert [r.target for r in sink.sent] == ["42"] and store.count_abandoned() == 0


def test_quiet_hours_do_not_count_against_the_age(bot) -> None:
    store, sink, pipeline = bot
    store.subscribe(Subscription("telegram", "g", "43", "v", quiet_start=22, quiet_end=7), T0)
    evening = T0.replace(hour=21, minute=30)
    queue(store, [alert(1), alert(2)], evening)
    store.mark_sent(alert(1).key, "telegram", "42", evening)  # 42 has no quiet hours
    store.mark_sent(alert(2).key, "telegram", "42", evening)
    assert asyncio.run(pipeline.deliver(evening.replace(hour=23))) == 0
    # 10.5 h after they were queued, past the 3 h maximum, but held on purpose until 07:00.
    morning = (evening + timedelta(days=1)).replace(hour=8)
    assert asyncio.run(pipeline.deliver(morning)) == 2
    [digest] = sink.sent
    assert digest.target == "43" and digest.text.startswith("🔔 2 alerts while you were away")
    assert store.count_abandoned() == 0
