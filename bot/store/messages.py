"""Messages and their scores: intake, edits, deletions, scoring, retention, rescoring."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.store.base import StoreBase, locked
from bot.store.rows import ScoredRow, StoredMessage, iso, parse_ts
from bot.store.sql import insert_new
from connectors.types import Message
from nlp.types import Score

_NEW_MESSAGE = insert_new(
    "messages",
    "platform channel message_id community author text norm_text created_at likes replies"
    " reposts language public tag assets spam_reason set_aside status ingested_at"
    " author_followers author_created_at author_verified author_weight",
)
_ASSET = insert_new("message_assets", "platform channel message_id asset created_at")
_SCORE = insert_new(
    "scores", "platform channel message_id p_neg p_neu p_pos label model_id scored_at"
)


class MessagesMixin(StoreBase):
    """Stored messages, their assets and their scores."""

    @locked
    def add_messages(self, items: Sequence[StoredMessage], now: datetime) -> int:
        """Store new messages; ones already stored are left untouched. Returns how many were new."""
        added = 0
        with self.transaction() as db:
            for item in items:
                m = item.message
                cur = db.execute(
                    _NEW_MESSAGE,
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
                        "new",
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
                            _ASSET,
                            [m.platform, m.channel, m.message_id, asset, iso(m.created_at)],
                        )
        return added

    @locked
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

    @locked
    def delete_message(self, platform: str, channel: str, message_id: str) -> bool:
        """A platform reported a deletion: the message leaves the store and future readings."""
        key = [platform, channel, message_id]
        where = " WHERE platform = ? AND channel = ? AND message_id = ?"
        with self.transaction() as db:
            for table in ("scores", "message_assets"):
                db.execute(f"DELETE FROM {table}" + where, key)  # table names are ours
            return bool(db.execute("DELETE FROM messages" + where, key).rowcount)

    @locked
    def last_message_id(self, platform: str, channel: str) -> int | None:
        """The newest numeric message id stored for a channel (Discord ids grow with time).
        Ids that are not all digits are passed over: SQLite would cast them to 0, PostgreSQL
        would fail the whole query."""
        digits = (
            "message_id ~ '^[0-9]{1,19}$'"
            if self.backend == "postgresql"
            else "message_id <> '' AND message_id NOT GLOB '*[^0-9]*' AND LENGTH(message_id) <= 19"
        )
        row = self.db.execute(
            "SELECT MAX(CAST(message_id AS BIGINT)) FROM messages"
            f" WHERE platform = ? AND channel = ? AND {digits}",
            [platform, channel],
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    @locked
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
                        _ASSET,
                        [*key, asset, iso(m.created_at)],
                    )
        return len(items)

    @locked
    def unscored(self, limit: int) -> list[tuple[tuple[str, str, str], str]]:
        """Keys and normalised texts of stored messages not yet scored, oldest first."""
        rows = self.db.execute(
            "SELECT platform, channel, message_id, norm_text FROM messages"
            " WHERE status = 'new' ORDER BY created_at, platform, channel, message_id LIMIT ?",
            [limit],
        ).fetchall()
        return [((r[0], r[1], r[2]), r[3] or "") for r in rows]

    @locked
    def unscored_messages(self, limit: int) -> list[StoredMessage]:
        """Stored messages not yet scored, oldest first, with what intake worked out about
        them (the pipeline's start-up recovery queues them for scoring again)."""
        rows = self.db.execute(
            "SELECT platform, community, channel, message_id, author, text, created_at, likes,"
            " replies, reposts, language, public, tag, norm_text, assets, spam_reason,"
            " set_aside, author_weight FROM messages WHERE status = 'new'"
            " ORDER BY created_at, platform, channel, message_id LIMIT ?",
            [limit],
        ).fetchall()
        return [
            StoredMessage(
                message=Message(
                    platform=r[0],
                    community=r[1] or "",
                    channel=r[2],
                    message_id=r[3],
                    author=r[4] or "",
                    text=r[5] or "",
                    created_at=parse_ts(r[6]),
                    likes=int(r[7] or 0),
                    replies=int(r[8] or 0),
                    reposts=int(r[9] or 0),
                    language=r[10],
                    public=bool(r[11]),
                    tag=r[12],
                ),
                norm_text=r[13] or "",
                assets=tuple(json.loads(r[14] or "[]")),
                spam_reason=r[15],
                set_aside=r[16],
                author_weight=1.0 if r[17] is None else float(r[17]),
            )
            for r in rows
        ]

    def save_scores(
        self, items: Sequence[tuple[tuple[str, str, str], Score]], now: datetime
    ) -> None:
        """Store scores and mark their messages scored, in one transaction."""
        with self.transaction() as db:
            for (platform, channel, message_id), s in items:
                # Deleted and inserted, not updated in place: a score written again (an
                # edited message) must come after the engine's mark (``scores_mark``).
                db.execute(
                    "DELETE FROM scores WHERE platform = ? AND channel = ? AND message_id = ?",
                    [platform, channel, message_id],
                )
                db.execute(
                    _SCORE,
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

    @locked
    def mark_failed(self, key: tuple[str, str, str], error: str) -> None:
        """Set a message aside that the scorer cannot process (a poison message)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE messages SET status = 'failed', error = ?"
                " WHERE platform = ? AND channel = ? AND message_id = ?",
                [error[:500], *key],
            )

    @locked
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
            # SQLite's CROSS JOIN keeps it from scanning the messages instead; PostgreSQL
            # plans that by itself and has no CROSS JOIN … ON).
            + (
                f" FROM scores s {'CROSS JOIN' if self.backend == 'sqlite' else 'JOIN'} messages m"
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

    @locked
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

    @locked
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

    @locked
    def scores_mark(self) -> int:
        """The newest score row's rowid (0 when none): later scores have larger ones."""
        row = self.db.execute("SELECT MAX(rowid) FROM scores").fetchone()
        return int(row[0] or 0)

    @locked
    def message_created_at(self, platform: str, channel: str, message_id: str) -> datetime | None:
        """When a stored message was created (``None`` if it is not stored)."""
        row = self.db.execute(
            "SELECT created_at FROM messages WHERE platform = ? AND channel = ? AND message_id = ?",
            [platform, channel, message_id],
        ).fetchone()
        return parse_ts(row[0]) if row else None

    @locked
    def newest_scored_time(self) -> datetime | None:
        """Creation time of the newest scored message: every stored message before it is
        scored too (scoring goes oldest first), so the index may tick up to it."""
        row = self.db.execute(
            "SELECT MAX(created_at) FROM messages WHERE status = 'scored'"
        ).fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    @locked
    def newest_message_time(self) -> datetime | None:
        row = self.db.execute("SELECT MAX(created_at) FROM messages").fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    @locked
    def next_message_time(self, after: datetime) -> datetime | None:
        """When the first message created after ``after`` was posted (None if none was)."""
        row = self.db.execute(
            "SELECT MIN(created_at) FROM messages WHERE created_at > ?", [iso(after)]
        ).fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    @locked
    def oldest_message_time(self) -> datetime | None:
        row = self.db.execute("SELECT MIN(created_at) FROM messages").fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    @locked
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

    @locked
    def count_messages(self, since: datetime, until: datetime) -> tuple[int, int]:
        """Messages created in ``[since, until)``, and how many of them were marked spam."""
        [row] = self.db.execute(
            "SELECT COUNT(*), COUNT(spam_reason) FROM messages"
            " WHERE created_at >= ? AND created_at < ?",
            [iso(since), iso(until)],
        ).fetchall()
        return int(row[0] or 0), int(row[1] or 0)

    @locked
    def daily_mentions(
        self, asset: str, since: datetime, until: datetime
    ) -> list[tuple[datetime, int]]:
        """Messages naming ``asset`` per UTC day in ``[since, until]``: (midnight, count), by
        day; days without a mention are left out."""
        rows = self.db.execute(
            "SELECT substr(created_at, 1, 10), COUNT(*) FROM message_assets"
            " WHERE asset = ? AND created_at >= ? AND created_at <= ? GROUP BY 1 ORDER BY 1",
            [asset, iso(since), iso(until)],
        ).fetchall()
        return [(parse_ts(day + "T00:00:00+00:00"), int(n)) for day, n in rows]

    @locked
    def purge_texts(self, older_than: datetime) -> int:
        """Retention: forget the text of messages older than ``older_than`` (scores stay), and
        the quotes of alerts raised before it. Returns how many messages lost their text."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE messages SET text = NULL, norm_text = NULL"
                " WHERE created_at < ? AND status != 'new' AND text IS NOT NULL",
                [iso(older_than)],
            )
            # An alert quotes messages up to its own time: older alerts quote purged texts.
            for table in ("alerts", "alerts_superseded"):  # table names are ours
                db.execute(
                    f"UPDATE {table} SET evidence = '[]' WHERE at < ? AND evidence != '[]'",
                    [iso(older_than)],
                )
            return cur.rowcount

    # ------------------------------------------------------------------ rescoring

    @locked
    def model_counts(self) -> dict[str, int]:
        """Scored messages per model id, most first."""
        rows = self.db.execute(
            "SELECT model_id, COUNT(*) FROM scores GROUP BY model_id ORDER BY COUNT(*) DESC"
        ).fetchall()
        return {r[0] or "": r[1] for r in rows}

    @locked
    def rescore_counts(self, model_id: str, since: datetime | None) -> tuple[int, int]:
        """Scored messages (from ``since``) on another model: (with text, text purged)."""
        [row] = self.db.execute(
            "SELECT COUNT(m.norm_text), COUNT(*) - COUNT(m.norm_text) FROM messages m"
            " JOIN scores s ON s.platform = m.platform AND s.channel = m.channel"
            " AND s.message_id = m.message_id"
            " WHERE m.status = 'scored' AND (s.model_id IS NULL OR s.model_id <> ?)"
            " AND m.created_at >= ?",
            [model_id, iso(since) if since else ""],
        ).fetchall()
        return int(row[0] or 0), int(row[1] or 0)

    @locked
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
            " AND (s.model_id IS NULL OR s.model_id <> ?) AND m.created_at >= ?"
        )
        params: list[Any] = [model_id, iso(since) if since else ""]
        if after is not None:
            sql += " AND (m.created_at, m.platform, m.channel, m.message_id) > (?, ?, ?, ?)"
            params += list(after)
        sql += " ORDER BY m.created_at, m.platform, m.channel, m.message_id LIMIT ?"
        rows = self.db.execute(sql, [*params, limit]).fetchall()
        return [((r[0], r[1], r[2]), parse_ts(r[3]), r[4]) for r in rows]
