"""Crash and resume with the real process: `moodring run`, fed by the replay connector and the
loopback Telegram fake, is killed with SIGKILL at seeded random moments and restarted; at the
end every message is stored and scored once, every update handled once, the alerts equal an
uninterrupted run's, and a send repeats only where a kill interrupted it.

The run is phased on purpose: the Telegram posts are dated after the replayed ones and are
queued only once the replay is scored. The index is "as of the hour, no look-ahead", so a post
stored after its hour was ticked is kept and scored but is not in that hour's reading; two
sources interleaving their (past) clocks would make the readings depend on timing even without
a crash, and the comparison with a reference run would mean nothing.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.paths import demo_file
from bot.prefs.subscriptions import Subscription
from bot.render import render_alert
from bot.store import TICK_CHECKPOINT, Store, iso
from bot.types import Alert, Scope
from connectors.replay import ReplaySource
from nlp.scorer import Scorer
from tests.conftest import ROOT, synthetic_text
from tests.doubles import SlowSink
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.test_chat_telegram import GROUP, group_update
from tests.test_pipeline_e2e import make_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

REPLAY_ROWS = 3000  # 2022-06-25 13:39 → 2022-07-02 00:25; the tiny model raises 6 alerts on it
SUBSCRIBER = 555  # a member subscribed by DM to every alert
TG_POSTS = 400  # group posts, dated after the replay
TG_FIRST_WAVE = 300  # queued before the phase-B kills; the rest after the last restart
COMMANDS = {5: "/help", 120: "/mood", 350: "/help"}  # at these positions among the updates
SEED = int(os.environ.get("MOODRING_CRASH_SEED", "20220625"))  # other seeds: other moments

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- inputs


def write_replay(path: Path) -> list[str]:
    """The first REPLAY_ROWS rows of the bundled StockTwits file; returns their ids."""
    with demo_file("stocktwits_btc_eth_2022.csv").open(newline="", encoding="utf-8") as src:
        reader = csv.DictReader(src)
        rows = [row for _, row in zip(range(REPLAY_ROWS), reader, strict=False)]
        fields = reader.fieldnames
    assert fields is not None
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return [row["id"] for row in rows]


@dataclass(frozen=True, slots=True)
class TelegramInput:
    """The updates for the fake, split in two waves, and what they should become."""

    first: list[dict]
    second: list[dict]
    post_ids: list[str]  # message ids of the group posts (the commands are not posts)
    newest: datetime

    @property
    def update_ids(self) -> list[int]:
        return [u["update_id"] for u in self.first + self.second]


def telegram_input() -> TelegramInput:
    """Group posts from 40 members an hour after the replay ends, a few commands and a sticker;
    dates grow with update ids, never on the hour."""
    rng = random.Random(11)
    start = datetime(2022, 7, 2, 1, 0, 7, tzinfo=UTC)
    updates: list[dict] = []
    post_ids: list[str] = []
    at = start
    n_updates = TG_POSTS + len(COMMANDS) + 1
    for i in range(n_updates):
        update_id = 10_000 + i
        at = start + timedelta(seconds=53 * i)
        if i in COMMANDS:
            updates.append(group_update(update_id, COMMANDS[i], 2000 + i, at))
        elif i == 200:  # a sticker: no text, handled (marked done) but never a message
            sticker = group_update(update_id, "x", 1000, at)
            del sticker["message"]["text"]
            sticker["message"]["sticker"] = {
                "file_id": "CAACAgIAAxkBAAEB",
                "file_unique_id": "AgADBAAD",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            }
            updates.append(sticker)
        else:
            mood = rng.choice(["positive", "neutral", "negative"] if i < 250 else ["positive"])
            text = synthetic_text(rng, mood)
            updates.append(group_update(update_id, text, 1000 + rng.randrange(40), at))
            post_ids.append(str(update_id))
    cut = TG_FIRST_WAVE + sum(1 for i in COMMANDS if i < TG_FIRST_WAVE) + 1
    return TelegramInput(updates[:cut], updates[cut:], post_ids, at)


# ---------------------------------------------------------------------- the process


@dataclass
class BotProcess:
    """`python -m bot.app.cli run --replay FILE` against the fake, restarted and killed at will."""

    fake: FakeTelegram
    db: Path
    replay: Path
    model_dir: Path
    log: Path
    proc: subprocess.Popen | None = None
    starts: int = 0
    kills: list[dict[str, object]] = field(default_factory=list)  # progress at each kill
    _getme_before: int = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
        env.update(
            MOODRING_DB=str(self.db),
            MOODRING_MODEL_DIR=str(self.model_dir),
            MOODRING_CACHE_DIR=os.environ.get("MOODRING_CACHE_DIR", str(self.db.parent / "c")),
            MOODRING_TELEGRAM_TOKEN=TOKEN,
            MOODRING_TELEGRAM_API_URL=self.fake.base_url,
            MOODRING_COMMUNITIES=f'["telegram:{GROUP}"]',
            MOODRING_LOG_LEVEL="INFO",
            PYTHONPATH=str(ROOT),
        )
        return env

    def start(self) -> None:
        self._getme_before = len(self.fake.requests("getMe"))
        self.starts += 1
        with self.log.open("a") as log:
            log.write(f"\n===== start {self.starts} =====\n")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot.app.cli", "run", "--replay", str(self.replay)],
                cwd=self.db.parent,  # no stray moodring.toml
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"moodring exited with {self.proc.returncode}:\n{self.tail()}")

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the process has logged in to Telegram (model loaded, store open)."""
        wait_until(lambda: len(self.fake.requests("getMe")) > self._getme_before, timeout, self)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL
        self.kills.append(progress(self.db))

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self) -> str:
        return self.log.read_text()[-4000:]


def wait_until(done: Callable[[], bool], timeout: float, bot: BotProcess) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        bot.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s; moodring's log:\n{bot.tail()}")
        time.sleep(0.05)


def peek(db: Path, sql: str) -> list[tuple]:
    """A read of the live database from outside the process (WAL: readers never block)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def progress(db: Path) -> dict[str, object]:
    """How far the work had got (after a kill: where it landed)."""
    return {
        "messages": dict(
            peek(db, "SELECT platform || ':' || status, COUNT(*) FROM messages GROUP BY 1")
        ),
        "inbox": peek(db, "SELECT COUNT(*), COUNT(done_at) FROM chat_inbox")[0],
        "tick": peek(db, f"SELECT value FROM checkpoints WHERE name = '{TICK_CHECKPOINT}'"),
        "outbox": peek(db, "SELECT COUNT(*), COUNT(sent_at) FROM outbox")[0],
    }


def scored(db: Path, platform: str) -> int:
    sql = f"SELECT COUNT(*) FROM messages WHERE platform = '{platform}' AND status = 'scored'"
    return peek(db, sql)[0][0]


def sends_to(fake: FakeTelegram, chat: int) -> list[str]:
    calls = fake.requests("sendMessage")
    return [c.params["text"] for c in calls if c.params["chat_id"] == str(chat)]


# ---------------------------------------------------------------------- one scenario


@dataclass(frozen=True, slots=True)
class KillPlan:
    """Seconds after the process is up at which to SIGKILL it: during the replay (phase A)
    and while the first wave of Telegram updates is handled (phase B)."""

    replay: tuple[float, ...] = ()
    telegram: tuple[float, ...] = ()

    @property
    def kills(self) -> int:
        return len(self.replay) + len(self.telegram)


@dataclass
class Outcome:
    db: Path
    fake: FakeTelegram
    exit_code: int
    starts: int
    log: str
    alerts: list[Alert] = field(default_factory=list)
    kills: list[dict[str, object]] = field(default_factory=list)


def run_scenario(
    workdir: Path, replay: Path, tg: TelegramInput, model_dir: Path, plan: KillPlan
) -> Outcome:
    workdir.mkdir()
    db = workdir / "moodring.db"
    store = Store(db)
    store.subscribe(
        Subscription("telegram", str(SUBSCRIBER), str(SUBSCRIBER), str(SUBSCRIBER), daily_cap=100),
        datetime.now(UTC),
    )
    store.close()
    fake = FakeTelegram()
    fake.start()
    bot = BotProcess(fake, db, replay, model_dir, workdir / "moodring.log")
    final_tick = iso(tg.newest.replace(minute=0, second=0))
    try:
        bot.start()
        for delay in plan.replay:
            bot.wait_ready()
            time.sleep(delay)
            bot.kill()
            bot.start()
        wait_until(lambda: scored(db, "stocktwits") == REPLAY_ROWS, 90, bot)
        for update in tg.first:
            fake.queue_update(update)
        for delay in plan.telegram:
            bot.wait_ready()
            time.sleep(delay)
            bot.kill()
            bot.start()
        # The second wave reaches only the last process, which is never killed.
        bot.wait_ready()
        for update in tg.second:
            fake.queue_update(update)

        def finished() -> bool:
            tick = peek(db, f"SELECT value FROM checkpoints WHERE name = '{TICK_CHECKPOINT}'")
            unsent = peek(
                db,
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND given_up IS NULL",
            )[0][0]
            inbox = peek(db, "SELECT COUNT(*), COUNT(done_at) FROM chat_inbox")[0]
            return (
                scored(db, "telegram") == len(tg.post_ids)
                and inbox == (len(tg.update_ids), len(tg.update_ids))
                and tick == [(final_tick,)]
                and unsent == 0
                and len(sends_to(fake, GROUP)) >= len(COMMANDS)
            )

        # Unsent alerts left by a kill wait for the next new alert or the 30 s delivery loop.
        wait_until(finished, 120, bot)
        exit_code = bot.terminate()
    finally:
        bot.close()
        fake.stop()
    store = Store(db)
    try:
        alerts = store.alerts_between(datetime(2000, 1, 1, tzinfo=UTC), tg.newest)
    finally:
        store.close()
    return Outcome(db, fake, exit_code, bot.starts, bot.log.read_text(), alerts, bot.kills)


# ---------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], TelegramInput]:
    path = tmp_path_factory.mktemp("inputs") / "stocktwits_slice.csv"
    return path, write_replay(path), telegram_input()


@pytest.mark.sqlite_only  # the real CLI in a subprocess, on the SQLite file
def test_killed_at_random_moments_nothing_is_lost_or_doubled(
    tmp_path: Path, inputs: tuple[Path, list[str], TelegramInput], tiny_model_dir: Path
) -> None:
    replay, replay_ids, tg = inputs
    reference = run_scenario(tmp_path / "reference", replay, tg, tiny_model_dir, KillPlan())
    rng = random.Random(SEED)
    plan = KillPlan(
        replay=tuple(rng.uniform(0.1, 2.5) for _ in range(2)),
        telegram=tuple(rng.uniform(0.0, 1.2) for _ in range(2)),
    )
    crashed = run_scenario(tmp_path / "crashed", replay, tg, tiny_model_dir, plan)
    kills = plan.kills
    log.info("kills landed at: %s", "; ".join(map(str, crashed.kills)))
    assert crashed.starts == kills + 1
    assert reference.exit_code == 0 and crashed.exit_code == 0, crashed.log[-3000:]

    store = Store(crashed.db)
    try:
        # Every input stored once: the keys are exactly the inputs, none missing, none extra.
        stored = store.query("SELECT platform, message_id FROM messages")
        assert Counter(stored) == Counter(
            [("stocktwits", i) for i in replay_ids] + [("telegram", i) for i in tg.post_ids]
        )
        # Every stored message scored, with exactly one score row.
        assert store.query("SELECT status, COUNT(*) FROM messages GROUP BY status") == [
            ("scored", REPLAY_ROWS + len(tg.post_ids))
        ]
        assert store.query(
            "SELECT COUNT(*), COUNT(DISTINCT platform || channel || message_id) FROM scores"
        ) == [(REPLAY_ROWS + len(tg.post_ids),) * 2]
        unmatched = store.query(
            "SELECT COUNT(*) FROM messages m LEFT JOIN scores s ON s.platform = m.platform"
            " AND s.channel = m.channel AND s.message_id = m.message_id WHERE s.p_pos IS NULL"
        )
        assert unmatched == [(0,)]
        # Every update stored once in the inbox and handled; Telegram saw each confirmed once.
        inbox = store.query("SELECT update_id FROM chat_inbox WHERE done_at IS NOT NULL")
        assert sorted(u for (u,) in inbox) == tg.update_ids
        assert Counter(crashed.fake.confirmed) == Counter(tg.update_ids)
        # Every outbox row sent (nothing given up: no cap, no quiet hours, recipient there).
        assert store.query("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL") == [(0,)]
        outbox = store.query("SELECT alert_key, sink, target FROM outbox")
    finally:
        store.close()

    # The same alerts as the uninterrupted run, each with its console and DM outbox row.
    keys = sorted(a.key for a in crashed.alerts)
    assert keys == sorted(a.key for a in reference.alerts)
    assert len(keys) >= 3
    # The DM subscriber gets the all-sources alerts; one community's alerts stay with that
    # community's own subscribers (#13 finding 2).
    dm_keys = sorted(a.key for a in crashed.alerts if a.scope.community == "*")
    assert dm_keys
    assert Counter(outbox) == Counter(
        [(k, "console", "") for k in keys] + [(k, "telegram", str(SUBSCRIBER)) for k in dm_keys]
    )

    # Each alert reached the subscriber; a repeat only where a kill interrupted a send.
    for outcome, allowed in ((reference, 0), (crashed, kills)):
        sent = Counter(sends_to(outcome.fake, SUBSCRIBER))
        expected = {render_alert(a).text for a in outcome.alerts if a.scope.community == "*"}
        assert set(sent) == expected
        assert sum(n - 1 for n in sent.values()) <= allowed, sent.most_common(3)
        # Commands answered once each; a kill between reply and "done" repeats one reply.
        replies = len(sends_to(outcome.fake, GROUP))
        assert len(COMMANDS) <= replies <= len(COMMANDS) + allowed


@pytest.mark.sqlite_only  # the real CLI in a subprocess, on the SQLite file
def test_a_restart_with_everything_scored_still_brings_the_index_up_to_date(
    tmp_path: Path, inputs: tuple[Path, list[str], TelegramInput], tiny_model_dir: Path
) -> None:
    """The state a kill leaves between the last scoring commit and the ticks after it: every
    message stored and scored, the tick checkpoint behind. The next `moodring run` must tick
    (and alert) up to the newest scored message."""
    replay, _, _ = inputs
    db = tmp_path / "moodring.db"
    store = Store(db)
    pipeline = make_pipeline(store, Scorer(tiny_model_dir, cache_size=0), {})

    async def store_and_score() -> None:
        # The pipeline's own intake preparation and scorer, without the index stage.
        messages = [m async for m in ReplaySource(replay).messages()]
        store.add_messages([pipeline.prepare(m) for m in messages], datetime.now(UTC))
        pipeline.score_pending(partial=True)

    asyncio.run(store_and_score())
    newest = store.newest_message_time()
    store.close()
    assert newest is not None and scored(db, "stocktwits") == REPLAY_ROWS
    assert peek(db, f"SELECT value FROM checkpoints WHERE name = '{TICK_CHECKPOINT}'") == []

    fake = FakeTelegram()
    fake.start()
    bot = BotProcess(fake, db, replay, tiny_model_dir, tmp_path / "moodring.log")
    final_tick = iso(newest.replace(minute=0, second=0))
    try:
        bot.start()
        bot.wait_ready()
        # The whole week ticks, with an alert evaluation per minute that has messages, in a
        # few seconds; the limit leaves room for a loaded CI machine.
        deadline = time.monotonic() + 60
        tick: list[tuple] = []
        while time.monotonic() < deadline and tick != [(final_tick,)]:
            bot.check_alive()
            tick = peek(db, f"SELECT value FROM checkpoints WHERE name = '{TICK_CHECKPOINT}'")
            time.sleep(0.1)
        exit_code = bot.terminate()
    finally:
        bot.close()
        fake.stop()
    assert tick == [(final_tick,)]
    assert exit_code == 0
    assert peek(db, "SELECT COUNT(*) FROM alerts")[0][0] >= 3


def test_two_overlapping_deliveries_send_each_alert_once(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    store = Store(tmp_path / "d.db")
    now = datetime(2022, 7, 1, tzinfo=UTC)
    alert = Alert(
        key="extreme-fear:*|*|*:24h:1",
        kind="extreme",
        scope=Scope(),
        at=now,
        title="Overall mood entered Extreme Fear: 19/100",
        value=19.0,
        previous=40.0,
    )
    store.save_tick([], [alert], {}, lambda a: [("chat", "g")], (TICK_CHECKPOINT, iso(now)), now)
    sink = SlowSink(0.05)
    pipeline = make_pipeline(store, Scorer(tiny_model_dir, cache_size=0), {"chat": sink})

    async def both() -> None:
        # What indexing() and delivery_loop() do when their turns overlap.
        await asyncio.gather(pipeline.deliver(now), pipeline.deliver(now))

    asyncio.run(both())
    store.close()
    assert [r.text for r in sink.sent] == [render_alert(alert, "g").text]
