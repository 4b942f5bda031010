"""The PostgreSQL test service: the SQL the store will need, and the embedded fallback."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest

from tests.services import (
    SERVICES_ENV,
    UNPRIVILEGED_ACCOUNT,
    postgres_answers,
    postgres_service,
)

CLAIM = "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"


def test_pg_url_is_a_fresh_database_with_upsert_and_skip_locked(pg_url: str) -> None:
    assert urlsplit(pg_url).path.startswith("/moodring_test_")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)
        conn.execute(
            "CREATE TABLE jobs (id integer PRIMARY KEY, state text NOT NULL DEFAULT 'queued')"
        )
        conn.execute("INSERT INTO jobs (id) VALUES (1), (2)")
        cur = conn.execute("INSERT INTO jobs (id) VALUES (1), (3) ON CONFLICT (id) DO NOTHING")
        assert cur.rowcount == 1
        assert conn.execute("SELECT array_agg(id ORDER BY id) FROM jobs").fetchone() == ([1, 2, 3],)

    with psycopg.connect(pg_url) as first, psycopg.connect(pg_url) as second:
        # Without SKIP LOCKED the second claim would wait on the first; a bound turns that
        # into a failure rather than a hung test.
        second.execute("SET lock_timeout = '5s'")
        assert first.execute(CLAIM).fetchone() == (1,)
        assert second.execute(CLAIM).fetchone() == (2,)
        first.rollback()  # releases row 1: now the second connection sees it again
        second.rollback()
        assert second.execute(CLAIM).fetchone() == (1,)


def test_forced_fallback_starts_stops_embedded_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Forced whatever answers on 5432, so CI, which always has the local server, still runs it.
    monkeypatch.setenv(SERVICES_ENV, "embedded")
    with postgres_service(tmp_path) as service:
        assert service.embedded
        assert service.pid is not None
        port = urlsplit(service.url).port
        assert port is not None
        with psycopg.connect(service.url, connect_timeout=5) as conn:
            version = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
            assert version is not None
            assert version[0] >= 150000
            assert conn.execute("SELECT sum(x) FROM generate_series(1, 10) AS x").fetchone() == (
                55,
            )
            # The postmaster and every process it forked (this backend, checkpointer, ...).
            postmaster = psutil.Process(service.pid)
            processes = [postmaster, *postmaster.children(recursive=True)]
            assert len(processes) > 2
        if os.geteuid() == 0:
            # Its children inherit its account; they may be exiting already (our backend).
            assert postmaster.username() == UNPRIVILEGED_ACCOUNT
    # is_running also compares start times, so a recycled pid does not count as alive.
    assert [p for p in processes if p.is_running()] == []
    assert not postgres_answers("127.0.0.1", port)
