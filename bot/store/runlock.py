"""One writer per database: `moodring run` and `demo` hold a lock that `rescore` must get.

An advisory ``flock`` on a file beside a SQLite database; on PostgreSQL a session advisory
lock on a connection held for the block. The kernel (or the server, when the connection
drops) lets go when the holder exits, however it exits, so a crashed bot never leaves a stale
lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bot.errors import ConfigError, StoreError
from bot.store.postgres import is_postgres, redact


class DatabaseBusyError(ConfigError):
    """Another moodring process is writing to this database."""


def lock_path(db: Path | str) -> Path | None:
    """The lock file of database ``db``; None for an in-memory or PostgreSQL database."""
    text = str(db)
    if text in ("", ":memory:") or "://" in text:
        return None
    return Path(text + ".lock")


@contextmanager
def hold(db: Path | str, what: str) -> Iterator[None]:
    """Hold the database's writer lock for the block, or raise :class:`DatabaseBusyError`.

    Args:
        db: the database path.
        what: the command taking the lock, for the other side's error message.
    """
    if is_postgres(db):
        with _hold_postgres(str(db), what):
            yield
        return
    path = lock_path(db)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise DatabaseBusyError(
                f"{db} is in use by {holder}; stop it first (it holds {path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"moodring {what} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)


#: TCP keepalives on both ends of a lock's connection: the server's (the ``tcp_keepalives_*``
#: settings, for this session only) free the lock of a holder whose host vanished (no FIN, no
#: RST) within about 25 s; the client's let a holder cut off from the server notice it (and
#: keep its unlock at shutdown from waiting on TCP's retransmissions for many minutes).
_KEEPALIVES: dict[str, str | int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "options": "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3",
}


def connect_locking(url: str, what: str) -> Any:
    """An autocommit connection for session advisory locks, named ``moodring {what}``.

    Raises:
        StoreError: the database cannot be opened.
    """
    import psycopg
    from psycopg import conninfo

    try:
        conn = psycopg.connect(
            conninfo.make_conninfo(url, connect_timeout=10, **_KEEPALIVES), autocommit=True
        )
    except psycopg.Error as exc:
        raise StoreError(f"cannot open database {redact(url)}: {exc}") from None
    conn.execute("SELECT set_config('application_name', %s, false)", [f"moodring {what}"])
    return conn


@contextmanager
def _hold_postgres(url: str, what: str) -> Iterator[None]:
    import psycopg

    conn = connect_locking(url, what)
    with conn:
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext('moodring-writer'))").fetchone()
        if not got or not got[0]:
            raise DatabaseBusyError(
                f"{redact(url)} is in use by another moodring process; stop it first"
            )
        try:
            yield
        finally:
            # Unlock before closing: a closed session's locks go only when its backend has
            # exited, after close() returns, so the next taker could find them still held.
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(hashtext('moodring-writer'))")
