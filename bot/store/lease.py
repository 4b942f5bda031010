"""Leases between worker processes on one PostgreSQL database: session advisory locks.

A session advisory lock belongs to the connection that took it, and the server frees it when
that connection ends, however it ends (a SIGKILLed holder's socket closes; a hung host is
dropped by TCP keepalives). So a lease needs no expiry to tune and never outlives its holder.
Each ``Lease`` keeps its own connection, apart from the store's pool, for as long as it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from bot.store.postgres import redact
from bot.store.runlock import DatabaseBusyError, connect_locking

log = logging.getLogger(__name__)

#: The key `moodring run`, `demo`, `rescore` and `migrate` take exclusively (bot/store/runlock.py).
WRITER_KEY = "moodring-writer"
#: The one index ticker.
INDEX_KEY = "moodring-index"
#: The one intake worker: it numbers the chunks, and it is the one Telegram poller.
INTAKE_KEY = "moodring-intake"


class Lease:
    """One named lease: at most one process holds it at a time."""

    def __init__(self, url: str, key: str, what: str) -> None:
        self.url = url
        self.key = key
        self.what = what
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_take(self) -> bool:
        """Take the lease if nobody holds it; True when this process holds it now."""
        import psycopg

        if self._conn is not None:
            return True
        conn = connect_locking(self.url, self.what)
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [self.key]).fetchone()
        except psycopg.Error:
            conn.close()
            raise
        if row and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def alive(self) -> bool:
        """Whether the lease is still held: its connection still answers. When it does not,
        the server has freed the lock (or will), so the holder must stop acting on it."""
        import psycopg

        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error as exc:
            log.error("lease %s lost: its connection failed (%s)", self.key, exc)
            self._drop()
            return False
        return True

    def release(self) -> None:
        """Let go (closing the connection frees the lock even if the unlock fails)."""
        import psycopg

        if self._conn is None:
            return
        with suppress(psycopg.Error):  # closing below frees it anyway
            self._conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [self.key])
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        try:
            conn.close()
        except Exception:  # a broken connection may fail to close; it is gone either way
            log.debug("closing lease connection failed", exc_info=True)


@contextmanager
def hold_shared_writer(url: str, what: str) -> Iterator[None]:
    """Hold the database's writer lock *shared* for the block: any number of stage workers
    together, never beside `moodring run` (or `rescore`), which take it exclusively.

    Raises:
        DatabaseBusyError: a one-process writer holds the database.
    """
    import psycopg

    conn = connect_locking(url, what)
    with conn:
        got = conn.execute(
            "SELECT pg_try_advisory_lock_shared(hashtext(%s))", [WRITER_KEY]
        ).fetchone()
        if not got or not got[0]:
            raise DatabaseBusyError(
                f"{redact(url)} is in use by `moodring run` (or rescore, migrate); stop it"
                " first: stage workers and the one-process bot never share a database"
            )
        try:
            yield
        finally:
            # Unlock before closing: the server frees a closed session's locks only when its
            # backend has exited, after close() returns, so a taker right behind could lose.
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock_shared(hashtext(%s))", [WRITER_KEY])
