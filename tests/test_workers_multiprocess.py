"""Stage workers as separate OS processes on loopback, real PostgreSQL and Redis: one intake
fed by a replay and the fake Telegram API, three scoring workers, two index workers and two
deliverers, each the real CLI; one scorer, the index ticker and one deliverer are SIGKILLed
mid-stream. Every message ends with one score, the alerts equal the one-process `moodring run`
on the same input (the same replay and Telegram updates), each alert reaches the Telegram
subscriber with a repeat only where a kill interrupted a send, and the leases move.

Chunks are as long as intake's batches (``MOODRING_SCORE_CHUNK=256``), so every flush of the
replay cuts exactly one full chunk and the cut never depends on timing: the int8 model's
scores move slightly with batch-mates, so equal alerts need equal chunks (and scorers that
keep no scores from earlier chunks, which differ from worker to worker: ``load_scorer``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.pipeline.intake import SEQ_CHECKPOINT
from bot.pipeline.workers import CLOCK_CHECKPOINT, INDEX_CHECKPOINT, index_progress
from bot.prefs.subscriptions import Subscription
from bot.render import render_alert
from bot.store import TICK_CHECKPOINT, Store, iso
from bot.types import Alert
from tests.conftest import ROOT
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.test_chat_telegram import GROUP
from tests.test_crash_resume import (
    COMMANDS,
    REPLAY_ROWS,
    SUBSCRIBER,
    TelegramInput,
    sends_to,
    telegram_input,
    write_replay,
)

CHUNK = 256
CLAIM_IDLE_S = 2  # a dead worker's item is taken over this long after its last touch
OUTBOX_LEASE_S = 3  # a dead deliverer's outbox rows go to the other this long after
LONG = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)

log = logging.getLogger(__name__)


def base_env(model_dir: Path, work: Path, db: str, fake: FakeTelegram) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
    env.update(
        MOODRING_DB=db,
        MOODRING_MODEL_DIR=str(model_dir),
        MOODRING_CACHE_DIR=os.environ.get("MOODRING_CACHE_DIR", str(work / "cache")),
        MOODRING_SCORE_CHUNK=str(CHUNK),
        MOODRING_TELEGRAM_TOKEN=TOKEN,
        MOODRING_TELEGRAM_API_URL=fake.base_url,
        MOODRING_COMMUNITIES=f'["telegram:{GROUP}"]',
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


@dataclass
class Outcome:
    """What one run left: its alerts, and the texts the fake Telegram got for the subscriber
    and for the group (the commands' replies)."""

    alerts: list[Alert]
    to_subscriber: list[str]
    to_group: list[str]
    statuses: list[tuple]
    scores: list[tuple]


class Run:
    """One run's database, fake Telegram and processes, with what its waits need."""

    def __init__(self, work: Path, db: str, model_dir: Path) -> None:
        work.mkdir()
        self.db = db
        self.fake = FakeTelegram()
        self.fake.start()
        Store(db).close()  # the schema, before several processes open it
        self.store = Store(db)
        self.store.subscribe(
            Subscription(
                "telegram", str(SUBSCRIBER), str(SUBSCRIBER), str(SUBSCRIBER), daily_cap=100
            ),
            datetime.now(UTC),
        )
        self.procs = Processes(work, base_env(model_dir, work, db, self.fake))

    def count(self, sql: str, params: Sequence[object] = ()) -> int:
        return int(self.store.query(sql, list(params))[0][0])

    def scored(self, platform: str) -> int:
        sql = "SELECT COUNT(*) FROM messages WHERE platform = ? AND status = 'scored'"
        return self.count(sql, [platform])

    def feed_telegram(self, tg: TelegramInput) -> None:
        for update in tg.first + tg.second:
            self.fake.queue_update(update)

    def telegram_done(self, tg: TelegramInput) -> bool:
        """Every post scored, every update handled, the index at the last post's hour, every
        alert sent and every command answered."""
        return (
            self.scored("telegram") == len(tg.post_ids)
            and self.count("SELECT COUNT(done_at) FROM chat_inbox") == len(tg.update_ids)
            and self.store.checkpoint(TICK_CHECKPOINT) == iso(tg.newest.replace(minute=0, second=0))
            and self.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL") == 0
            and len(sends_to(self.fake, GROUP)) >= len(COMMANDS)
        )

    def outcome(self) -> Outcome:
        return Outcome(
            alerts=self.store.alerts_between(*LONG),
            to_subscriber=sends_to(self.fake, SUBSCRIBER),
            to_group=sends_to(self.fake, GROUP),
            statuses=self.store.query("SELECT status, COUNT(*) FROM messages GROUP BY status"),
            scores=self.store.query(
                "SELECT COUNT(*), COUNT(DISTINCT platform || channel || message_id) FROM scores"
            ),
        )

    def close(self) -> dict[str, int]:
        codes = self.procs.stop_all()
        self.store.close()
        self.fake.stop()
        return codes


def one_process(work: Path, db: str, replay: Path, tg: TelegramInput, model: Path) -> Outcome:
    """The reference: `moodring run --replay` with the fake Telegram, uninterrupted."""
    run = Run(work, db, model)
    try:
        run.procs.start("run", "run", "--replay", str(replay))
        wait_until(lambda: run.scored("stocktwits") == REPLAY_ROWS, 120, run.procs, "replay")
        run.feed_telegram(tg)
        wait_until(lambda: run.telegram_done(tg), 120, run.procs, "the Telegram updates")
        return run.outcome()
    finally:
        codes = run.close()
        assert codes == {"run": 0}, run.procs.tails()


def test_stage_workers_killed_mid_stream_give_the_one_process_alerts(
    tmp_path: Path,
    tiny_model_dir: Path,
    pg_url: str,
    pg_databases: Callable[[], str],
    redis_url: str,
    redis_prefix: str,
) -> None:
    replay = tmp_path / "replay.csv"
    write_replay(replay)
    tg = telegram_input()
    began = time.monotonic()
    reference = one_process(tmp_path / "reference", pg_databases(), replay, tg, tiny_model_dir)
    log.info("reference run: %.1f s", time.monotonic() - began)
    assert reference.alerts, "the input must raise alerts for the comparison to mean something"

    run = Run(tmp_path / "workers", pg_url, tiny_model_dir)
    run.procs.env |= {
        "MOODRING_QUEUE": redis_url,
        "MOODRING_QUEUE_PREFIX": redis_prefix,
        "MOODRING_QUEUE_CLAIM_IDLE_S": str(CLAIM_IDLE_S),
        "MOODRING_OUTBOX_LEASE_S": str(OUTBOX_LEASE_S),
        "MOODRING_DELIVERY_S": "0.5",
    }
    procs, count = run.procs, run.count

    def index_next() -> int:
        return index_progress(run.store.checkpoint(INDEX_CHECKPOINT))[0]

    try:
        procs.start("index-a", "worker", "index")
        procs.start("index-b", "worker", "index")
        procs.start("deliver-1", "worker", "deliver")
        procs.start("deliver-2", "worker", "deliver")
        for n in (1, 2, 3):
            procs.start(f"score-{n}", "worker", "score", "--threads", "1")
        procs.start("intake", "worker", "intake", "--replay", str(replay))
        # Kill 1: a scorer, once scores are being committed (it may hold a chunk).
        wait_until(lambda: count("SELECT COUNT(*) FROM scores") > 0, 60, procs, "first scores")
        procs.kill("score-1")
        log.info("scorer killed at %.1f s", time.monotonic() - began)
        # Kill 2: the ticker, a few chunks in; the standby takes the lease over.
        wait_until(lambda: index_next() >= 4, 60, procs, "the ticker at chunk 4")
        applied_at_kill = index_next()
        ticker, standby = ("index-a", "index-b")
        if "index lease taken" not in procs.log(ticker):
            ticker, standby = standby, ticker
        procs.kill(ticker)
        log.info("ticker killed at %.1f s, chunk %d", time.monotonic() - began, applied_at_kill)
        wait_until(lambda: run.scored("stocktwits") == REPLAY_ROWS, 120, procs, "the replay")
        # The Telegram updates, then Kill 3: a deliverer, once alerts reach the subscriber.
        sent_before = len(sends_to(run.fake, SUBSCRIBER))
        run.feed_telegram(tg)
        wait_until(lambda: len(sends_to(run.fake, SUBSCRIBER)) > sent_before, 120, procs, "a send")
        procs.kill("deliver-1")
        log.info("deliverer killed at %.1f s", time.monotonic() - began)
        kills = 3

        def finished() -> bool:
            chunks = run.store.checkpoint(SEQ_CHECKPOINT)
            return (
                run.telegram_done(tg)
                and chunks is not None
                and index_next() == int(chunks)
                and count("SELECT COUNT(*) FROM alerts") >= len(reference.alerts)
            )

        wait_until(finished, 120, procs, "every chunk scored, indexed and delivered")
        log.info("all done at %.1f s", time.monotonic() - began)
        got = run.outcome()
        clock = run.store.checkpoint(CLOCK_CHECKPOINT)
    finally:
        codes = run.close()

    assert "index lease taken" in procs.log(standby), procs.tails()
    assert clock == "0"  # the intake replays a file: the index goes by message time only
    # No chunk was given up: every one was in a queue, however the kills fell.
    assert not any("are lost" in procs.log(n) for n in ("index-a", "index-b")), procs.tails()
    assert applied_at_kill < index_next_final(pg_url)
    # Every message stored and scored once, as in the one-process run.
    total = REPLAY_ROWS + len(tg.post_ids)
    assert got.statuses == reference.statuses == [("scored", total)]
    assert got.scores == reference.scores == [(total, total)]
    # The alerts of the one-process run, no more, no fewer.
    assert sorted(a.key for a in got.alerts) == sorted(a.key for a in reference.alerts)
    # Each all-sources alert reached the subscriber; a repeat only where a kill interrupted
    # a send (the reference repeats none).
    expected = {render_alert(a).text for a in got.alerts if a.scope.community == "*"}
    assert expected
    for outcome, allowed in ((reference, 0), (got, kills)):
        sent = Counter(outcome.to_subscriber)
        assert set(sent) == expected
        assert sum(n - 1 for n in sent.values()) <= allowed, sent.most_common(3)
        # Commands answered once each (the intake worker answers them).
        assert len(COMMANDS) <= len(outcome.to_group) <= len(COMMANDS) + allowed
    # The survivors stopped cleanly on SIGTERM.
    survivors = {n: c for n, c in codes.items() if n not in ("score-1", ticker, "deliver-1")}
    assert set(survivors.values()) == {0}, (survivors, procs.tails())


def index_next_final(pg_url: str) -> int:
    store = Store(pg_url)
    try:
        return index_progress(store.checkpoint(INDEX_CHECKPOINT))[0]
    finally:
        store.close()
