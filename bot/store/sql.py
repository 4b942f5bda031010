"""The store's writes in the SQL both SQLite (3.24 on) and PostgreSQL run: upserts spelled
``ON CONFLICT`` rather than SQLite's ``INSERT OR REPLACE`` / ``INSERT OR IGNORE``."""

from __future__ import annotations

from collections.abc import Sequence

Columns = str | Sequence[str]  # names, or one string of names separated by spaces


def _split(columns: Columns) -> list[str]:
    return columns.split() if isinstance(columns, str) else list(columns)


def _names(columns: Sequence[str]) -> str:
    # Quoted: "window", "user" and "interval" are reserved words in PostgreSQL.
    return ", ".join(f'"{c}"' for c in columns)


def insert_new(table: str, columns: Columns) -> str:
    """Insert one row unless it is there already (by any unique key): nothing changes then,
    and the cursor's ``rowcount`` is 0."""
    columns = _split(columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({_names(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"


def upsert(table: str, columns: Columns, key: Columns) -> str:
    """Insert one row, or overwrite every other column of the row with the same ``key``."""
    columns, key = _split(columns), _split(key)
    marks = ", ".join("?" for _ in columns)
    rest = [c for c in columns if c not in key]
    action = f"DO UPDATE SET {set_excluded(rest)}" if rest else "DO NOTHING"
    return (
        f"INSERT INTO {table} ({_names(columns)}) VALUES ({marks})"
        f" ON CONFLICT ({_names(key)}) {action}"
    )


def set_excluded(columns: Columns) -> str:
    """``"a" = excluded."a", …``: an upsert's update of ``columns`` to the new row's."""
    return ", ".join(f'"{c}" = excluded."{c}"' for c in _split(columns))
