"""The store's core: its database (a SQLite file, or PostgreSQL), its lock, write
transactions, checkpoints."""

from __future__ import annotations

import functools
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlite_utils

from bot.errors import StoreError
from bot.store.postgres import PostgresDatabase, is_postgres
from bot.store.rows import TICK_CHECKPOINT, iso, parse_ts
from bot.store.schema import migrations
from bot.store.sql import upsert

F = TypeVar("F")

log = logging.getLogger(__name__)

#: Times one store call runs again after losing a race with another writer before the
#: error is raised (each try is one whole transaction).
MAX_CONFLICTS = 10


class Cursor(Protocol):
    """What the store reads of a finished statement (``sqlite3.Cursor`` and
    ``bot.store.postgres.Rows`` both fit)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """What the store's sections call on ``self.db``: sqlite-utils' ``Database`` and
    ``PostgresDatabase`` both fit. SQL uses qmark placeholders and SQL both engines run."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...


_CHECKPOINT = upsert("checkpoints", ("name", "value", "updated_at"), ("name",))


def locked(method: F) -> F:
    """Serialise a Store method: the stages call the store from worker threads, and one
    SQLite connection must not interleave two threads' transactions. On PostgreSQL the
    outermost call is retried while the server is unreachable (``StoreBase._retrying``)."""

    @functools.wraps(method)  # type: ignore[arg-type]
    def wrapper(self: StoreBase, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._pg is None or self._calling.active:
                return method(self, *args, **kwargs)  # type: ignore[operator]
            self._calling.active = True
            try:
                return self._retrying(lambda: method(self, *args, **kwargs))  # type: ignore[operator]
            finally:
                self._calling.active = False

    return wrapper  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


class _Calling(threading.local):
    active = False  # this thread is inside a store method (nested calls are not retried)


class StoreBase:
    """Opens the database (creating and migrating it if needed); every section builds on it.

    Checkpoints live here rather than in a section because several sections write one
    inside their own transaction (the index tick, the chat offset, a rebuild).
    """

    def __init__(self, path: Path | str, *, memory: bool = False, retry_s: float = 120.0) -> None:
        """``path`` is a SQLite file, or a ``postgresql://`` URL (``MOODRING_DB``).

        Raises:
            StoreError: the database cannot be opened (PostgreSQL not answering, a file
                that is not a SQLite database); the message names it, never a password.
        """
        self._lock = threading.RLock()
        self._calling = _Calling()
        self.db: Database
        self._pg: PostgresDatabase | None = None
        #: How long a PostgreSQL store waits for the server to come back before a call fails.
        self.retry_s = retry_s
        #: Told of an outage as it happens: the reason, then None once the server answers
        #: again (the live bot shows it as the "database" connector in ``moodring status``).
        self.on_outage: Callable[[str | None], None] | None = None
        if is_postgres(path):
            self._pg = PostgresDatabase(str(path))
            self.db = self._pg
            self._pg.migrate(migrations)
            self.path = path
            return
        try:
            if memory:
                conn = sqlite3.connect(":memory:", check_same_thread=False)
                lite = sqlite_utils.Database(conn)
            else:
                conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
                lite = sqlite_utils.Database(conn)
                lite.enable_wal()
                # NORMAL under WAL survives a process crash (kill -9); only power loss can
                # roll back the last commits (shared/PLATFORM_NOTES.md).
                lite.execute("PRAGMA synchronous=NORMAL")
                lite.execute("PRAGMA busy_timeout=30000")
            migrations.apply(lite)
            self._lite: sqlite_utils.Database = lite
            self.db = lite
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        self.path = path

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """``call()``, run again while the server is unreachable (a restart, a failover, a
        dropped link): waits 0.5 s doubling to 10 s, for ``retry_s`` in all, then raises
        ``StoreError``. A transaction that lost a race with another writer (a serialization
        failure or deadlock) runs again at once, up to ``MAX_CONFLICTS`` times; that is no
        outage, so it is not reported as one. A call is one store method, one transaction:
        it committed or it did not, and the store's writes are keyed, so running it again
        adds nothing twice."""
        assert self._pg is not None
        started = time.monotonic()
        delay, failed, conflicts = 0.5, False, 0
        while True:
            try:
                result = call()
            except Exception as exc:
                if self._pg.conflict(exc) and conflicts < MAX_CONFLICTS:
                    # Another writer won a race (serialization failure, deadlock): the
                    # transaction was rolled back whole, so run it again at once, after a
                    # short random pause that keeps the two from colliding again in step.
                    conflicts += 1
                    log.info("transaction conflict (%s); running it again", _first_line(exc))
                    time.sleep(random.uniform(0, 0.05 * conflicts))
                    continue
                if not self._pg.transient(exc):
                    raise
                reason = _first_line(exc)
                waited = time.monotonic() - started
                self._outage(reason)
                if waited + delay > self.retry_s:
                    raise StoreError(f"database unreachable for {waited:.0f} s: {reason}") from None
                log.warning("database unreachable (%s); trying again in %.1f s", reason, delay)
                failed = True
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if failed:
                log.warning("database reachable again")
                self._outage(None)
            return result

    def _outage(self, reason: str | None) -> None:
        if self.on_outage is not None:
            try:
                self.on_outage(reason)
            except Exception:  # the report must not turn a retry into a failure
                log.exception("outage report failed")

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "sqlite" if self._pg is None else "postgresql"

    @locked
    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        else:
            self._lite.close()

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One write transaction (SQLite: ``BEGIN IMMEDIATE``, so it never upgrades
        mid-way); nested, a savepoint."""
        with self._lock:
            if self._pg is not None:
                with self._pg.transaction():
                    yield self.db
                return
            yield from self._transaction()

    def _transaction(self) -> Iterator[Database]:
        lite = self._lite
        if lite.conn.in_transaction:
            with lite.atomic():
                yield lite
            return
        lite.execute("BEGIN IMMEDIATE")
        try:
            yield lite
        except BaseException:
            lite.conn.rollback()
            raise
        else:
            lite.conn.commit()

    @locked
    def write_many(
        self, sql: str, rows: Sequence[Sequence[Any]], checkpoint: tuple[str, str, datetime]
    ) -> None:
        """Run ``sql`` once per row and set ``checkpoint`` (name, value, now), in one
        transaction (``moodring migrate``'s batches)."""
        with self.transaction() as db:
            if self._pg is not None:
                self._pg.executemany(sql, rows)
            else:
                self._lite.conn.executemany(sql, rows)
            self._set_checkpoint(db, *checkpoint)

    # ------------------------------------------------------------------ raw reads

    @locked
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """A read-only query, run under the store's lock."""
        return self.db.execute(sql, list(params)).fetchall()

    # ------------------------------------------------------------------ checkpoints

    @staticmethod
    def _set_checkpoint(db: Database, name: str, value: str, now: datetime) -> None:
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
