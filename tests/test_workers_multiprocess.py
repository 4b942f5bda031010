"""Stage workers as separate OS processes on loopback, real PostgreSQL and Redis: one intake
fed by a replay, scoring, index and delivery workers, each the real CLI; one scorer and the
index ticker are SIGKILLed mid-stream. Every message ends with one score, the alerts equal the
one-process `moodring run` on the same input, and no alert is sent twice (no deliverer died).

Chunks are as long as intake's batches (``MOODRING_SCORE_CHUNK=256``), so every flush cuts
exactly one full chunk and the cut never depends on timing: the int8 model's scores move
slightly with batch-mates, so equal alerts need equal chunks.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.pipeline.intake import SEQ_CHECKPOINT
from bot.pipeline.workers import INDEX_CHECKPOINT, index_progress
from bot.render import render_alert
from bot.store import Store
from tests.conftest import ROOT
from tests.test_crash_resume import REPLAY_ROWS, write_replay

CHUNK = 256
CLAIM_IDLE_S = 2  # a dead worker's item is taken over this long after its last touch
LONG = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)

log = logging.getLogger(__name__)


def base_env(model_dir: Path, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
    env.update(
        MOODRING_MODEL_DIR=str(model_dir),
        MOODRING_CACHE_DIR=os.environ.get("MOODRING_CACHE_DIR", str(work / "cache")),
        MOODRING_SCORE_CHUNK=str(CHUNK),
        MOODRING_LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
    )
    return env


class Processes:
    """The workers of one run: started, killed and stopped by name, each logging to files."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work = work
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        with (
            (self.work / f"{name}.out").open("wb") as out,
            (self.work / f"{name}.err").open("wb") as err,
        ):
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "bot.app.cli", *args],
                cwd=self.work,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def log(self, name: str) -> str:
        return (self.work / f"{name}.err").read_text(errors="replace")

    def out(self, name: str) -> str:
        return (self.work / f"{name}.out").read_text(errors="replace")

    def check(self) -> None:
        """Fail at once when a worker that should be running died."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code not in (None, 0, -signal.SIGKILL):
                pytest.fail(f"{name} exited with {code}:\n{self.log(name)[-3000:]}")

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL

    def stop_all(self) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(10)
        return codes

    def tails(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-1500:]}" for n in self.procs)


def wait_until(done: Callable[[], bool], timeout: float, procs: Processes, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        procs.check()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{procs.tails()}")
        time.sleep(0.1)


def one_process_alerts(work: Path, replay: Path, model_dir: Path) -> list[str]:
    """The reference: `moodring run --replay` on SQLite, to the end of the replay; the keys
    of its alerts (read with sqlite3: under ``MOODRING_TEST_BACKEND=postgresql`` a ``Store``
    on a path opens PostgreSQL instead, and this file is the subprocess's own)."""
    work.mkdir()
    env = base_env(model_dir, work) | {"MOODRING_DB": str(work / "moodring.db")}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.app.cli", "run", "--replay", str(replay)],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    conn = sqlite3.connect(work / "moodring.db")
    try:
        return sorted(key for (key,) in conn.execute("SELECT key FROM alerts"))
    finally:
        conn.close()


def test_stage_workers_killed_mid_stream_give_the_one_process_alerts(
    tmp_path: Path, tiny_model_dir: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    replay = tmp_path / "replay.csv"
    write_replay(replay)
    began = time.monotonic()
    reference = one_process_alerts(tmp_path / "reference", replay, tiny_model_dir)
    log.info("reference run: %.1f s", time.monotonic() - began)
    assert reference, "the input must raise alerts for the comparison to mean something"

    work = tmp_path / "workers"
    work.mkdir()
    Store(pg_url).close()  # the schema, before several processes open it
    env = base_env(tiny_model_dir, work) | {
        "MOODRING_DB": pg_url,
        "MOODRING_QUEUE": redis_url,
        "MOODRING_QUEUE_PREFIX": redis_prefix,
        "MOODRING_QUEUE_CLAIM_IDLE_S": str(CLAIM_IDLE_S),
        "MOODRING_DELIVERY_S": "0.5",
    }
    procs = Processes(work, env)
    store = Store(pg_url)

    def count(sql: str) -> int:
        return int(store.query(sql)[0][0])

    def index_next() -> int:
        return index_progress(store.checkpoint(INDEX_CHECKPOINT))[0]

    try:
        procs.start("index-a", "worker", "index")
        procs.start("index-b", "worker", "index")
        procs.start("deliver-1", "worker", "deliver")
        procs.start("deliver-2", "worker", "deliver")
        procs.start("score-1", "worker", "score", "--threads", "1")
        procs.start("intake", "worker", "intake", "--replay", str(replay))
        # Kill 1: the only scorer, once it has committed its first chunk (it holds the next).
        wait_until(lambda: count("SELECT COUNT(*) FROM scores") > 0, 60, procs, "first scores")
        procs.kill("score-1")
        log.info("scorer killed at %.1f s", time.monotonic() - began)
        procs.start("score-2", "worker", "score", "--threads", "1")
        procs.start("score-3", "worker", "score", "--threads", "1")
        # Kill 2: the ticker, a few chunks in; the standby takes the lease over.
        wait_until(lambda: index_next() >= 4, 60, procs, "the ticker at chunk 4")
        applied_at_kill = index_next()
        ticker, standby = ("index-a", "index-b")
        if "index lease taken" not in procs.log(ticker):
            ticker, standby = standby, ticker
        procs.kill(ticker)
        log.info("ticker killed at %.1f s, chunk %d", time.monotonic() - began, applied_at_kill)
        kills = 2

        def finished() -> bool:
            chunks = store.checkpoint(SEQ_CHECKPOINT)
            return (
                procs.procs["intake"].poll() == 0
                and count("SELECT COUNT(*) FROM scores") == REPLAY_ROWS
                and chunks is not None
                and index_next() == int(chunks)
                and count("SELECT COUNT(*) FROM alerts") >= len(reference)
                and count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL") == 0
            )

        wait_until(finished, 120, procs, "every chunk scored, indexed and delivered")
        log.info("all done at %.1f s", time.monotonic() - began)
        alerts = store.alerts_between(*LONG)
        scores = store.query(
            "SELECT COUNT(*), COUNT(DISTINCT platform || channel || message_id) FROM scores"
        )
        statuses = store.query("SELECT status, COUNT(*) FROM messages GROUP BY status")
    finally:
        codes = procs.stop_all()
        store.close()

    assert "index lease taken" in procs.log(standby), procs.tails()
    # No chunk was given up: every one was in a queue, however the kills fell.
    assert not any("are lost" in procs.log(n) for n in ("index-a", "index-b")), procs.tails()
    assert applied_at_kill < index_next_final(pg_url)
    # Every message stored and scored once.
    assert statuses == [("scored", REPLAY_ROWS)]
    assert scores == [(REPLAY_ROWS, REPLAY_ROWS)]
    # The alerts of the one-process run, no more, no fewer.
    assert sorted(a.key for a in alerts) == reference
    # Each alert printed by the deliverers, a repeat only where a kill interrupted a send.
    printed = procs.out("deliver-1") + procs.out("deliver-2")
    expected = Counter(render_alert(a).text for a in alerts)
    sent = {text: printed.count(text) for text in expected}
    assert all(sent[t] >= n for t, n in expected.items()), sent
    assert sum(sent[t] - n for t, n in expected.items()) <= kills, sent
    # The survivors stopped cleanly on SIGTERM.
    survivors = {n: c for n, c in codes.items() if n not in ("score-1", ticker)}
    assert set(survivors.values()) == {0}, (survivors, procs.tails())


def index_next_final(pg_url: str) -> int:
    store = Store(pg_url)
    try:
        return index_progress(store.checkpoint(INDEX_CHECKPOINT))[0]
    finally:
        store.close()
