"""`moodring migrate --to postgresql://…`: copy a SQLite database into PostgreSQL, resumably,
and verify it."""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.errors import StoreError
from bot.store.base import StoreBase
from bot.store.sql import upsert

log = logging.getLogger(__name__)

#: The destination's checkpoint for each table: the last source rowid copied. Deleted once the
#: copy is verified; a run that stopped half-way starts after it.
MARK = "migrate:"
BATCH = 2_000


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One table moved: rows in the source, rows in the destination after the copy."""

    table: str
    source: int
    copied: int

    @property
    def ok(self) -> bool:
        return self.source == self.copied


def copy_to_postgres(
    source: Path,
    url: str,
    progress: Callable[[str, int, int], None] | None = None,
    batch: int = BATCH,
) -> list[TableCopy]:
    """Copy every table of the SQLite database ``source`` into the PostgreSQL database at
    ``url`` (its schema made by the same migrations), then count both sides.

    The source is read from a snapshot taken with SQLite's backup API, so a bot still
    writing to it leaves a consistent copy (rows written after the snapshot are not moved:
    stop the bot first). Rows are written by key (an upsert), in the source's rowid order,
    ``batch`` at a time with a per-table mark in the destination, so running it again after
    a failure resumes, and running it again after success changes nothing. Identity columns
    (subscription ids) are copied as they are and their sequences moved past the largest.

    Args:
        source: the SQLite file.
        url: the destination, ``postgresql://…``.
        progress: called with (table, rows copied so far, rows in the table).
        batch: rows per transaction.

    Raises:
        StoreError: either database cannot be opened.
    """
    if not source.is_file():
        raise StoreError(f"no database at {source}")
    with tempfile.TemporaryDirectory(prefix="moodring-migrate-") as tmp:
        snapshot = Path(tmp) / "snapshot.db"
        _snapshot(source, snapshot)
        StoreBase(snapshot).close()  # brings an older file up to the latest migration
        dest = StoreBase(url)
        src = sqlite3.connect(snapshot)
        try:
            copies = [_copy_table(src, dest, table, progress, batch) for table in _tables(src)]
            _advance_identities(dest)
            if all(c.ok for c in copies):
                with dest.transaction() as db:
                    db.execute("DELETE FROM checkpoints WHERE name LIKE ?", [MARK + "%"])
            return copies
        finally:
            src.close()
            dest.close()


def _snapshot(source: Path, snapshot: Path) -> None:
    src = sqlite3.connect(source)
    out = sqlite3.connect(snapshot)
    try:
        src.backup(out)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot read database {source}: {exc}") from None
    finally:
        out.close()
        src.close()


def _tables(src: sqlite3.Connection) -> list[str]:
    rows = src.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return [name for (name,) in rows]


def _copy_table(
    src: sqlite3.Connection,
    dest: StoreBase,
    table: str,
    progress: Callable[[str, int, int], None] | None,
    batch: int,
) -> TableCopy:
    info = src.execute(f"PRAGMA table_info({table})").fetchall()
    columns = [row[1] for row in info]
    key = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5]]
    statement = upsert(table, columns, key or columns)
    total = src.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    mark = dest.checkpoint(MARK + table)
    after = int(mark) if mark else 0
    done = src.execute(f"SELECT COUNT(*) FROM {table} WHERE rowid <= ?", [after]).fetchone()[0]
    names = ", ".join(f'"{c}"' for c in columns)
    while True:
        rows = src.execute(
            f"SELECT rowid, {names} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
            [after, batch],
        ).fetchall()
        if not rows:
            break
        after = rows[-1][0]
        dest.write_many(
            statement, [row[1:] for row in rows], (MARK + table, str(after), datetime.now(UTC))
        )
        done += len(rows)
        if progress is not None:
            progress(table, done, total)
    # The copy's own marks live in checkpoints too: not counted as rows of the source.
    where = f" WHERE name NOT LIKE '{MARK}%'" if table == "checkpoints" else ""
    copied = dest.query(f"SELECT COUNT(*) FROM {table}{where}")[0][0]
    log.info("migrate: %s %d of %d rows", table, copied, total)
    return TableCopy(table, total, copied)


def _advance_identities(dest: StoreBase) -> None:
    """Move each identity sequence past the largest id copied, so the first new row does
    not collide with a copied one."""
    with dest.transaction() as db:
        rows = db.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND is_identity = 'YES'"
            " AND identity_generation = 'BY DEFAULT'"
        ).fetchall()
        for table, column in rows:
            db.execute(
                f'SELECT setval(pg_get_serial_sequence(?, ?), COALESCE(MAX("{column}"), 0) + 1,'
                f" false) FROM {table}",
                [table, column],
            )
