"""PostgreSQL as the store's second backend (issue #15): the SQL translation, the schema from
the same migrations, `moodring migrate` (resumable, verified, sequences moved on), the writer
lock, and the faults an operator meets (server down, wrong scheme)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.chat.commands import CommandContext, handle
from bot.errors import StoreError
from bot.prefs.subscriptions import Subscription
from bot.settings import Settings
from bot.store import Store, runlock
from bot.store.moving import copy_to_postgres
from bot.store.postgres import redact, to_psycopg
from connectors.types import Command
from tests.test_held_readings import NOW, chatter, engine_at

FIXTURES = Path(__file__).parent / "fixtures"


def test_the_store_sql_is_translated_for_psycopg() -> None:
    """Placeholders and reserved column names change outside literals only; every % doubles
    (psycopg reads placeholders inside literals too)."""
    sql = "SELECT 'a?b', user FROM t WHERE window = ? AND name LIKE 'x%' AND s.user = ?"
    assert to_psycopg(sql) == (
        'SELECT \'a?b\', "user" FROM t WHERE "window" = %s AND name LIKE \'x%%\' AND s."user" = %s'
    )
    assert to_psycopg('INSERT INTO r ("window") VALUES (?)') == (
        'INSERT INTO r ("window") VALUES (%s)'
    )
    assert to_psycopg("SELECT user_id, sender_user FROM t") == "SELECT user_id, sender_user FROM t"


def _rows(conn: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
    return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def test_migrate_copies_every_row_and_resumes_after_a_failure(tmp_path: Path, pg_url: str) -> None:
    """Every row of every table arrives unchanged; a copy that dies half-way resumes from its
    mark and ends verified; run again it changes nothing."""
    source = tmp_path / "old.db"
    shutil.copy(FIXTURES / "store_latest.db", source)
    seen: list[str] = []

    def fail_in_messages(table: str, done: int, total: int) -> None:
        seen.append(table)
        if table == "messages" and done >= 2:
            raise RuntimeError("the link dropped")

    with pytest.raises(RuntimeError):
        copy_to_postgres(source, pg_url, fail_in_messages, batch=1)
    copies = copy_to_postgres(source, pg_url, batch=1)
    assert all(c.ok for c in copies), copies
    assert {c.table for c in copies} >= {"messages", "scores", "subscriptions", "privacy"}
    again = copy_to_postgres(source, pg_url)
    assert [(c.source, c.copied) for c in again] == [(c.source, c.copied) for c in copies]

    pg = Store(pg_url)
    src = sqlite3.connect(source)
    try:
        for c in copies:
            columns = [r[1] for r in src.execute(f"PRAGMA table_info({c.table})")]
            names = ", ".join(f'"{n}"' for n in columns)
            where = " WHERE name NOT LIKE 'migrate:%'" if c.table == "checkpoints" else ""
            theirs = sorted(pg.query(f"SELECT {names} FROM {c.table}{where}"), key=repr)
            assert theirs == _rows(src, c.table), c.table
        # The subscriptions' id sequence moved past the copied ids: a new one gets a new id.
        before = {r[0] for r in pg.query("SELECT id FROM subscriptions")}
        pg.subscribe(Subscription("telegram", "c", "t", "new-user", "BTC"), NOW)
        after = {r[0] for r in pg.query("SELECT id FROM subscriptions")}
        assert len(after - before) == 1 and min(after - before) > max(before)
    finally:
        src.close()
        pg.close()


@pytest.mark.sqlite_only  # moves a SQLite file into PostgreSQL
def test_mood_answers_the_same_from_both_backends_after_migrate(
    tmp_path: Path, pg_url: str
) -> None:
    """A scored, ticked SQLite database moved into PostgreSQL answers /mood, /why and
    /trending word for word as it did (every read path of those commands, on PostgreSQL)."""
    lite = chatter(tmp_path / "moodring.db", 2000)
    engine_at(lite, NOW)
    lite.close()
    assert all(c.ok for c in copy_to_postgres(tmp_path / "moodring.db", pg_url))
    lite, pg = Store(tmp_path / "moodring.db"), Store(pg_url)
    try:
        for text in ("/mood BTC", "/mood", "/why ETH", "/trending", "/levels BTC"):
            name, *args = text.lstrip("/").split()
            cmd = Command("telegram", "-1001", "-1001", "9", name, tuple(args))
            a = handle(cmd, CommandContext(store=lite, now=NOW)).text
            b = handle(cmd, CommandContext(store=pg, now=NOW)).text
            assert a == b, text
    finally:
        lite.close()
        pg.close()


def test_a_server_that_is_down_is_one_clear_line() -> None:
    """No retries and no traceback at start: one line naming the database (without its
    password) and why."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://moodring:hunter2@127.0.0.1:{port}/moodring"
    with pytest.raises(StoreError) as caught:
        Store(url)
    message = str(caught.value)
    assert "\n" not in message and "hunter2" not in message
    assert message.startswith(f"cannot open database {redact(url)}")
    assert "refused" in message.lower()


def test_a_url_of_another_engine_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match=r"mysql:// is not a database moodring runs on"):
        Settings(db="mysql://h/db")
    assert Settings(db="postgresql://u@h/d").db == "postgresql://u@h/d"
    assert Settings(db="data/moodring.db").db == Path("data/moodring.db")


def test_one_writer_per_postgres_database(pg_url: str) -> None:
    """`moodring run` holds the database; `rescore` beside it is refused (an advisory lock
    the server drops with the connection)."""
    with (
        runlock.hold(pg_url, "run"),
        pytest.raises(runlock.DatabaseBusyError),
        runlock.hold(pg_url, "rescore"),
    ):
        pass
    with runlock.hold(pg_url, "rescore"):
        pass  # free again once the first holder let go


def test_nul_in_a_message_is_stored_on_postgres(backend_store: Store) -> None:
    """PostgreSQL text cannot hold NUL (SQLite's can): the message is stored, not lost."""
    from bot.store import StoredMessage
    from connectors.types import Message

    at = datetime(2026, 1, 1, tzinfo=UTC)
    m = Message("telegram", "c", "c", "1", "a", "gm\x00 $BTC", at)
    assert backend_store.add_messages([StoredMessage(m, "gm $btc", ("BTC",), None, None)], at)
    [(text,)] = backend_store.query("SELECT text FROM messages")
    assert text.startswith("gm") and text.endswith("$BTC")
    assert backend_store.newest_message_time() == at


class Cuttable:
    """A TCP relay on 127.0.0.1 in front of PostgreSQL that a test can cut (every live
    connection dropped, new ones refused) and restore: the server going away mid-run."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._live: list[socket.socket] = []
        self._lock = threading.Lock()
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._live += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accept() blocked on it (close does not)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            live, self._live = self._live, []
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._serve()


def test_the_store_rides_out_a_database_outage_mid_run(pg_url: str) -> None:
    """The server goes away between two writes and comes back 6 s later (past the pool's
    own 5 s wait for a connection): the second write waits, retries and lands once; the
    outage is reported (the live bot's "database" health), and then its end. Past
    ``retry_s`` a call fails with one clear error."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(pg_url)
    relay = Cuttable(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = parts.netloc.rsplit("@", 1)
    via = urlunsplit(parts._replace(netloc=f"{netloc[0]}@127.0.0.1:{relay.port}"))
    store = Store(via, retry_s=30)
    reports: list[str | None] = []
    store.on_outage = reports.append
    at = datetime(2026, 1, 1, tzinfo=UTC)
    store.set_checkpoint("before", "1", at)
    relay.cut()
    threading.Timer(6.0, relay.restore).start()
    store.set_checkpoint("during", "2", at)  # waits for the server, then lands
    assert store.checkpoint("during") == "2"
    assert reports and reports[-1] is None and all(r for r in reports[:-1])
    assert store.query("SELECT COUNT(*) FROM checkpoints") == [(2,)]

    store.retry_s = 1.5
    relay.cut()
    with pytest.raises(StoreError, match=r"^database unreachable for \d+ s: "):
        store.checkpoint("before")
    relay.restore()
    store.close()
