"""What operators read: connector health and paid API usage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.store.base import StoreBase, locked
from bot.store.rows import iso, parse_ts
from bot.store.sql import upsert


class OpsMixin(StoreBase):
    """Connector health and API usage."""

    @locked
    def save_health(self, rows: Sequence[tuple[str, str]], now: datetime) -> None:
        """Store the running bot's connectors' health (``(name, JSON)``), replacing what was
        stored before, so a connector of an earlier run does not linger."""
        with self.transaction() as db:
            db.execute("DELETE FROM connector_health")
            for name, doc in rows:
                db.execute(
                    upsert("connector_health", ("name", "health", "updated_at"), ("name",)),
                    [name, doc, iso(now)],
                )

    @locked
    def health(self) -> list[tuple[str, str, datetime]]:
        """Every connector's stored health: ``(name, JSON, saved at)``, by name."""
        return [
            (r[0], r[1], parse_ts(r[2]))
            for r in self.db.execute(
                "SELECT name, health, updated_at FROM connector_health ORDER BY name"
            ).fetchall()
        ]

    @locked
    def add_usage(self, name: str, month: str, reads: int) -> int:
        """Count ``reads`` against ``name``'s usage in ``month`` ("2026-11"); return the total."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO api_usage VALUES (?, ?, ?)"
                " ON CONFLICT (name, month) DO UPDATE SET reads = api_usage.reads + excluded.reads",
                [name, month, reads],
            )
            row = db.execute(
                "SELECT reads FROM api_usage WHERE name = ? AND month = ?", [name, month]
            ).fetchone()
        return int(row[0])

    @locked
    def usage(self, name: str, month: str) -> int:
        """Reads counted against ``name`` in ``month``."""
        row = self.db.execute(
            "SELECT reads FROM api_usage WHERE name = ? AND month = ?", [name, month]
        ).fetchone()
        return int(row[0]) if row else 0
