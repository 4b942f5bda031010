"""The store: migrations, keyed upserts, outbox bookkeeping, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store import Store, StoredMessage
from bot.types import Alert, MoodReading, Scope
from connectors.types import Message
from nlp.types import Score

T0 = datetime(2022, 7, 1, 12, tzinfo=UTC)


def stored(i: int, text: str = "hello $BTC", at: datetime = T0) -> StoredMessage:
    msg = Message(
        platform="telegram",
        community="c1",
        channel="ch1",
        message_id=str(i),
        author=f"a{i % 3}",
        text=text,
        created_at=at + timedelta(minutes=i),
    )
    return StoredMessage(msg, text, ("BTC",), None, None)


@pytest.mark.sqlite_only
def test_migrations_are_applied_once_and_reopening_keeps_data(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    store = Store(db)
    store.add_messages([stored(1)], T0)
    store.close()
    store = Store(db)  # migrating again is a no-op
    assert store.query("SELECT COUNT(*) FROM messages") == [(1,)]
    applied = store.query("SELECT name FROM _sqlite_migrations")
    assert applied == [
        ("m001_initial",),
        ("m002_chat_inbox_and_subscriptions",),
        ("m003_community_settings",),
        ("m004_author_metadata",),
        ("m005_health_usage_levels",),
        ("m006_asset_aliases",),
        ("m007_reading_models",),
        ("m008_outbox_given_up",),
        ("m009_do_not_store",),
        ("m010_community_status_index",),
        ("m011_community_titles_and_private_chats",),
        ("m012_outbox_claims",),
        ("m013_liquidations_and_implied_volatility",),
        ("m014_dashboard_revocations",),
    ]
    assert store.query("PRAGMA journal_mode") == [("wal",)]
    store.close()


@pytest.mark.sqlite_only
def test_rows_the_old_attempt_cap_dropped_are_marked_given_up(tmp_path: Path) -> None:
    """Migration 8: outbox rows that reached the old cap of 8 attempts stay unsent, now
    marked (an on-purpose reason kept, plain failures abandoned as too old); live rows stay
    live, to be retried until too old."""
    import sqlite_utils

    from bot.store.schema import migrations

    db = sqlite_utils.Database(tmp_path / "old.db")
    migrations.apply(db, stop_before="m008_outbox_given_up")
    for key, attempts, error in [("a", 8, "daily cap"), ("b", 8, "502"), ("c", 3, "502")]:
        db["outbox"].insert(
            {
                "alert_key": key,
                "sink": "t",
                "target": "42",
                "created_at": T0.isoformat(),
                "attempts": attempts,
                "last_error": error,
            }
        )
    db.close()
    store = Store(tmp_path / "old.db")
    try:
        rows = store.query("SELECT alert_key, given_up FROM outbox ORDER BY alert_key")
        assert rows == [("a", "daily cap"), ("b", "too old"), ("c", None)]
        assert store.count_abandoned() == 1 and store.count_unsent() == 1
    finally:
        store.close()


def test_messages_are_keyed_and_never_duplicated(backend_store: Store) -> None:
    store = backend_store
    assert store.add_messages([stored(1), stored(2)], T0) == 2
    assert store.add_messages([stored(1), stored(2), stored(3)], T0) == 1
    assert store.query("SELECT COUNT(*) FROM messages") == [(3,)]
    assert store.query("SELECT COUNT(*) FROM message_assets") == [(3,)]
    # Scoring twice overwrites, never adds.
    score = Score(0.1, 0.2, 0.7, "positive", "m")
    key = ("telegram", "ch1", "1")
    store.save_scores([(key, score)], T0)
    store.save_scores([(key, score)], T0)
    assert store.query("SELECT COUNT(*) FROM scores") == [(1,)]
    assert [k for k, _ in store.unscored(10)] == [
        ("telegram", "ch1", "2"),
        ("telegram", "ch1", "3"),
    ]


def test_odd_text_is_stored_verbatim_through_parameters(backend_store: Store) -> None:
    store = backend_store
    nasty = "'); DROP TABLE messages; -- 🚀\u200d\u202e" + "x" * 10_000
    store.add_messages([stored(1, nasty)], T0)
    assert store.query("SELECT text FROM messages") == [(nasty,)]


def test_the_newest_numeric_message_id_passes_over_ids_that_are_not_numbers(
    backend_store: Store,
) -> None:
    """Discord's catch-up asks for the newest id; a replay or another platform may have
    stored ids that are not numbers in the same channel name, which must not fail it."""
    from dataclasses import replace

    store = backend_store
    assert store.last_message_id("telegram", "ch1") is None
    ids = ["99", "1234", "abc", "12x", "", "١٢٣", "99999999999999999999", "1300000000000000000"]
    store.add_messages(
        [
            replace(stored(i), message=replace(stored(i).message, message_id=m))
            for i, m in enumerate(ids)
        ],
        T0,
    )
    assert store.last_message_id("telegram", "ch1") == 1300000000000000000


def test_a_tick_is_atomic_and_alerts_enter_the_outbox_once(backend_store: Store) -> None:
    store = backend_store
    scope = Scope(asset="BTC")
    reading = MoodReading(scope, "24h", T0, 20.0, "Extreme Fear", {"sentiment": 10.0}, 100, 0.8)
    alert = Alert("extreme-fear:BTC|*|*:24h:1", "extreme", scope, T0, "BTC entered Extreme Fear")
    targets = [("console", ""), ("telegram", "42")]
    new = store.save_tick(
        [reading], [alert], {}, lambda a: targets, ("index_tick", T0.isoformat()), T0
    )
    assert new == [alert]
    again = store.save_tick(
        [reading], [alert], {}, lambda a: targets, ("index_tick", T0.isoformat()), T0
    )
    assert again == []
    assert store.query("SELECT COUNT(*) FROM readings") == [(1,)]
    assert store.query("SELECT COUNT(*) FROM outbox") == [(2,)]
    pending = store.pending_outbox("telegram")
    assert [(a.key, target) for a, target, _ in pending] == [(alert.key, "42")]
    store.mark_sent(alert.key, "telegram", "42", T0)
    assert store.pending_outbox("telegram") == []
    assert len(store.pending_outbox("console")) == 1
    assert store.checkpoint("index_tick") == T0.isoformat()
    [back] = store.readings(scope, "24h", T0, T0)
    assert back.value == 20.0 and back.components == {"sentiment": 10.0}


def test_a_failed_transaction_leaves_nothing_behind(backend_store: Store) -> None:
    store = backend_store
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("INSERT INTO checkpoints VALUES ('x', '1', 'now')")
        raise RuntimeError("crash mid-transaction")
    assert store.checkpoint("x") is None


def test_retention_purges_old_texts_but_keeps_scores(backend_store: Store) -> None:
    store = backend_store
    store.add_messages([stored(1), stored(2, at=T0 + timedelta(days=40))], T0)
    for i in ("1", "2"):
        store.save_scores([(("telegram", "ch1", i), Score(0.2, 0.3, 0.5, "positive", "m"))], T0)
    assert store.purge_texts(T0 + timedelta(days=30)) == 1
    assert store.query("SELECT message_id, text FROM messages ORDER BY message_id") == [
        ("1", None),
        ("2", "hello $BTC"),
    ]
    assert store.query("SELECT COUNT(*) FROM scores") == [(2,)]


@pytest.mark.sqlite_only
def test_an_unreadable_database_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "not.db"
    bad.write_bytes(b"this is not a sqlite file" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        Store(bad)
