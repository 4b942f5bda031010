"""``MOODRING_TEST_BACKEND=postgresql``: the whole suite on PostgreSQL. Every ``Store`` a test
opens on a SQLite path opens a PostgreSQL database of that path's own instead, and
``copy_database`` copies one (a ``TEMPLATE`` clone) where a test copies a SQLite file."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from tests.services import PostgresService

BACKEND_ENV = "MOODRING_TEST_BACKEND"


def on_postgres() -> bool:
    """Whether this run opens every store on PostgreSQL."""
    return os.environ.get(BACKEND_ENV, "sqlite") == "postgresql"


class Redirect:
    """SQLite paths → PostgreSQL databases, made on first open and dropped at the end."""

    def __init__(self, service: PostgresService) -> None:
        self.service = service
        self.made: dict[str, str] = {}

    def url_for(self, path: Path | str, memory: bool = False) -> str:
        """The database standing for ``path`` (made now if new). A placeholder file is left
        at ``path``, so the CLI's "is there a database?" check finds one, as it would."""
        key = f"memory-{uuid.uuid4().hex}" if memory else str(path)
        if key not in self.made:
            self.made[key] = self._create()
            if not memory and Path(path).parent.is_dir() and not Path(path).exists():
                Path(path).touch()
        return self.service.database_url(self.made[key])

    def copy(self, source: Path, target: Path) -> None:
        """``target`` gets a copy of ``source``'s database (every store on it closed)."""

        old = self.made.get(str(target))
        name = self._create(template=self.made[str(source)], drop=old)
        self.made[str(target)] = name
        target.touch()

    def _create(self, template: str | None = None, drop: str | None = None) -> str:
        import psycopg
        from psycopg import sql

        name = f"moodring_test_{uuid.uuid4().hex}"
        with psycopg.connect(self.service.url, autocommit=True) as conn:
            if drop is not None:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(drop))
                )
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is not None:
                create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(create)
        return name

    def drop_all(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.service.url, autocommit=True) as conn:
            for name in self.made.values():
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))
        self.made.clear()


#: The session's redirect, while ``MOODRING_TEST_BACKEND=postgresql`` (tests/conftest.py).
REDIRECT: list[Redirect] = []


def copy_database(source: Path, target: Path) -> None:
    """Copy a store's database whose stores are all closed: the SQLite file, or on the
    PostgreSQL run the database standing for it."""
    if REDIRECT:
        REDIRECT[0].copy(source, target)
    else:
        shutil.copy(source, target)
