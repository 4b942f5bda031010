"""The index's output: readings, alerts and their outbox, and rebuilding them from an hour."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from bot.store.base import StoreBase, locked
from bot.store.rows import (
    ALERT_COLUMNS,
    MINUTE_CHECKPOINT,
    TICK_CHECKPOINT,
    TOO_OLD,
    alert_from_row,
    iso,
    parse_ts,
)
from bot.store.sql import insert_new, set_excluded, upsert
from bot.types import Alert, MoodReading, Scope

_READING = upsert(
    "readings",
    "scope window at asset community platform value band components sample_size confidence"
    " spam_count set_aside models",
    "scope window at",
)
_ALERT_FIELDS = "kind scope at title detail value previous evidence created_at"
_ALERT = insert_new("alerts", f"key {_ALERT_FIELDS}")
_OUTBOX = insert_new("outbox", "alert_key sink target created_at attempts")
_ALERT_STATE = upsert("alert_state", "scope window state", "scope window")
# An alert a rebuild replaces is kept with when; replaced again, the newer copy stands.
_SUPERSEDE = (
    f"INSERT INTO alerts_superseded SELECT key, {_ALERT_FIELDS.replace(' ', ', ')}, ?"
    " FROM alerts WHERE at >= ?"
    f" ON CONFLICT (key) DO UPDATE SET {set_excluded(_ALERT_FIELDS + ' superseded_at')}"
)


class ReadingsMixin(StoreBase):
    """Readings, alerts, alert rule state and the outbox."""

    def save_tick(
        self,
        readings: Sequence[MoodReading],
        alerts: Sequence[Alert],
        states: dict[tuple[str, str], str],
        outbox_targets: Callable[[Alert], Sequence[tuple[str, str]]],
        checkpoint: tuple[str, str],
        now: datetime,
    ) -> list[Alert]:
        """Store one index tick atomically: readings, new alerts, their outbox rows, rule
        state and the tick checkpoint. ``outbox_targets(alert)`` names the (sink, target)
        pairs that should receive each new alert. Returns the alerts that were new."""
        new: list[Alert] = []
        with self.transaction() as db:
            for r in readings:
                db.execute(
                    _READING,
                    [
                        r.scope.key(),
                        r.window,
                        iso(r.at),
                        r.scope.asset,
                        r.scope.community,
                        r.scope.platform,
                        r.value,
                        r.band,
                        json.dumps(r.components, sort_keys=True),
                        r.sample_size,
                        r.confidence,
                        r.spam_count,
                        r.set_aside,
                        json.dumps(list(r.models)),
                    ],
                )
            for a in alerts:
                cur = db.execute(
                    _ALERT,
                    [
                        a.key,
                        a.kind,
                        a.scope.key(),
                        iso(a.at),
                        a.title,
                        a.detail,
                        a.value,
                        a.previous,
                        json.dumps(list(a.evidence)),
                        iso(now),
                    ],
                )
                if cur.rowcount:
                    new.append(a)
                    for sink, target in outbox_targets(a):
                        db.execute(
                            _OUTBOX,
                            [a.key, sink, target, iso(now), 0],
                        )
            for (scope, window), state in states.items():
                db.execute(_ALERT_STATE, [scope, window, state])
            self._set_checkpoint(db, *checkpoint, now)
        return new

    @locked
    def alert_state(self, scope: str, window: str) -> str:
        row = self.db.execute(
            "SELECT state FROM alert_state WHERE scope = ? AND window = ?", [scope, window]
        ).fetchone()
        return row[0] if row else ""

    @locked
    def readings(
        self, scope: Scope, window: str, since: datetime, until: datetime
    ) -> list[MoodReading]:
        rows = self.db.execute(
            "SELECT at, value, band, components, sample_size, confidence, spam_count, set_aside,"
            " models FROM readings"
            " WHERE scope = ? AND window = ? AND at >= ? AND at <= ? ORDER BY at",
            [scope.key(), window, iso(since), iso(until)],
        ).fetchall()
        return [
            MoodReading(
                scope=scope,
                window=window,
                at=parse_ts(r[0]),
                value=r[1],
                band=r[2],
                components=json.loads(r[3] or "{}"),
                sample_size=r[4] or 0,
                confidence=r[5] or 0.0,
                spam_count=r[6] or 0,
                set_aside=r[7] or 0,
                models=tuple(json.loads(r[8] or "[]")),
            )
            for r in rows
        ]

    @locked
    def reading_norm(
        self, scope: Scope, window: str, since: datetime, until: datetime
    ) -> tuple[float | None, timedelta]:
        """Mean value of the scope's readings in ``[since, until)``, and the span they cover."""
        [row] = self.db.execute(
            "SELECT AVG(value), MIN(at), MAX(at) FROM readings"
            " WHERE scope = ? AND window = ? AND at >= ? AND at < ? AND value IS NOT NULL",
            [scope.key(), window, iso(since), iso(until)],
        ).fetchall()
        if row[0] is None:
            return None, timedelta(0)
        return float(row[0]), parse_ts(row[2]) - parse_ts(row[1])

    @locked
    def last_reading(
        self, scope: Scope, window: str, after: datetime, until: datetime
    ) -> tuple[float | None, str] | None:
        """Value and band of the scope's newest reading in ``(after, until]``, if any."""
        row = self.db.execute(
            "SELECT value, band FROM readings WHERE scope = ? AND window = ?"
            " AND at > ? AND at <= ? ORDER BY at DESC LIMIT 1",
            [scope.key(), window, iso(after), iso(until)],
        ).fetchone()
        return (row[0], row[1]) if row else None

    @locked
    def count_alerts_between(self, after: datetime, until: datetime) -> int:
        """Alerts raised in ``(after, until]``."""
        [[n]] = self.db.execute(
            "SELECT COUNT(*) FROM alerts WHERE at > ? AND at <= ?", [iso(after), iso(until)]
        ).fetchall()
        return int(n)

    @locked
    def alerts_between(self, since: datetime, until: datetime) -> list[Alert]:
        rows = self.db.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.at >= ? AND a.at <= ?"
            " ORDER BY a.at, a.key",
            [iso(since), iso(until)],
        ).fetchall()
        return [alert_from_row(r) for r in rows]

    @locked
    def alerts_about(self, scope: Scope, until: datetime) -> list[Alert]:
        """The alerts about exactly ``scope`` raised before ``until``, oldest first (what an
        alert's track record counts, ``bot.track.record``)."""
        rows = self.db.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.scope = ? AND a.at < ?"
            " ORDER BY a.at, a.key",
            [scope.key(), iso(until)],
        ).fetchall()
        return [alert_from_row(r) for r in rows]

    # ------------------------------------------------------------------ outbox

    @locked
    def pending_outbox(self, sink: str, limit: int = 100) -> list[tuple[Alert, str, datetime]]:
        """Outbox rows of ``sink`` neither sent nor given up: (alert, target, queued at),
        oldest first. "Queued at" is the wall-clock time the row was created, not the
        alert's message time (a replay raises alerts dated years ago, queued now)."""
        rows = self.db.execute(
            f"SELECT {ALERT_COLUMNS}, o.target, o.created_at FROM outbox o"
            " JOIN alerts a ON a.key = o.alert_key"
            " WHERE o.sink = ? AND o.sent_at IS NULL AND o.given_up IS NULL"
            " ORDER BY a.at, o.alert_key LIMIT ?",
            [sink, limit],
        ).fetchall()
        return [(alert_from_row(r), r[9], parse_ts(r[10])) for r in rows]

    @locked
    def claim_outbox(
        self, sink: str, worker: str, now: datetime, lease_s: float, limit: int = 100
    ) -> list[tuple[Alert, str, datetime]]:
        """Claim up to ``limit`` of ``sink``'s unsent rows for ``worker`` until ``now`` +
        ``lease_s``, and return them as :meth:`pending_outbox` does, oldest alert first.

        A row is claimable when nobody holds it, its lease ran out (its worker crashed or
        stalled), or ``worker`` holds it already. On PostgreSQL the rows are picked ``FOR
        UPDATE SKIP LOCKED``: workers claiming at once each get other rows without waiting
        for one another, and no row goes to two. SQLite's writes are serialised anyway.
        """
        until = iso(now + timedelta(seconds=lease_s))
        skip_locked = " FOR UPDATE OF o SKIP LOCKED" if self.backend == "postgresql" else ""
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET claimed_by = ?, claimed_until = ?"
                " WHERE (alert_key, sink, target) IN ("
                "  SELECT o.alert_key, o.sink, o.target FROM outbox o"
                "  JOIN alerts a ON a.key = o.alert_key"
                "  WHERE o.sink = ? AND o.sent_at IS NULL AND o.given_up IS NULL"
                "  AND (o.claimed_until IS NULL OR o.claimed_until < ? OR o.claimed_by = ?)"
                f"  ORDER BY a.at, o.alert_key LIMIT ?{skip_locked})",
                [worker, until, sink, iso(now), worker, limit],
            )
            rows = db.execute(
                f"SELECT {ALERT_COLUMNS}, o.target, o.created_at FROM outbox o"
                " JOIN alerts a ON a.key = o.alert_key"
                " WHERE o.sink = ? AND o.claimed_by = ? AND o.claimed_until = ?"
                " AND o.sent_at IS NULL AND o.given_up IS NULL"
                " ORDER BY a.at, o.alert_key",
                [sink, worker, until],
            ).fetchall()
        return [(alert_from_row(r), r[9], parse_ts(r[10])) for r in rows]

    @locked
    def hold_claim(
        self, alert_key: str, sink: str, target: str, worker: str, now: datetime, lease_s: float
    ) -> bool:
        """Renew ``worker``'s claim on one unsent row right before sending it; False when
        the row is no longer its to send (the lease ran out and another worker took it, or
        it was sent or given up meanwhile), so a slow worker never sends a row twice."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE outbox SET claimed_until = ?"
                " WHERE alert_key = ? AND sink = ? AND target = ? AND claimed_by = ?"
                " AND sent_at IS NULL AND given_up IS NULL",
                [iso(now + timedelta(seconds=lease_s)), alert_key, sink, target, worker],
            ).rowcount
        return bool(changed)

    @locked
    def release_claims(self, worker: str) -> int:
        """Let go of every unsent row ``worker`` holds (a clean stop), so another worker can
        take them at once rather than after their lease."""
        with self.transaction() as db:
            return int(
                db.execute(
                    "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL"
                    " WHERE claimed_by = ? AND sent_at IS NULL",
                    [worker],
                ).rowcount
            )

    @locked
    def mark_sent(self, alert_key: str, sink: str, target: str, now: datetime) -> None:
        """Record a delivery. Called right after each send, so a crash repeats at most one."""
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1"
                " WHERE alert_key = ? AND sink = ? AND target = ?",
                [iso(now), alert_key, sink, target],
            )

    @locked
    def mark_attempt(self, alert_key: str, sink: str, target: str, error: str) -> None:
        """Record a failed send; the row stays pending (it is retried until too old)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?"
                " WHERE alert_key = ? AND sink = ? AND target = ?",
                [error[:500], alert_key, sink, target],
            )

    @locked
    def count_unsent(self) -> int:
        """Outbox rows of every sink still waiting to be sent (not the given-up ones)."""
        [[n]] = self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND given_up IS NULL"
        ).fetchall()
        return int(n)

    @locked
    def count_abandoned(self) -> int:
        """Outbox rows abandoned as too old: alerts that never reached their target."""
        [[n]] = self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND given_up = ?", [TOO_OLD]
        ).fetchall()
        return int(n)

    @locked
    def sent_since(self, sink: str, target: str, since: datetime) -> int:
        """How many alerts ``target`` has been sent since ``since`` (for the daily cap)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sink = ? AND target = ? AND sent_at >= ?",
            [sink, target, iso(since)],
        ).fetchone()
        return int(row[0])

    @locked
    def give_up(self, alert_key: str, sink: str, target: str, reason: str, now: datetime) -> None:
        """Stop trying an outbox row, keeping why: on purpose (capped, filtered, the recipient
        is gone: ``reason`` is also the row's ``last_error``) or as too old (:data:`TOO_OLD`:
        ``last_error`` keeps the last delivery error, which is what the operator needs)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET given_up = ?, given_up_at = ?,"
                " last_error = CASE WHEN ? = ? THEN last_error ELSE ? END"
                " WHERE alert_key = ? AND sink = ? AND target = ? AND sent_at IS NULL",
                [reason, iso(now), reason, TOO_OLD, reason, alert_key, sink, target],
            )

    def abandon(self, alert_key: str, sink: str, target: str, now: datetime) -> None:
        """Stop trying an outbox row that is too old to be worth sending."""
        self.give_up(alert_key, sink, target, TOO_OLD, now)

    # ------------------------------------------------------------------ rebuilding

    @locked
    def supersede_from(self, start: datetime) -> int:
        """Clear the index's history from ``start`` so it can be computed again.

        In one transaction: alerts at or after ``start`` move to ``alerts_superseded`` (their
        sent outbox rows stay as the record of delivery; unsent ones are dropped, as their
        alert no longer stands); readings from ``start`` are deleted; alert rule state is
        reset and the tick and minute checkpoints removed, so the index runs again from the
        first hour of history. Rule state (an extreme band entered, a rule's cooldown, the
        last daily close processed) is only exact when replayed from there; the ticks before
        ``start`` write the same readings again and find their alerts already stored. Returns
        how many alerts moved.
        """
        now = iso(datetime.now(UTC))
        with self.transaction() as db:
            moved = db.execute(
                _SUPERSEDE,
                [now, iso(start)],
            ).rowcount
            db.execute(
                "DELETE FROM outbox WHERE sent_at IS NULL AND alert_key IN"
                " (SELECT key FROM alerts WHERE at >= ?)",
                [iso(start)],
            )
            db.execute("DELETE FROM alerts WHERE at >= ?", [iso(start)])
            db.execute("DELETE FROM readings WHERE at >= ?", [iso(start)])
            db.execute("DELETE FROM alert_state")
            db.execute("DELETE FROM checkpoints WHERE name = ?", [MINUTE_CHECKPOINT])
            db.execute("DELETE FROM checkpoints WHERE name = ?", [TICK_CHECKPOINT])
        return moved

    @locked
    def count_alerts_since(self, start: datetime) -> int:
        [[n]] = self.db.execute("SELECT COUNT(*) FROM alerts WHERE at >= ?", [iso(start)])
        return int(n)
