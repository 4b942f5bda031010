"""What chat users and moderators keep: subscriptions, community settings, the inbox, levels."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.prefs.community import CommunitySettings
from bot.prefs.subscriptions import Subscription
from bot.store.base import locked
from bot.store.privacy import WITHHELD, PrivacyMixin
from bot.store.rows import TOO_OLD, iso, parse_ts
from bot.store.sql import insert_new, upsert


class ChatMixin(PrivacyMixin):  # the inbox checks the do-not-store list
    """Subscriptions, community settings, raw chat updates and manual levels."""

    # ------------------------------------------------------------------ subscriptions

    @locked
    def subscribe(self, sub: Subscription, now: datetime) -> None:
        """Add or update a subscription, keyed on (platform, community, target, user, asset);
        a group's own (delivered to the group) on (platform, community, target, asset)."""
        # A moderator's digests (or DM alerts) asked for in two groups are two subscriptions,
        # and a group's subscription belongs to the group: any of its moderators replaces it.
        sql = (
            "DELETE FROM subscriptions WHERE platform = ? AND community = ? AND target = ?"
            " AND asset = ?"
        )
        key: list[Any] = [sub.platform, sub.community, sub.target, sub.asset]
        if not sub.is_group:
            sql += " AND user = ?"
            key.append(sub.user)
        with self.transaction() as db:
            db.execute(sql, key)
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

    @locked
    def unsubscribe_target(self, platform: str, target: str) -> int:
        """Drop every subscription delivered to ``target`` (it blocked the bot or is gone).

        A DM target that is gone is no open private chat any more either: a user who blocked
        the bot is warned again, on their next /subscribe, to press Start (which unblocks).
        """
        with self.transaction() as db:
            db.execute(
                "DELETE FROM private_chats WHERE platform = ? AND user = ?", [platform, target]
            )
            return db.execute(
                "DELETE FROM subscriptions WHERE platform = ? AND target = ?", [platform, target]
            ).rowcount

    @locked
    def remove_subscriptions(self, subs: Sequence[Subscription]) -> int:
        """Remove exactly these subscriptions (as ``subscriptions`` gave them); how many."""
        removed = 0
        with self.transaction() as db:
            for sub in subs:
                removed += db.execute(
                    "DELETE FROM subscriptions WHERE platform = ? AND community = ?"
                    " AND target = ? AND user = ? AND asset = ?",
                    [sub.platform, sub.community, sub.target, sub.user, sub.asset],
                ).rowcount
        return removed

    @locked
    def subscriptions(
        self, platform: str | None = None, user: str | None = None, community: str | None = None
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
        if community is not None:
            sql += " AND community = ?"
            params.append(community)
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

    # ------------------------------------------------------------------ a community's status

    @locked
    def community_message_counts(
        self, platform: str, community: str
    ) -> tuple[dict[str, int], datetime | None]:
        """A community's messages by status, and when its newest was posted (None: none)."""
        rows = self.db.execute(
            "SELECT status, COUNT(*), MAX(created_at) FROM messages"
            " WHERE platform = ? AND community = ? GROUP BY status",
            [platform, community],
        ).fetchall()
        newest = max((r[2] for r in rows if r[2] is not None), default=None)
        return {r[0]: int(r[1]) for r in rows}, None if newest is None else parse_ts(newest)

    @locked
    def count_outbox_to(self, sink: str, targets: Sequence[str]) -> tuple[int, int]:
        """Alert sends to ``targets`` not yet made, and those abandoned as too old."""
        if not targets:
            return 0, 0
        marks = ", ".join("?" for _ in targets)
        [row] = self.db.execute(
            "SELECT COUNT(CASE WHEN given_up IS NULL THEN 1 END),"
            " COUNT(CASE WHEN given_up = ? THEN 1 END) FROM outbox"
            f" WHERE sink = ? AND sent_at IS NULL AND target IN ({marks})",
            [TOO_OLD, sink, *targets],
        ).fetchall()
        return int(row[0] or 0), int(row[1] or 0)

    # ------------------------------------------------------------------ community settings

    @locked
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

    @locked
    def set_community_settings(
        self, platform: str, community: str, settings: CommunitySettings, now: datetime
    ) -> None:
        with self.transaction() as db:
            db.execute(
                upsert(
                    "community_settings",
                    ("platform", "community", "settings", "updated_at"),
                    ("platform", "community"),
                ),
                [platform, community, json.dumps(dataclasses.asdict(settings)), iso(now)],
            )

    # ------------------------------------------------------------------ who and where

    @locked
    def set_community_title(self, platform: str, community: str, title: str, now: datetime) -> None:
        """Keep ``title`` as the community's latest name (a group's title, a server's name)."""
        with self.transaction() as db:
            db.execute(
                upsert(
                    "community_titles",
                    ("platform", "community", "title", "updated_at"),
                    ("platform", "community"),
                ),
                [platform, community, title, iso(now)],
            )

    @locked
    def community_title(self, platform: str, community: str) -> str:
        """The community's latest known title, or "" when none was ever seen."""
        row = self.db.execute(
            "SELECT title FROM community_titles WHERE platform = ? AND community = ?",
            [platform, community],
        ).fetchone()
        return str(row[0]) if row else ""

    @locked
    def note_private_chat(self, platform: str, user: str, now: datetime) -> None:
        """Record that ``user`` wrote to the bot privately (so the bot may write to them)."""
        with self.transaction() as db:
            db.execute(
                insert_new("private_chats", ("platform", "user", "first_at")),
                [platform, user, iso(now)],
            )

    @locked
    def has_private_chat(self, platform: str, user: str) -> bool:
        """Whether ``user`` has ever written to the bot privately (and not blocked it since)."""
        row = self.db.execute(
            "SELECT 1 FROM private_chats WHERE platform = ? AND user = ?", [platform, user]
        ).fetchone()
        return row is not None

    # ------------------------------------------------------------------ dashboard links

    @locked
    def revoke_dashboard(self, platform: str, community: str, user: str, now: datetime) -> None:
        """Refuse every dashboard link ``user`` was given for ``community`` up to ``now``."""
        with self.transaction() as db:
            db.execute(
                upsert(
                    "dashboard_revocations",
                    ("platform", "community", "user", "revoked_at"),
                    ("platform", "community", "user"),
                ),
                [platform, community, user, iso(now)],
            )

    @locked
    def dashboard_revoked_at(self, platform: str, community: str, user: str) -> datetime | None:
        """When ``user`` last revoked their links of ``community``; None if never."""
        row = self.db.execute(
            "SELECT revoked_at FROM dashboard_revocations"
            " WHERE platform = ? AND community = ? AND user = ?",
            [platform, community, user],
        ).fetchone()
        return parse_ts(row[0]) if row else None

    # ------------------------------------------------------------------ chat inbox

    @locked
    def save_updates(
        self, platform: str, updates: Sequence[tuple[int, str]], next_offset: int, now: datetime
    ) -> int:
        """Store raw updates and the next offset in one transaction; returns how many were new.

        Only after this commits may the platform be asked for more (which confirms these).
        """
        added = 0
        # Posts of people who asked to be forgotten: kept as handled, without their payload.
        withheld = self.withheld_updates(platform, updates)
        with self.transaction() as db:
            for update_id, payload in updates:
                skip = update_id in withheld
                cur = db.execute(
                    insert_new(
                        "chat_inbox",
                        ("platform", "update_id", "payload", "received_at", "done_at", "error"),
                    ),
                    [
                        platform,
                        update_id,
                        None if skip else payload,
                        iso(now),
                        iso(now) if skip else None,
                        WITHHELD if skip else None,
                    ],
                )
                added += cur.rowcount
            self._set_checkpoint(db, f"{platform}:offset", str(next_offset), now)
        return added

    @locked
    def next_offset(self, platform: str) -> int | None:
        value = self.checkpoint(f"{platform}:offset")
        return int(value) if value is not None else None

    @locked
    def pending_updates(
        self, platform: str, limit: int = 100, after: int | None = None
    ) -> list[tuple[int, str]]:
        """Stored updates not yet processed (after update ``after``, when given), oldest first."""
        return [
            (int(r[0]), r[1])
            for r in self.db.execute(
                "SELECT update_id, payload FROM chat_inbox WHERE platform = ? AND done_at IS NULL"
                " AND update_id > ? ORDER BY update_id LIMIT ?",
                [platform, -1 if after is None else after, limit],
            ).fetchall()
        ]

    @locked
    def mark_update_done(
        self, platform: str, update_id: int, now: datetime, error: str | None = None
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE chat_inbox SET done_at = ?, error = ? WHERE platform = ? AND update_id = ?",
                [iso(now), error, platform, update_id],
            )

    # ------------------------------------------------------------------ manual levels

    @locked
    def add_manual_level(
        self, platform: str, community: str, asset: str, price: float, by: str, now: datetime
    ) -> bool:
        """A moderator's level for ``asset`` in their community; False if it was there."""
        with self.transaction() as db:
            cur = db.execute(
                insert_new(
                    "manual_levels",
                    ("platform", "community", "asset", "price", "added_by", "added_at"),
                ),
                [platform, community, asset, price, by, iso(now)],
            )
        return bool(cur.rowcount)

    @locked
    def remove_manual_level(self, platform: str, community: str, asset: str, price: float) -> int:
        """Remove a manual level (matched within half a cent); how many were removed."""
        with self.transaction() as db:
            cur = db.execute(
                "DELETE FROM manual_levels WHERE platform = ? AND community = ? AND asset = ?"
                " AND ABS(price - ?) < 0.005",
                [platform, community, asset, price],
            )
        return cur.rowcount

    @locked
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
