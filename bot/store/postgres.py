"""The PostgreSQL backend: the store's SQL run through a psycopg 3 connection pool, and the
schema's migrations (``bot/store/schema.py``, the one source of truth) replayed as
PostgreSQL DDL."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.errors import StoreError

log = logging.getLogger(__name__)

SCHEMES = ("postgresql://", "postgres://")

#: Column names that are reserved words in PostgreSQL (``user`` would even read as the
#: session's user name, silently): quoted wherever the store's SQL names them.
_RESERVED = re.compile(r'"?\b(user|window|interval)\b"?')
#: Tables that get a ``rowid`` column: the store orders scores by it, as SQLite's rowid.
_ROWID_TABLES = frozenset({"scores"})
_TYPES = {str: "TEXT", int: "BIGINT", float: "DOUBLE PRECISION", bytes: "BYTEA"}
_MIGRATIONS_TABLE = "moodring_migrations"


def is_postgres(target: object) -> bool:
    """Whether ``target`` (``MOODRING_DB`` / ``--db``) names a PostgreSQL database."""
    return isinstance(target, str) and target.startswith(SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password (in the user part, also with no user name as Redis URLs
    have it, or in a ``password=`` query, as libpq and redis-py take it), fit for a log line
    or an error message."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
        url = url.replace(parts.netloc, netloc, 1)  # the first occurrence is the netloc
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)


def to_psycopg(sql: str) -> str:
    """The store's SQL (qmark placeholders, SQLite's spelling) as psycopg runs it: ``?``
    becomes ``%s`` and reserved column names are quoted, outside single-quoted literals; a
    ``%`` doubles everywhere (psycopg reads placeholders inside literals too)."""
    parts = sql.replace("%", "%%").split("'")
    for i in range(0, len(parts), 2):  # even parts lie outside literals
        parts[i] = _RESERVED.sub(_quote, parts[i].replace("?", "%s"))
    return "'".join(parts)


def _params(params: Sequence[Any]) -> list[Any]:
    # PostgreSQL text cannot hold NUL, which SQLite and chat messages can: it becomes U+FFFD
    # (a NUL carries nothing a reader or the model could use).
    return [
        p.replace("\x00", "\ufffd") if isinstance(p, str) and "\x00" in p else p for p in params
    ]


def _quote(match: re.Match[str]) -> str:
    text = match.group(0)
    return text if text.startswith('"') or text.endswith('"') else f'"{match.group(1)}"'


@dataclass
class Rows:
    """A finished statement: its rows (all fetched) and how many rows it changed."""

    rows: list[tuple[Any, ...]]
    rowcount: int

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)


class PostgresDatabase:
    """What the store's sections call on ``self.db``: ``execute`` (one statement; inside
    ``transaction`` on this thread it joins that transaction), ``transaction`` and
    ``close``."""

    def __init__(self, url: str, max_size: int = 4) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = url
        self._local = threading.local()
        try:
            # One direct try first: a server that is down or a database that does not exist
            # is one clear line at once, not the pool's retries and a timeout.
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot open database {redact(url)}: {reason}") from None
        try:
            self.pool = ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                kwargs={"autocommit": True},
                check=ConnectionPool.check_connection,  # a server restart: reconnect
                timeout=5,  # no connection in 5 s: the store's retry loop takes over
                open=False,
            )
            self.pool.open(wait=True, timeout=10)
        except Exception as exc:  # the pool's own errors, besides psycopg's
            raise StoreError(f"cannot open database {redact(url)}: {exc}") from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return self._run(conn, sql, params)
        with self.pool.connection() as conn:
            return self._run(conn, sql, params)

    @staticmethod
    def transient(exc: BaseException) -> bool:
        """Whether ``exc`` says the server is unreachable for now (a restart, a dropped
        connection, no connection free in time): the same call may succeed when tried
        again. (A serialization failure or deadlock is an ``OperationalError`` too; the
        store tells it apart with :meth:`conflict`.)"""
        import psycopg

        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)

    @staticmethod
    def conflict(exc: BaseException) -> bool:
        """Whether ``exc`` is a transaction that lost a race with another writer (a
        serialization failure under SERIALIZABLE or REPEATABLE READ, or a deadlock): it
        was rolled back whole and may simply run again."""
        import psycopg

        # SQLSTATE class 40, "transaction rollback": 40001 serialization failure, 40P01
        # deadlock detected (psycopg's classes for them do not share a base to test).
        return isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith("40")

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each of ``rows`` (pipelined: one round trip per batch)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self.transaction():
                self.executemany(sql, rows)
            return
        with conn.cursor() as cur:
            cur.executemany(to_psycopg(sql), [_params(r) for r in rows])

    @staticmethod
    def _run(conn: Any, sql: str, params: Sequence[Any]) -> Rows:
        cur = conn.execute(to_psycopg(sql), _params(params))
        rows = cur.fetchall() if cur.description is not None else []
        return Rows(rows, cur.rowcount)

    @contextmanager
    def transaction(self) -> Iterator[PostgresDatabase]:
        """One transaction on one pooled connection; a nested one is a savepoint."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with conn.transaction():
                yield self
            return
        with self.pool.connection() as conn, conn.transaction():
            self._local.conn = conn
            try:
                yield self
            finally:
                self._local.conn = None

    def close(self) -> None:
        self.pool.close()

    # ------------------------------------------------------------------ schema

    def migrate(self, migrations: Any) -> None:
        """Apply the schema's pending migrations in order, each in its own transaction with
        its record, under an advisory lock (two processes starting at once migrate once)."""
        with self.transaction():
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {_MIGRATIONS_TABLE}"
                " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
        schema = PostgresSchema(self)
        for migration in migrations._migrations:
            with self.transaction():
                self.execute("SELECT pg_advisory_xact_lock(hashtext('moodring-migrations'))")
                done = self.execute(
                    f"SELECT 1 FROM {_MIGRATIONS_TABLE} WHERE name = ?", [migration.name]
                ).fetchone()
                if done:
                    continue
                log.info("migration %s", migration.name)
                migration.fn(schema)
                self.execute(
                    f"INSERT INTO {_MIGRATIONS_TABLE} VALUES (?, ?)",
                    [migration.name, datetime.now(UTC).isoformat()],
                )


class PostgresSchema:
    """The part of sqlite-utils' ``Database`` the migrations use (``table(...).create``,
    ``create_index``, ``add_column``, ``columns_dict``, ``execute``), written as
    PostgreSQL DDL, so one set of migration functions builds both backends."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    def table(self, name: str) -> PostgresTable:
        return PostgresTable(self.db, name)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self.db.execute(sql, params)


class PostgresTable:
    """One table, for the migrations (see ``PostgresSchema``)."""

    def __init__(self, db: PostgresDatabase, name: str) -> None:
        self.db = db
        self.name = name

    def create(
        self,
        columns: dict[str, type],
        pk: str | Sequence[str] | None = None,
        not_null: set[str] | None = None,
    ) -> None:
        not_null = not_null or set()
        keys = [] if pk is None else [pk] if isinstance(pk, str) else list(pk)
        lines = []
        for c, t in columns.items():
            line = f'"{c}" {_TYPES[t]}' + (" NOT NULL" if c in not_null else "")
            if keys == [c] and t is int:
                # SQLite's INTEGER PRIMARY KEY numbers new rows itself; BY DEFAULT keeps
                # explicit ids (``moodring migrate`` copies them, then moves the sequence on).
                line += " GENERATED BY DEFAULT AS IDENTITY"
            lines.append(line)
        if self.name in _ROWID_TABLES:
            lines.append("rowid BIGINT GENERATED ALWAYS AS IDENTITY")
        if keys:
            lines.append(f"PRIMARY KEY ({', '.join(f'{chr(34)}{k}{chr(34)}' for k in keys)})")
        self.db.execute(f"CREATE TABLE {self.name} ({', '.join(lines)})")

    def create_index(
        self, columns: Sequence[str], if_not_exists: bool = False, unique: bool = False
    ) -> None:
        # Named as sqlite-utils names them, so both backends list the same indexes.
        name = f"idx_{self.name}_{'_'.join(columns)}"
        exists = " IF NOT EXISTS" if if_not_exists else ""
        kind = "UNIQUE INDEX" if unique else "INDEX"
        cols = ", ".join(f'"{c}"' for c in columns)
        self.db.execute(f"CREATE {kind}{exists} {name} ON {self.name} ({cols})")

    def add_column(self, name: str, col_type: type) -> None:
        self.db.execute(f'ALTER TABLE {self.name} ADD COLUMN "{name}" {_TYPES[col_type]}')

    @property
    def columns_dict(self) -> dict[str, type]:
        back = {"text": str, "bigint": int, "double precision": float, "bytea": bytes}
        rows = self.db.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = ? AND table_schema = current_schema() AND column_name <> 'rowid'"
            " ORDER BY ordinal_position",
            [self.name],
        )
        return {name: back[kind] for name, kind in rows}
