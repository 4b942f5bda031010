"""Several deliverers on one database (#15): outbox rows are claimed with a lease (``FOR
UPDATE SKIP LOCKED`` on PostgreSQL), only the claimant sends, a dead deliverer's rows pass
to another when its lease ends, and a transaction that loses a race runs again."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from bot.pipeline.runner import Pipeline
from bot.store import Store
from bot.types import Alert, Scope
from connectors.types import Reply
from tests.doubles import RecordingSink
from tests.test_delivery_outage import NoScorer
from tests.test_pipeline_e2e import make_pipeline

T0 = datetime(2026, 2, 5, 12, tzinfo=UTC)
LEASE = 300.0


def queue_alerts(store: Store, n: int, targets: int = 7) -> set[tuple[str, str]]:
    """``n`` alerts, each queued for one of ``targets`` Telegram chats: their (key, target)."""
    alerts = [
        Alert(f"extreme-fear:A{i}|*|*:24h:1", "extreme", Scope(asset=f"A{i}"), T0, f"A{i} fear")
        for i in range(n)
    ]
    store.save_tick(
        [],
        alerts,
        {},
        lambda a: [("telegram", f"t{int(a.scope.asset[1:]) % targets}")],
        ("index_tick", T0.isoformat()),
        T0,
    )
    return {
        (key, target)
        for key, target in store.query(
            "SELECT alert_key, target FROM outbox WHERE sink = 'telegram'"
        )
    }


def deliver_all(store: Store, worker: str, sent: list[tuple[str, str]], page: int) -> None:
    """What a deliverer does: claim a page, renew each claim right before "sending", mark it
    sent; until nothing is left to claim."""
    while claimed := store.claim_outbox("telegram", worker, T0, LEASE, limit=page):
        for alert, target, _ in claimed:
            if store.hold_claim(alert.key, "telegram", target, worker, T0, LEASE):
                sent.append((alert.key, target))
                store.mark_sent(alert.key, "telegram", target, T0)


def test_deliverers_sharing_a_database_send_every_row_exactly_once(backend_store: Store) -> None:
    rows = queue_alerts(backend_store, 120)
    stores = [backend_store, Store(backend_store.path), Store(backend_store.path)]
    sent: dict[str, list[tuple[str, str]]] = {f"w{i}": [] for i in range(len(stores))}
    threads = [
        threading.Thread(target=deliver_all, args=(s, w, sent[w], 5))
        for s, w in zip(stores, sent, strict=True)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for s in stores[1:]:
            s.close()
    everything = [row for rows_sent in sent.values() for row in rows_sent]
    assert sorted(everything) == sorted(rows)  # every row once: none lost, none twice
    assert backend_store.query(
        "SELECT COUNT(*) FROM outbox WHERE sink = 'telegram' AND (sent_at IS NULL OR attempts <> 1)"
    ) == [(0,)]


def test_a_dead_deliverers_rows_pass_to_another_when_its_lease_ends(backend_store: Store) -> None:
    store = backend_store
    rows = queue_alerts(store, 6)
    first = store.claim_outbox("telegram", "dead", T0, LEASE)
    assert {(a.key, t) for a, t, _ in first} == rows
    # Within the lease another deliverer gets nothing, and the holder may claim again.
    assert store.claim_outbox("telegram", "alive", T0 + timedelta(seconds=299), LEASE) == []
    again = store.claim_outbox("telegram", "dead", T0 + timedelta(seconds=10), LEASE)
    assert len(again) == len(rows)
    # After it, the rows are the other's, and the late holder may no longer send them.
    later = T0 + timedelta(seconds=10 + LEASE + 1)
    taken = store.claim_outbox("telegram", "alive", later, LEASE)
    assert {(a.key, t) for a, t, _ in taken} == rows
    key, target = next(iter(rows))
    assert not store.hold_claim(key, "telegram", target, "dead", later, LEASE)
    assert store.hold_claim(key, "telegram", target, "alive", later, LEASE)


def test_a_clean_stop_hands_its_claims_back_at_once(backend_store: Store) -> None:
    store = backend_store
    rows = queue_alerts(store, 4)
    [(alert, target, _), *_] = store.claim_outbox("telegram", "stopping", T0, LEASE)
    store.mark_sent(alert.key, "telegram", target, T0)
    assert store.release_claims("stopping") == len(rows) - 1  # the sent row is not touched
    taken = store.claim_outbox("telegram", "next", T0 + timedelta(seconds=1), LEASE)
    assert {(a.key, t) for a, t, _ in taken} == rows - {(alert.key, target)}


def test_given_up_and_sent_rows_are_never_claimed(backend_store: Store) -> None:
    store = backend_store
    rows = sorted(queue_alerts(store, 3))
    (k1, t1), (k2, t2), (k3, t3) = rows
    store.mark_sent(k1, "telegram", t1, T0)
    store.give_up(k2, "telegram", t2, "daily cap", T0)
    assert [(a.key, t) for a, t, _ in store.claim_outbox("telegram", "w", T0, LEASE)] == [(k3, t3)]
    assert not store.hold_claim(k1, "telegram", t1, "w", T0, LEASE)


def deliverer(store: Store, sink: RecordingSink) -> Pipeline:
    return make_pipeline(store, NoScorer(), {"telegram": sink}, outbox_lease_s=LEASE)


def sent_rows(*sinks: RecordingSink) -> list[tuple[str, str]]:
    return sorted((r.text.splitlines()[0][2:], r.target) for s in sinks for r in s.sent)


def test_two_bots_delivering_at_once_send_each_alert_once(backend_store: Store) -> None:
    rows = queue_alerts(backend_store, 12, targets=3)
    other = Store(backend_store.path)
    try:
        a, b = RecordingSink(), RecordingSink()
        first, second = deliverer(backend_store, a), deliverer(other, b)
        assert first.worker != second.worker

        async def both() -> list[int]:
            return list(await asyncio.gather(first.deliver(T0), second.deliver(T0)))

        assert sum(asyncio.run(both())) == len(rows)
        assert sent_rows(a, b) == sorted((f"A{k[14:].split('|')[0]} fear", t) for k, t in rows)
    finally:
        other.close()


class TakenOverSink(RecordingSink):
    """A chat platform so slow that, during the first send, the deliverer's lease runs out
    and another deliverer claims the rest."""

    def __init__(self, take_over: object) -> None:
        super().__init__()
        self.take_over = take_over

    async def send(self, reply: Reply) -> None:
        if not self.sent:
            self.take_over()  # type: ignore[operator]
        await super().send(reply)


def test_a_deliverer_whose_lease_ran_out_sends_no_row_another_took(backend_store: Store) -> None:
    rows = queue_alerts(backend_store, 5, targets=1)
    late = T0 + timedelta(seconds=LEASE + 1)
    other = Store(backend_store.path)
    try:
        b = RecordingSink()
        second = deliverer(other, b)
        a = TakenOverSink(lambda: other.claim_outbox("telegram", second.worker, late, LEASE))
        first = deliverer(backend_store, a)
        assert asyncio.run(first.deliver(T0)) == 1  # the send in flight, then it stops
        assert asyncio.run(second.deliver(late)) == len(rows) - 1
        assert len(sent_rows(a, b)) == len(rows) == len(set(sent_rows(a, b)))
        assert backend_store.count_unsent() == 0
    finally:
        other.close()


def test_a_bot_that_died_holding_claims_has_its_alerts_sent_after_the_lease(
    backend_store: Store,
) -> None:
    rows = queue_alerts(backend_store, 4)
    backend_store.claim_outbox("telegram", "crashed:1:dead", T0, LEASE)  # then it died
    sink = RecordingSink()
    survivor = deliverer(backend_store, sink)
    assert asyncio.run(survivor.deliver(T0 + timedelta(seconds=60))) == 0
    assert asyncio.run(survivor.deliver(T0 + timedelta(seconds=LEASE + 30))) == len(rows)
    assert len(sink.sent) == len(rows)


def serializable(url: str) -> str:
    """``url`` with every transaction SERIALIZABLE (as some managed servers are set up)."""
    options = "options=-c%20default_transaction_isolation%3Dserializable"
    return f"{url}{'&' if '?' in url else '?'}{options}"


def test_a_transaction_that_loses_a_serialization_race_runs_again(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A real serialization failure, made to happen: another session updates the same outbox
    row in a SERIALIZABLE transaction and commits while the store's SERIALIZABLE update
    waits on its lock. PostgreSQL rolls the store's transaction back ("could not serialize
    access due to concurrent update"); the store runs it again, and it succeeds."""
    store = Store(serializable(pg_url))
    try:
        [(key, target)] = queue_alerts(store, 1)
        with psycopg.connect(pg_url) as other:
            other.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            other.execute("UPDATE outbox SET last_error = 'held' WHERE alert_key = %s", [key])
            caplog.set_level(logging.INFO, logger="bot.store.base")
            marking = threading.Thread(target=store.mark_sent, args=(key, "telegram", target, T0))
            marking.start()
            with psycopg.connect(pg_url, autocommit=True) as watcher:
                for _ in range(200):  # until the store's update waits on the row lock
                    [[waiting]] = watcher.execute(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    ).fetchall()
                    if waiting:
                        break
                    time.sleep(0.05)
                assert waiting == 1
            other.commit()
            marking.join(timeout=30)
        assert not marking.is_alive()
        assert "transaction conflict (could not serialize access" in caplog.text
        assert store.query(
            "SELECT sent_at IS NOT NULL, attempts, last_error FROM outbox WHERE alert_key = ?",
            [key],
        ) == [(True, 1, "held")]  # the other session's write and the store's, both kept
    finally:
        store.close()
