"""Existing SQLite databases upgrade in place without loss (#15): fixture databases made at
migration 6 and at the latest migration (tests/fixtures/store_databases.py) are opened by
today's store, every row of every table survives, and the store works on them."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from bot.store import Store, StoredMessage
from bot.store.schema import migrations
from connectors.types import Message
from tests.fixtures.store_databases import FIXTURES, HERE, T0

#: Columns a later migration rewrites on purpose (none yet): table → columns.
REWRITTEN: dict[str, set[str]] = {}

pytestmark = pytest.mark.sqlite_only  # the SQLite fixture files, upgraded in place


def snapshot(path: Path) -> dict[str, tuple[list[str], list[tuple[object, ...]]]]:
    """Every user table's columns and rows, sorted."""
    conn = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%'"
                " ESCAPE '\\' AND name NOT LIKE 'sqlite%'"
            )
        ]
        out = {}
        for name in names:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')]
            keep = [c for c in columns if c not in REWRITTEN.get(name, set())]
            select = ", ".join(f'"{c}"' for c in keep)
            rows = sorted(conn.execute(f'SELECT {select} FROM "{name}"'), key=repr)
            out[name] = (keep, rows)
        return out
    finally:
        conn.close()


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_an_old_database_upgrades_in_place_without_loss(tmp_path: Path, fixture: str) -> None:
    path = tmp_path / fixture
    shutil.copy(HERE / fixture, path)
    before = snapshot(path)
    assert before and all(len(rows) >= 3 for _, rows in before.values())  # + seeded rows

    store = Store(path)
    try:
        applied = [r[0] for r in store.query("SELECT name FROM _sqlite_migrations")]
        assert sorted(applied) == sorted(m.name for m in migrations._migrations)
        after = snapshot(path)
        for table, (columns, rows) in before.items():
            now_columns, now_rows = after[table]
            assert set(columns) <= set(now_columns), table
            index = [now_columns.index(c) for c in columns]
            assert sorted((tuple(r[i] for i in index) for r in now_rows), key=repr) == rows, table

        # The upgraded store takes new messages and reads the old ones.
        message = Message("telegram", "-1001", "-1001", "new-1", "u1", "$BTC", T0)
        assert store.add_messages([StoredMessage(message, "$btc", ("BTC",), None, None)], T0) == 1
        assert store.query("SELECT COUNT(*) FROM messages") == [(4,)]
        assert store.oldest_message_time() is not None
        assert store.scored_since(T0 - timedelta(days=1), T0 + timedelta(days=1)) == []
    finally:
        store.close()


def test_the_fixtures_are_at_the_migrations_they_claim() -> None:
    """A fixture rebuilt by mistake at another migration would prove nothing."""
    for name, stop_before in FIXTURES.items():
        conn = sqlite3.connect(HERE / name)
        applied = {r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")}
        conn.close()
        names = [m.name for m in migrations._migrations]
        expected = names if stop_before is None else names[: names.index(stop_before)]
        assert applied == set(expected), name
