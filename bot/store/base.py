"""The store's core: one SQLite connection, its lock, write transactions, checkpoints."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from bot.errors import StoreError
from bot.store.rows import TICK_CHECKPOINT, iso, parse_ts
from bot.store.schema import migrations
from bot.store.sql import upsert

F = TypeVar("F")

_CHECKPOINT = upsert("checkpoints", ("name", "value", "updated_at"), ("name",))


def locked(method: F) -> F:
    """Serialise a Store method: the stages call the store from worker threads, and one
    SQLite connection must not interleave two threads' transactions."""

    @functools.wraps(method)  # type: ignore[arg-type]
    def wrapper(self: StoreBase, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)  # type: ignore[operator]

    return wrapper  # type: ignore[return-value]


class StoreBase:
    """Opens the database (creating and migrating it if needed); every section builds on it.

    Checkpoints live here rather than in a section because several sections write one
    inside their own transaction (the index tick, the chat offset, a rebuild).
    """

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

    @locked
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

    # ------------------------------------------------------------------ raw reads

    @locked
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """A read-only query, run under the store's lock."""
        return self.db.execute(sql, list(params)).fetchall()

    # ------------------------------------------------------------------ checkpoints

    @staticmethod
    def _set_checkpoint(db: sqlite_utils.Database, name: str, value: str, now: datetime) -> None:
        db.execute(_CHECKPOINT, [name, value, iso(now)])

    @locked
    def set_checkpoint(self, name: str, value: str, now: datetime) -> None:
        with self.transaction() as db:
            self._set_checkpoint(db, name, value, now)

    @locked
    def checkpoint(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM checkpoints WHERE name = ?", [name]).fetchone()
        return row[0] if row else None

    @locked
    def delete_checkpoint(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM checkpoints WHERE name = ?", [name])

    def checkpoint_time(self) -> datetime | None:
        """The index's last tick (message time), if it has ticked."""
        value = self.checkpoint(TICK_CHECKPOINT)
        return parse_ts(value) if value else None
