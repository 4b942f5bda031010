"""SQLite storage through sqlite-utils: migrations, idempotent upserts, the alert outbox.

Every write is keyed, so a replay or a restart never duplicates: messages on
``(platform, channel, message_id)``, scores on the same key, readings on
``(scope, window, at)``, alerts on their dedupe key, outbox rows on
``(alert_key, sink, target)``. The SQL is plain (no SQLite-only syntax beyond
``INSERT OR IGNORE`` done through sqlite-utils) so a PostgreSQL backend can follow.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
from sqlite_utils import Migrations

from bot.errors import StoreError
from bot.mood.index import Point
from bot.prefs.community import CommunitySettings
from bot.prefs.subscriptions import Subscription
from bot.types import Alert, MoodReading, Scope
from connectors.types import Candle, Message, Ticker
from nlp.assets import AssetTable
from nlp.types import Score

log = logging.getLogger(__name__)

MESSAGE_KEY = ("platform", "channel", "message_id")

migrations = Migrations("moodring")

#: The checkpoint holding the index's last tick (message time).
TICK_CHECKPOINT = "index_tick"

F = TypeVar("F")


def _locked(method: F) -> F:
    """Serialise a Store method: the stages call the store from worker threads, and one
    SQLite connection must not interleave two threads' transactions."""

    @functools.wraps(method)  # type: ignore[arg-type]
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)  # type: ignore[operator]

    return wrapper  # type: ignore[return-value]


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    """The v0 schema."""
    db["messages"].create(
        {
            "platform": str,
            "channel": str,
            "message_id": str,
            "community": str,
            "author": str,
            "text": str,  # as received; NULL once purged by retention
            "norm_text": str,  # normalised for the model
            "created_at": str,  # ISO 8601 UTC
            "likes": int,
            "replies": int,
            "reposts": int,
            "language": str,
            "public": int,
            "tag": str,
            "assets": str,  # JSON list of symbols
            "spam_reason": str,  # NULL when clean
            "set_aside": str,  # NULL, or why the index leaves it out (e.g. "lang:es")
            "status": str,  # new | scored | failed
            "error": str,
            "ingested_at": str,
        },
        pk=MESSAGE_KEY,
        not_null={"created_at", "status"},
    )
    db["messages"].create_index(["created_at"])
    db["messages"].create_index(["status", "created_at"])
    db["message_assets"].create(
        {"platform": str, "channel": str, "message_id": str, "asset": str, "created_at": str},
        pk=(*MESSAGE_KEY, "asset"),
    )
    db["message_assets"].create_index(["asset", "created_at"])
    db["scores"].create(
        {
            "platform": str,
            "channel": str,
            "message_id": str,
            "p_neg": float,
            "p_neu": float,
            "p_pos": float,
            "label": str,
            "model_id": str,
            "scored_at": str,
        },
        pk=MESSAGE_KEY,
    )
    db["prices"].create(
        {
            "asset": str,
            "interval": str,
            "ts": str,
            "open": float,
            "high": float,
            "low": float,
            "close": float,
            "volume": float,
            "source": str,
        },
        pk=("asset", "interval", "ts"),
    )
    db["readings"].create(
        {
            "scope": str,
            "window": str,
            "at": str,
            "asset": str,
            "community": str,
            "platform": str,
            "value": float,
            "band": str,
            "components": str,
            "sample_size": int,
            "confidence": float,
            "spam_count": int,
            "set_aside": int,
        },
        pk=("scope", "window", "at"),
    )
    db["alerts"].create(
        {
            "key": str,
            "kind": str,
            "scope": str,
            "at": str,
            "title": str,
            "detail": str,
            "value": float,
            "previous": float,
            "evidence": str,
            "created_at": str,
        },
        pk="key",
    )
    db["alerts"].create_index(["at"])
    db["alert_state"].create({"scope": str, "window": str, "state": str}, pk=("scope", "window"))
    db["subscriptions"].create(
        {
            "id": int,
            "platform": str,
            "community": str,
            "target": str,
            "user": str,
            "asset": str,
            "kinds": str,
            "created_at": str,
        },
        pk="id",
    )
    db["outbox"].create(
        {
            "alert_key": str,
            "sink": str,
            "target": str,
            "created_at": str,
            "sent_at": str,
            "attempts": int,
            "last_error": str,
        },
        pk=("alert_key", "sink", "target"),
    )
    db["outbox"].create_index(["sent_at"])
    db["checkpoints"].create({"name": str, "value": str, "updated_at": str}, pk="name")


@migrations()
def m002_chat_inbox_and_subscriptions(db: sqlite_utils.Database) -> None:
    """Raw chat updates stored before the platform is told they arrived; richer subscriptions."""
    db["chat_inbox"].create(
        {
            "platform": str,
            "update_id": int,
            "payload": str,  # the raw update, JSON
            "received_at": str,
            "done_at": str,  # NULL until processed
            "error": str,
        },
        pk=("platform", "update_id"),
    )
    db["chat_inbox"].create_index(["platform", "done_at"])
    subs = db["subscriptions"]
    subs.add_column("daily_cap", int)
    subs.add_column("quiet_start", int)  # hour of day, subscriber's time zone
    subs.add_column("quiet_end", int)
    subs.add_column("tz", str)
    subs.add_column("active", int)
    subs.create_index(["platform", "target"])


@migrations()
def m003_community_settings(db: sqlite_utils.Database) -> None:
    """Settings a community's moderators chose (one JSON document per community)."""
    db["community_settings"].create(
        {"platform": str, "community": str, "settings": str, "updated_at": str},
        pk=("platform", "community"),
    )


@migrations()
def m004_author_metadata(db: sqlite_utils.Database) -> None:
    """What the platform says about a message's author (X: followers, account age)."""
    messages = db["messages"]
    messages.add_column("author_followers", int)
    messages.add_column("author_created_at", str)
    messages.add_column("author_verified", int)
    messages.add_column("author_weight", float)  # bot.mood.spam.author_weight; NULL reads as 1


@migrations()
def m005_health_usage_levels(db: sqlite_utils.Database) -> None:
    """Connector health for ``moodring status``, paid API usage, moderators' manual levels."""
    db["connector_health"].create(
        {
            "name": str,
            "health": str,
            "updated_at": str,
        },  # health: JSON of bot.pipeline.supervisor.Health
        pk="name",
    )
    db["api_usage"].create({"name": str, "month": str, "reads": int}, pk=("name", "month"))
    db["manual_levels"].create(
        {
            "platform": str,
            "community": str,
            "asset": str,
            "price": float,
            "added_by": str,
            "added_at": str,
        },
        pk=("platform", "community", "asset", "price"),
    )
    db["tickers"].create(
        {
            "asset": str,
            "at": str,
            "last": float,
            "change_24h_pct": float,
            "volume_24h": float,
            "funding_rate": float,
            "open_interest": float,
            "source": str,
        },
        pk=("asset", "at"),
    )


@migrations()
def m006_asset_aliases(db: sqlite_utils.Database) -> None:
    """Subscriptions and manual levels saved under a coin's alias move to its symbol.

    Before commands resolved aliases, ``/subscribe bitcoin`` stored the asset "BITCOIN", but
    readings and alerts only ever carry the symbol (BTC), so such a subscription never fired
    and ``/levels bitcoin add`` set a level no chart showed.
    """
    for word, symbol in AssetTable.load().cashtags.items():
        legacy = word.upper()
        if legacy == symbol:
            continue
        # A user who also holds the symbol's subscription keeps that one (no double alerts).
        db.execute(
            "DELETE FROM subscriptions WHERE asset = ? AND EXISTS (SELECT 1 FROM subscriptions s"
            " WHERE s.platform = subscriptions.platform AND s.target = subscriptions.target"
            " AND s.user = subscriptions.user AND s.asset = ?)",
            [legacy, symbol],
        )
        db.execute("UPDATE subscriptions SET asset = ? WHERE asset = ?", [symbol, legacy])
        db.execute("UPDATE OR IGNORE manual_levels SET asset = ? WHERE asset = ?", [symbol, legacy])
        db.execute("DELETE FROM manual_levels WHERE asset = ?", [legacy])  # already there


@migrations()
def m007_reading_models(db: sqlite_utils.Database) -> None:
    """Readings name the models that scored their messages, so history never silently mixes
    two models (``moodring rescore`` re-scores and rebuilds)."""
    db["readings"].add_column("models", str)  # JSON list of model ids; NULL before migration 7
    # Alerts a rebuild replaced, kept with their delivery records: what users were sent stays.
    db["alerts_superseded"].create({**db["alerts"].columns_dict, "superseded_at": str}, pk="key")


def iso(ts: datetime) -> str:
    """A UTC timestamp as sortable ISO text (``2022-06-25T13:39:06+00:00``)."""
    return ts.astimezone(UTC).isoformat(timespec="seconds")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message row with what intake worked out about it."""

    message: Message
    norm_text: str
    assets: tuple[str, ...]
    spam_reason: str | None
    set_aside: str | None
    author_weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ScoredRow:
    """What the index needs of one scored message."""

    key: str
    created_at: datetime
    author: str
    community: str
    platform: str
    polarity: float
    engagement: int
    spam: bool
    set_aside: bool
    public: bool
    text: str
    assets: tuple[str, ...]
    reputation: float = 1.0
    model_id: str = ""

    def to_point(self) -> Point:
        """The index's view of this message."""
        return Point(
            created_at=self.created_at,
            author=self.author,
            polarity=self.polarity,
            engagement=self.engagement,
            spam=self.spam,
            set_aside=self.set_aside,
            message_key=self.key,
            text=self.text,
            public=self.public,
            community=self.community,
            reputation=self.reputation,
            model_id=self.model_id,
            n_assets=max(1, len(self.assets)),
        )


_ALERT_COLUMNS = "a.key, a.kind, a.scope, a.at, a.title, a.detail, a.value, a.previous, a.evidence"


def _alert_from_row(r: Sequence[Any]) -> Alert:
    """An ``Alert`` from the first nine columns of a row selected with ``_ALERT_COLUMNS``."""
    asset, community, platform = r[2].split("|")
    return Alert(
        key=r[0],
        kind=r[1],
        scope=Scope(asset, community, platform),
        at=parse_ts(r[3]),
        title=r[4],
        detail=r[5] or "",
        value=r[6],
        previous=r[7],
        evidence=tuple(json.loads(r[8] or "[]")),
    )


class Store:
    """The database. Opens (creating if needed), migrates, and offers keyed reads/writes."""

    def __init__(self, path: Path | str, *, memory: bool = False) -> None:
        self._lock = threading.RLock()
        try:
            if memory:
                conn = sqlite3.connect(":memory:", check_same_thread=False)
                self.db = sqlite_utils.Database(conn)
            else:
                conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
                self.db = sqlite_utils.Database(conn)
                self.db.enable_wal()
                # NORMAL under WAL survives a process crash (kill -9); only power loss can
                # roll back the last commits (shared/PLATFORM_NOTES.md).
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute("PRAGMA busy_timeout=30000")
            migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        self.path = path

    @_locked
    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction (``BEGIN IMMEDIATE``, so it never upgrades mid-way)."""
        with self._lock:
            yield from self._transaction()

    def _transaction(self) -> Iterator[sqlite_utils.Database]:
        if self.db.conn.in_transaction:
            with self.db.atomic():
                yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.conn.rollback()
            raise
        else:
            self.db.conn.commit()

    # ------------------------------------------------------------------ messages

    @_locked
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """A read-only query, run under the store's lock."""
        return self.db.execute(sql, list(params)).fetchall()

    @_locked
    def add_messages(self, items: Sequence[StoredMessage], now: datetime) -> int:
        """Store new messages; ones already stored are left untouched. Returns how many were new."""
        added = 0
        with self.transaction() as db:
            for item in items:
                m = item.message
                cur = db.execute(
                    "INSERT OR IGNORE INTO messages (platform, channel, message_id, community,"
                    " author, text, norm_text, created_at, likes, replies, reposts, language,"
                    " public, tag, assets, spam_reason, set_aside, status, ingested_at,"
                    " author_followers, author_created_at, author_verified, author_weight)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', ?, ?, ?, ?,"
                    " ?)",
                    [
                        m.platform,
                        m.channel,
                        m.message_id,
                        m.community,
                        m.author,
                        m.text,
                        item.norm_text,
                        iso(m.created_at),
                        m.likes,
                        m.replies,
                        m.reposts,
                        m.language,
                        int(m.public),
                        m.tag,
                        json.dumps(list(item.assets)),
                        item.spam_reason,
                        item.set_aside,
                        iso(now),
                        m.author_followers,
                        None if m.author_created_at is None else iso(m.author_created_at),
                        None if m.author_verified is None else int(m.author_verified),
                        item.author_weight,
                    ],
                )
                if cur.rowcount:
                    added += 1
                    for asset in item.assets:
                        db.execute(
                            "INSERT OR IGNORE INTO message_assets VALUES (?, ?, ?, ?, ?)",
                            [m.platform, m.channel, m.message_id, asset, iso(m.created_at)],
                        )
        return added

    @_locked
    def stored_texts(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], str | None]:
        """The stored raw text of the keys that exist (``None`` where retention purged it)."""
        out = {}
        for key in keys:
            row = self.db.execute(
                "SELECT text FROM messages WHERE platform = ? AND channel = ? AND message_id = ?",
                list(key),
            ).fetchone()
            if row is not None:
                out[key] = row[0]
        return out

    @_locked
    def delete_message(self, platform: str, channel: str, message_id: str) -> bool:
        """A platform reported a deletion: the message leaves the store and future readings."""
        key = [platform, channel, message_id]
        where = " WHERE platform = ? AND channel = ? AND message_id = ?"
        with self.transaction() as db:
            for table in ("scores", "message_assets"):
                db.execute(f"DELETE FROM {table}" + where, key)  # table names are ours
            return bool(db.execute("DELETE FROM messages" + where, key).rowcount)

    @_locked
    def last_message_id(self, platform: str, channel: str) -> int | None:
        """The newest numeric message id stored for a channel (Discord ids grow with time)."""
        row = self.db.execute(
            "SELECT MAX(CAST(message_id AS INTEGER)) FROM messages"
            " WHERE platform = ? AND channel = ?",
            [platform, channel],
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    @_locked
    def update_edited(self, items: Sequence[StoredMessage]) -> int:
        """An edited message: new text, assets and marks; scored again (status back to new)."""
        with self.transaction() as db:
            for item in items:
                m = item.message
                key = [m.platform, m.channel, m.message_id]
                db.execute(
                    "UPDATE messages SET text = ?, norm_text = ?, assets = ?, spam_reason = ?,"
                    " set_aside = ?, status = 'new', error = NULL"
                    " WHERE platform = ? AND channel = ? AND message_id = ?",
                    [
                        m.text,
                        item.norm_text,
                        json.dumps(list(item.assets)),
                        item.spam_reason,
                        item.set_aside,
                        *key,
                    ],
                )
                db.execute(
                    "DELETE FROM message_assets WHERE platform = ? AND channel = ?"
                    " AND message_id = ?",
                    key,
                )
                for asset in item.assets:
                    db.execute(
                        "INSERT OR IGNORE INTO message_assets VALUES (?, ?, ?, ?, ?)",
                        [*key, asset, iso(m.created_at)],
                    )
        return len(items)

    @_locked
    def unscored(self, limit: int) -> list[tuple[tuple[str, str, str], str]]:
        """Keys and normalised texts of stored messages not yet scored, oldest first."""
        rows = self.db.execute(
            "SELECT platform, channel, message_id, norm_text FROM messages"
            " WHERE status = 'new' ORDER BY created_at, platform, channel, message_id LIMIT ?",
            [limit],
        ).fetchall()
        return [((r[0], r[1], r[2]), r[3] or "") for r in rows]

    def save_scores(
        self, items: Sequence[tuple[tuple[str, str, str], Score]], now: datetime
    ) -> None:
        """Store scores and mark their messages scored, in one transaction."""
        with self.transaction() as db:
            for (platform, channel, message_id), s in items:
                db.execute(
                    "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        platform,
                        channel,
                        message_id,
                        s.p_neg,
                        s.p_neu,
                        s.p_pos,
                        s.label,
                        s.model_id,
                        iso(now),
                    ],
                )
                db.execute(
                    "UPDATE messages SET status = 'scored', error = NULL"
                    " WHERE platform = ? AND channel = ? AND message_id = ?",
                    [platform, channel, message_id],
                )

    @_locked
    def mark_failed(self, key: tuple[str, str, str], error: str) -> None:
        """Set a message aside that the scorer cannot process (a poison message)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE messages SET status = 'failed', error = ?"
                " WHERE platform = ? AND channel = ? AND message_id = ?",
                [error[:500], *key],
            )

    @_locked
    def scored_since(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        scored_after: int | None = None,
    ) -> list[ScoredRow]:
        """Scored messages created in ``[since, until]`` (and, with ``scored_after``, whose
        score row is newer than that ``scores_mark()``), oldest first."""
        sql = (
            "SELECT m.platform, m.channel, m.message_id, m.created_at, m.author, m.community,"
            " s.p_pos - s.p_neg, m.likes + m.replies + m.reposts, m.spam_reason, m.set_aside,"
            " m.public, m.norm_text, m.assets, m.author_weight, s.model_id"
            # Late lookups start from the few score rows added recently (a rowid range;
            # CROSS JOIN keeps SQLite from scanning the messages instead).
            + (
                " FROM scores s CROSS JOIN messages m"
                if scored_after is not None
                else " FROM messages m JOIN scores s"
            )
            + " ON s.platform = m.platform"
            " AND s.channel = m.channel AND s.message_id = m.message_id"
            " WHERE m.status = 'scored' AND m.created_at >= ?"
        )
        params: list[Any] = [iso(since)]
        if until is not None:
            sql += " AND m.created_at <= ?"
            params.append(iso(until))
        if scored_after is not None:
            sql += " AND s.rowid > ?"
            params.append(scored_after)
        sql += " ORDER BY m.created_at, m.platform, m.channel, m.message_id"
        return [
            ScoredRow(
                key=f"{r[0]}:{r[1]}:{r[2]}",
                created_at=parse_ts(r[3]),
                author=r[4] or "",
                community=r[5] or "",
                platform=r[0],
                polarity=float(r[6]),
                engagement=int(r[7] or 0),
                spam=r[8] is not None,
                set_aside=r[9] is not None,
                public=bool(r[10]),
                text=r[11] or "",
                assets=tuple(json.loads(r[12] or "[]")),
                reputation=1.0 if r[13] is None else float(r[13]),
                model_id=r[14] or "",
            )
            for r in self.db.execute(sql, params).fetchall()
        ]

    @_locked
    def recent_messages(self, since: datetime) -> list[tuple[Message, str]]:
        """Messages (raw text and normalised text) created since ``since``, for warm-ups."""
        rows = self.db.execute(
            "SELECT platform, community, channel, message_id, author, text, created_at,"
            " likes, replies, reposts, language, public, tag, norm_text, author_followers,"
            " author_created_at, author_verified FROM messages"
            " WHERE created_at >= ? ORDER BY created_at",
            [iso(since)],
        ).fetchall()
        out = []
        for r in rows:
            msg = Message(
                platform=r[0],
                community=r[1] or "",
                channel=r[2],
                message_id=r[3],
                author=r[4] or "",
                text=r[5] or "",
                created_at=parse_ts(r[6]),
                likes=r[7] or 0,
                replies=r[8] or 0,
                reposts=r[9] or 0,
                language=r[10],
                public=bool(r[11]),
                tag=r[12],
                author_followers=r[14],
                author_created_at=None if r[15] is None else parse_ts(r[15]),
                author_verified=None if r[16] is None else bool(r[16]),
            )
            out.append((msg, r[13] or ""))
        return out

    @_locked
    def spam_reasons(
        self, platform: str, community: str, since: datetime, until: datetime
    ) -> list[tuple[str, int]]:
        """How many of a community's messages in ``[since, until]`` were marked spam, by
        reason, most first."""
        return [
            (r[0], int(r[1]))
            for r in self.db.execute(
                "SELECT spam_reason, COUNT(*) FROM messages WHERE platform = ? AND community = ?"
                " AND created_at >= ? AND created_at <= ? AND spam_reason IS NOT NULL"
                " GROUP BY spam_reason ORDER BY COUNT(*) DESC, spam_reason",
                [platform, community, iso(since), iso(until)],
            ).fetchall()
        ]

    @_locked
    def scores_mark(self) -> int:
        """The newest score row's rowid (0 when none): later scores have larger ones."""
        row = self.db.execute("SELECT MAX(rowid) FROM scores").fetchone()
        return int(row[0] or 0)

    @_locked
    def newest_scored_time(self) -> datetime | None:
        """Creation time of the newest scored message: every stored message before it is
        scored too (scoring goes oldest first), so the index may tick up to it."""
        row = self.db.execute(
            "SELECT MAX(created_at) FROM messages WHERE status = 'scored'"
        ).fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    @_locked
    def newest_message_time(self) -> datetime | None:
        row = self.db.execute("SELECT MAX(created_at) FROM messages").fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    @_locked
    def oldest_message_time(self) -> datetime | None:
        row = self.db.execute("SELECT MIN(created_at) FROM messages").fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    @_locked
    def counts(self) -> dict[str, int]:
        """Messages by status, plus spam and set-aside totals."""
        out = {
            row[0]: row[1]
            for row in self.db.execute("SELECT status, COUNT(*) FROM messages GROUP BY status")
        }
        out["spam"] = self.db.execute(
            "SELECT COUNT(*) FROM messages WHERE spam_reason IS NOT NULL"
        ).fetchone()[0]
        out["set_aside"] = self.db.execute(
            "SELECT COUNT(*) FROM messages WHERE set_aside IS NOT NULL"
        ).fetchone()[0]
        return out

    @_locked
    def purge_texts(self, older_than: datetime) -> int:
        """Retention: forget the text of messages older than ``older_than`` (scores stay)."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE messages SET text = NULL, norm_text = NULL"
                " WHERE created_at < ? AND status != 'new' AND text IS NOT NULL",
                [iso(older_than)],
            )
            return cur.rowcount

    # ------------------------------------------------------------------ prices

    @_locked
    def add_candles(self, candles: Sequence[Candle], source: str) -> int:
        """Upsert candles (any assets and intervals) in one transaction; how many."""
        with self.transaction() as db:
            for c in candles:
                db.execute(
                    "INSERT OR REPLACE INTO prices (asset, interval, ts, open, high, low, close,"
                    " volume, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        c.asset,
                        c.interval,
                        iso(c.ts),
                        c.open,
                        c.high,
                        c.low,
                        c.close,
                        c.volume,
                        source,
                    ],
                )
        return len(candles)

    @_locked
    def candles(
        self, asset: str, interval: str = "1d", until: datetime | None = None
    ) -> list[Candle]:
        """Stored candles of ``asset`` opened at or before ``until``, oldest first."""
        sql = (
            "SELECT ts, open, high, low, close, volume FROM prices WHERE asset = ? AND interval = ?"
        )
        params: list[Any] = [asset, interval]
        if until is not None:
            sql += " AND ts <= ?"
            params.append(iso(until))
        rows = self.db.execute(sql + " ORDER BY ts", params).fetchall()
        return [
            Candle(asset, interval, parse_ts(r[0]), r[1], r[2], r[3], r[4], r[5] or 0.0)
            for r in rows
        ]

    @_locked
    def newest_candle_time(
        self, asset: str, interval: str, until: datetime | None = None
    ) -> datetime | None:
        """Open time of the newest stored candle of ``asset`` at ``interval`` (opened at or
        before ``until``)."""
        sql = "SELECT MAX(ts) FROM prices WHERE asset = ? AND interval = ?"
        params: list[Any] = [asset, interval]
        if until is not None:
            sql += " AND ts <= ?"
            params.append(iso(until))
        row = self.db.execute(sql, params).fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    @_locked
    def add_ticker(self, t: Ticker) -> None:
        """Keep an exchange's ticker (price, 24h change, funding, open interest)."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO tickers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    t.asset,
                    iso(t.at),
                    t.last,
                    t.change_24h_pct,
                    t.volume_24h,
                    t.funding_rate,
                    t.open_interest,
                    t.source,
                ],
            )

    @_locked
    def latest_ticker(self, asset: str, until: datetime | None = None) -> Ticker | None:
        """The newest stored ticker of ``asset`` at or before ``until``."""
        sql = "SELECT * FROM tickers WHERE asset = ?"
        params: list[Any] = [asset]
        if until is not None:
            sql += " AND at <= ?"
            params.append(iso(until))
        r = self.db.execute(sql + " ORDER BY at DESC LIMIT 1", params).fetchone()
        if r is None:
            return None
        return Ticker(r[0], parse_ts(r[1]), r[2], r[3], r[4], r[5], r[6], r[7] or "")

    @_locked
    def closes(self, asset: str, interval: str = "1d") -> list[tuple[str, float]]:
        return [
            (r[0], float(r[1]))
            for r in self.db.execute(
                "SELECT ts, close FROM prices WHERE asset = ? AND interval = ? ORDER BY ts",
                [asset, interval],
            )
        ]

    # ------------------------------------------------------------------ readings & alerts

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
                    "INSERT OR REPLACE INTO readings (scope, window, at, asset, community,"
                    " platform, value, band, components, sample_size, confidence, spam_count,"
                    " set_aside, models) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                            "INSERT OR IGNORE INTO outbox (alert_key, sink, target, created_at,"
                            " attempts) VALUES (?, ?, ?, ?, 0)",
                            [a.key, sink, target, iso(now)],
                        )
            for (scope, window), state in states.items():
                db.execute(
                    "INSERT OR REPLACE INTO alert_state VALUES (?, ?, ?)", [scope, window, state]
                )
            self._set_checkpoint(db, *checkpoint, now)
        return new

    @_locked
    def alert_state(self, scope: str, window: str) -> str:
        row = self.db.execute(
            "SELECT state FROM alert_state WHERE scope = ? AND window = ?", [scope, window]
        ).fetchone()
        return row[0] if row else ""

    @_locked
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

    @_locked
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

    @_locked
    def alerts_between(self, since: datetime, until: datetime) -> list[Alert]:
        rows = self.db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE a.at >= ? AND a.at <= ?"
            " ORDER BY a.at, a.key",
            [iso(since), iso(until)],
        ).fetchall()
        return [_alert_from_row(r) for r in rows]

    # ------------------------------------------------------------------ outbox

    @_locked
    def pending_outbox(self, sink: str, limit: int = 100) -> list[tuple[Alert, str, int]]:
        """Unsent outbox rows of ``sink``: (alert, target, attempts), oldest first."""
        rows = self.db.execute(
            f"SELECT {_ALERT_COLUMNS}, o.target, o.attempts FROM outbox o"
            " JOIN alerts a ON a.key = o.alert_key"
            " WHERE o.sink = ? AND o.sent_at IS NULL ORDER BY a.at, o.alert_key LIMIT ?",
            [sink, limit],
        ).fetchall()
        return [(_alert_from_row(r), r[9], r[10] or 0) for r in rows]

    @_locked
    def mark_sent(self, alert_key: str, sink: str, target: str, now: datetime) -> None:
        """Record a delivery. Called right after each send, so a crash repeats at most one."""
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1"
                " WHERE alert_key = ? AND sink = ? AND target = ?",
                [iso(now), alert_key, sink, target],
            )

    @_locked
    def mark_attempt(self, alert_key: str, sink: str, target: str, error: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?"
                " WHERE alert_key = ? AND sink = ? AND target = ?",
                [error[:500], alert_key, sink, target],
            )

    # ------------------------------------------------------------------ subscriptions

    @_locked
    def subscribe(self, sub: Subscription, now: datetime) -> None:
        """Add or update a subscription, keyed on (platform, target, user, asset)."""
        with self.transaction() as db:
            db.execute(
                "DELETE FROM subscriptions WHERE platform = ? AND target = ? AND user = ?"
                " AND asset = ?",
                [sub.platform, sub.target, sub.user, sub.asset],
            )
            db.execute(
                "INSERT INTO subscriptions (platform, community, target, user, asset, kinds,"
                " created_at, daily_cap, quiet_start, quiet_end, tz, active)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                [
                    sub.platform,
                    sub.community,
                    sub.target,
                    sub.user,
                    sub.asset,
                    ",".join(sub.kinds),
                    iso(now),
                    sub.daily_cap,
                    sub.quiet_start,
                    sub.quiet_end,
                    sub.tz,
                ],
            )

    @_locked
    def unsubscribe(self, platform: str, user: str, asset: str | None = None) -> int:
        """Remove a user's subscriptions (of one asset, or all); returns how many."""
        sql = "DELETE FROM subscriptions WHERE platform = ? AND user = ?"
        params: list[Any] = [platform, user]
        if asset is not None:
            sql += " AND asset = ?"
            params.append(asset)
        with self.transaction() as db:
            return db.execute(sql, params).rowcount

    @_locked
    def unsubscribe_target(self, platform: str, target: str) -> int:
        """Drop every subscription delivered to ``target`` (it blocked the bot or is gone)."""
        with self.transaction() as db:
            return db.execute(
                "DELETE FROM subscriptions WHERE platform = ? AND target = ?", [platform, target]
            ).rowcount

    @_locked
    def subscriptions(
        self, platform: str | None = None, user: str | None = None
    ) -> list[Subscription]:
        sql = (
            "SELECT platform, community, target, user, asset, kinds, daily_cap, quiet_start,"
            " quiet_end, tz FROM subscriptions WHERE active = 1"
        )
        params: list[Any] = []
        if platform is not None:
            sql += " AND platform = ?"
            params.append(platform)
        if user is not None:
            sql += " AND user = ?"
            params.append(user)
        return [
            Subscription(
                platform=r[0],
                community=r[1],
                target=r[2],
                user=r[3],
                asset=r[4],
                kinds=tuple(k for k in (r[5] or "").split(",") if k),
                daily_cap=r[6] if r[6] is not None else 10,
                quiet_start=r[7],
                quiet_end=r[8],
                tz=r[9] or "UTC",
            )
            for r in self.db.execute(sql + " ORDER BY id", params).fetchall()
        ]

    @_locked
    def sent_since(self, sink: str, target: str, since: datetime) -> int:
        """How many alerts ``target`` has been sent since ``since`` (for the daily cap)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sink = ? AND target = ? AND sent_at >= ?",
            [sink, target, iso(since)],
        ).fetchone()
        return int(row[0])

    @_locked
    def give_up(self, alert_key: str, sink: str, target: str, reason: str, attempts: int) -> None:
        """Stop trying an outbox row (capped, or the recipient is gone), keeping why."""
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = ?, last_error = ?"
                " WHERE alert_key = ? AND sink = ? AND target = ?",
                [attempts, reason, alert_key, sink, target],
            )

    @_locked
    def community_settings(self, platform: str, community: str) -> CommunitySettings:
        row = self.db.execute(
            "SELECT settings FROM community_settings WHERE platform = ? AND community = ?",
            [platform, community],
        ).fetchone()
        if not row:
            return CommunitySettings()
        data = json.loads(row[0])
        data["channels"] = tuple(data.get("channels", ()))
        return CommunitySettings(**data)

    @_locked
    def set_community_settings(
        self, platform: str, community: str, settings: CommunitySettings, now: datetime
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO community_settings VALUES (?, ?, ?, ?)",
                [platform, community, json.dumps(dataclasses.asdict(settings)), iso(now)],
            )

    # ------------------------------------------------------------------ chat inbox

    @_locked
    def save_updates(
        self, platform: str, updates: Sequence[tuple[int, str]], next_offset: int, now: datetime
    ) -> int:
        """Store raw updates and the next offset in one transaction; returns how many were new.

        Only after this commits may the platform be asked for more (which confirms these).
        """
        added = 0
        with self.transaction() as db:
            for update_id, payload in updates:
                cur = db.execute(
                    "INSERT OR IGNORE INTO chat_inbox (platform, update_id, payload, received_at)"
                    " VALUES (?, ?, ?, ?)",
                    [platform, update_id, payload, iso(now)],
                )
                added += cur.rowcount
            self._set_checkpoint(db, f"{platform}:offset", str(next_offset), now)
        return added

    @_locked
    def next_offset(self, platform: str) -> int | None:
        value = self.checkpoint(f"{platform}:offset")
        return int(value) if value is not None else None

    @_locked
    def pending_updates(self, platform: str, limit: int = 100) -> list[tuple[int, str]]:
        """Stored updates not yet processed, oldest first."""
        return [
            (int(r[0]), r[1])
            for r in self.db.execute(
                "SELECT update_id, payload FROM chat_inbox WHERE platform = ? AND done_at IS NULL"
                " ORDER BY update_id LIMIT ?",
                [platform, limit],
            ).fetchall()
        ]

    @_locked
    def mark_update_done(
        self, platform: str, update_id: int, now: datetime, error: str | None = None
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE chat_inbox SET done_at = ?, error = ? WHERE platform = ? AND update_id = ?",
                [iso(now), error, platform, update_id],
            )

    # ------------------------------------------------------------------ checkpoints

    @staticmethod
    def _set_checkpoint(db: sqlite_utils.Database, name: str, value: str, now: datetime) -> None:
        db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)", [name, value, iso(now)])

    @_locked
    def set_checkpoint(self, name: str, value: str, now: datetime) -> None:
        with self.transaction() as db:
            self._set_checkpoint(db, name, value, now)

    @_locked
    def checkpoint(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM checkpoints WHERE name = ?", [name]).fetchone()
        return row[0] if row else None

    @_locked
    def delete_checkpoint(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM checkpoints WHERE name = ?", [name])

    def checkpoint_time(self) -> datetime | None:
        """The index's last tick (message time), if it has ticked."""
        value = self.checkpoint(TICK_CHECKPOINT)
        return parse_ts(value) if value else None

    # ------------------------------------------------------------------ rescoring

    @_locked
    def model_counts(self) -> dict[str, int]:
        """Scored messages per model id, most first."""
        rows = self.db.execute(
            "SELECT model_id, COUNT(*) FROM scores GROUP BY model_id ORDER BY COUNT(*) DESC"
        ).fetchall()
        return {r[0] or "": r[1] for r in rows}

    @_locked
    def rescore_counts(self, model_id: str, since: datetime | None) -> tuple[int, int]:
        """Scored messages (from ``since``) on another model: (with text, text purged)."""
        [row] = self.db.execute(
            "SELECT SUM(m.norm_text IS NOT NULL), SUM(m.norm_text IS NULL) FROM messages m"
            " JOIN scores s ON s.platform = m.platform AND s.channel = m.channel"
            " AND s.message_id = m.message_id"
            " WHERE m.status = 'scored' AND s.model_id IS NOT ? AND m.created_at >= ?",
            [model_id, iso(since) if since else ""],
        ).fetchall()
        return int(row[0] or 0), int(row[1] or 0)

    @_locked
    def to_rescore(
        self,
        model_id: str,
        since: datetime | None,
        after: tuple[str, str, str, str] | None,
        limit: int,
    ) -> list[tuple[tuple[str, str, str], datetime, str]]:
        """The next scored messages with text whose score came from another model, oldest
        first after ``after`` (created_at, platform, channel, message_id): keys, times, texts."""
        sql = (
            "SELECT m.platform, m.channel, m.message_id, m.created_at, m.norm_text"
            " FROM messages m JOIN scores s ON s.platform = m.platform"
            " AND s.channel = m.channel AND s.message_id = m.message_id"
            " WHERE m.status = 'scored' AND m.norm_text IS NOT NULL"
            " AND s.model_id IS NOT ? AND m.created_at >= ?"
        )
        params: list[Any] = [model_id, iso(since) if since else ""]
        if after is not None:
            sql += " AND (m.created_at, m.platform, m.channel, m.message_id) > (?, ?, ?, ?)"
            params += list(after)
        sql += " ORDER BY m.created_at, m.platform, m.channel, m.message_id LIMIT ?"
        rows = self.db.execute(sql, [*params, limit]).fetchall()
        return [((r[0], r[1], r[2]), parse_ts(r[3]), r[4]) for r in rows]

    @_locked
    def supersede_from(self, start: datetime, tick_s: int, first_tick: datetime) -> int:
        """Clear the index's history from ``start`` so it can be computed again.

        In one transaction: alerts at or after ``start`` move to ``alerts_superseded`` (their
        sent outbox rows stay as the record of delivery; unsent ones are dropped, as their
        alert no longer stands); readings from ``start`` are deleted; alert rule state is
        reset; the tick checkpoint goes back to the tick before ``start``. Returns how many
        alerts moved.
        """
        now = iso(datetime.now(UTC))
        with self.transaction() as db:
            moved = db.execute(
                "INSERT OR REPLACE INTO alerts_superseded SELECT key, kind, scope, at, title,"
                " detail, value, previous, evidence, created_at, ? FROM alerts WHERE at >= ?",
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
            if start <= first_tick:
                db.execute("DELETE FROM checkpoints WHERE name = ?", [TICK_CHECKPOINT])
            else:
                previous = datetime.fromtimestamp(start.timestamp() - tick_s, UTC)
                self._set_checkpoint(db, TICK_CHECKPOINT, iso(previous), datetime.now(UTC))
        return moved

    @_locked
    def count_alerts_since(self, start: datetime) -> int:
        [[n]] = self.db.execute("SELECT COUNT(*) FROM alerts WHERE at >= ?", [iso(start)])
        return int(n)

    # ------------------------------------------------------------------ health, usage

    @_locked
    def save_health(self, rows: Sequence[tuple[str, str]], now: datetime) -> None:
        """Store the running bot's connectors' health (``(name, JSON)``), replacing what was
        stored before, so a connector of an earlier run does not linger."""
        with self.transaction() as db:
            db.execute("DELETE FROM connector_health")
            for name, doc in rows:
                db.execute(
                    "INSERT OR REPLACE INTO connector_health VALUES (?, ?, ?)",
                    [name, doc, iso(now)],
                )

    @_locked
    def health(self) -> list[tuple[str, str, datetime]]:
        """Every connector's stored health: ``(name, JSON, saved at)``, by name."""
        return [
            (r[0], r[1], parse_ts(r[2]))
            for r in self.db.execute(
                "SELECT name, health, updated_at FROM connector_health ORDER BY name"
            ).fetchall()
        ]

    @_locked
    def add_usage(self, name: str, month: str, reads: int) -> int:
        """Count ``reads`` against ``name``'s usage in ``month`` ("2026-11"); return the total."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO api_usage VALUES (?, ?, ?)"
                " ON CONFLICT (name, month) DO UPDATE SET reads = reads + excluded.reads",
                [name, month, reads],
            )
            row = db.execute(
                "SELECT reads FROM api_usage WHERE name = ? AND month = ?", [name, month]
            ).fetchone()
        return int(row[0])

    @_locked
    def usage(self, name: str, month: str) -> int:
        """Reads counted against ``name`` in ``month``."""
        row = self.db.execute(
            "SELECT reads FROM api_usage WHERE name = ? AND month = ?", [name, month]
        ).fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ manual levels

    @_locked
    def add_manual_level(
        self, platform: str, community: str, asset: str, price: float, by: str, now: datetime
    ) -> bool:
        """A moderator's level for ``asset`` in their community; False if it was there."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO manual_levels VALUES (?, ?, ?, ?, ?, ?)",
                [platform, community, asset, price, by, iso(now)],
            )
        return bool(cur.rowcount)

    @_locked
    def remove_manual_level(self, platform: str, community: str, asset: str, price: float) -> int:
        """Remove a manual level (matched within half a cent); how many were removed."""
        with self.transaction() as db:
            cur = db.execute(
                "DELETE FROM manual_levels WHERE platform = ? AND community = ? AND asset = ?"
                " AND ABS(price - ?) < 0.005",
                [platform, community, asset, price],
            )
        return cur.rowcount

    @_locked
    def manual_levels(self, platform: str, community: str, asset: str) -> list[float]:
        """The community's manual levels for ``asset``, lowest first."""
        return [
            float(r[0])
            for r in self.db.execute(
                "SELECT price FROM manual_levels WHERE platform = ? AND community = ?"
                " AND asset = ? ORDER BY price",
                [platform, community, asset],
            ).fetchall()
        ]
