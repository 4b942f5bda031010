"""Soak test of the live bot (not part of ``make test``): replayed chatter and chat commands
through the real ``moodring run`` for an hour, watching memory, state sizes and backlog.

    .venv/bin/python scripts/soak.py                    # an hour at 50 posts a second
    .venv/bin/python scripts/soak.py --minutes 3 --sample-s 20 --out soak.json

It writes a JSONL replay of real-looking chatter (the bundled StockTwits texts, recombined
and re-authored on every pass so they are not all spam repeats, with fresh ids and
timestamps on the wall clock, whole seconds as Telegram's are: ``--burst`` posts, by default
``rate``, every ``burst/rate`` s) and starts
``moodring run --replay FILE --speed 1`` on a fresh database, with the loopback Telegram
fake (tests/fake_telegram.py) as its chat platform: every second one command (/mood BTC,
/why, /trending, /price BTC, /help, /alerts, /chart BTC 7d in turn) from a new member, in
one of four allow-listed groups or in a private chat. The console is not used: its replies
share stdout with the alerts and cannot be counted, and its one operator would never grow
the rate limiter.

Every ``--sample-s`` seconds it samples the process's RSS (/proc/PID/status), the backlog
(read from the database) and the replies sent; the bot itself logs its in-memory state
sizes once a minute ("state sizes: …", ``bot.pipeline.observer.StateLog``), which are read
from its log. At the end it prints the duration, messages stored and scored, the rate, RSS
first/last/max and its slope in MB/hour (least squares, after a warm-up of five minutes, or
a third of a shorter run), the largest state sizes, the final backlog and the commands
answered; ``--out`` writes the same with every sample as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GROUPS = (-1001000000001, -1001000000002, -1001000000003, -1001000000004)
ADMIN = 42  # each group's creator, so /alerts in a group finds its admin list
COMMANDS = ("/mood BTC", "/why", "/trending", "/price BTC", "/help", "/alerts", "/chart BTC 7d")
STATE_LINE = re.compile(r"state sizes: (.*)$")
FIRST_USER = 10_000_000  # members' ids; every command comes from a new one
SPEED = ("--speed", "1")  # real time: the posts' dates are the wall clock


@dataclass
class Sample:
    """One look at the running bot."""

    t_s: float  # seconds since the bot was ready
    rss_mb: float
    stored: int
    scored: int
    unscored: int
    unsent: int
    inbox_pending: int
    lag_s: float | None  # wall clock minus the newest stored post
    commands: int
    answered: int


@dataclass
class Report:
    """What the soak found."""

    minutes: float
    rate: float
    rows_written: int
    duration_s: float = 0.0
    stored: int = 0
    scored: int = 0
    spam: int = 0
    msgs_per_s: float = 0.0
    rss_first_mb: float = 0.0
    rss_last_mb: float = 0.0
    rss_max_mb: float = 0.0
    rss_slope_mb_per_h: float | None = None
    warmup_s: float = 0.0
    largest: dict[str, int] = field(default_factory=dict)
    last_sizes: dict[str, int] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    commands: int = 0
    answered: int = 0
    exit_code: int | None = None
    samples: list[Sample] = field(default_factory=list)


# ---------------------------------------------------------------------- inputs


def demo_rows() -> list[tuple[str, str]]:
    """(author, text) of every post in the bundled StockTwits file."""
    from bot.paths import demo_file

    with demo_file("stocktwits_btc_eth_2022.csv").open(newline="", encoding="utf-8") as f:
        return [(row["author"], row["text"]) for row in csv.DictReader(f) if row["text"].strip()]


def write_replay(path: Path, rows: int, rate: float, start: datetime, burst: int = 1) -> None:
    """``rows`` posts at ``rate`` a second from ``start``, ``burst`` of them sharing each
    timestamp: the demo texts on the first pass, then each text's first half joined to
    another's second half, by the author's pass-numbered twin (a bot repeating one text per
    author would be all spam).

    The replay sleeps the gap between consecutive posts, and time the event loop spends
    elsewhere (storing a batch, waiting for the store's lock or the GIL) before it wakes
    adds to every sleep: with one post per 20 ms it fell a third behind on two busy cores,
    with bursts of 10 a sixth. Bursts sleep less often.
    """
    demo = demo_rows()
    n = len(demo)
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            lap, k = divmod(i, n)
            author, text = demo[k]
            if lap:
                other = demo[(k * 31 + lap * 977) % n][1].split()
                words = text.split()
                text = " ".join(words[: max(1, len(words) // 2)] + other[len(other) // 2 :])
                author = f"{author}-{lap}"
            at = start + timedelta(seconds=(i // burst) * burst / rate)
            row = {"id": f"soak-{i}", "created_at": at.isoformat(), "author": author, "text": text}
            out.write(json.dumps(row) + "\n")


def command_update(n: int, now: datetime) -> tuple[dict, int]:
    """The ``n``-th command as a Telegram update, and the chat it was asked in: from a new
    member each time; three in four in a group, the fourth in a private chat."""
    user = FIRST_USER + n
    text = COMMANDS[n % len(COMMANDS)]
    if n % 4 == 3:
        chat: dict[str, Any] = {"id": user, "type": "private", "first_name": f"m{n}"}
    else:
        group = GROUPS[n % len(GROUPS)]
        chat = {"id": group, "title": f"Soak group {group % 10}", "type": "supergroup"}
    update = {
        "update_id": 1_000 + n,
        "message": {
            "message_id": 1_000 + n,
            "from": {"id": user, "is_bot": False, "first_name": f"m{n}"},
            "chat": chat,
            "date": int(now.timestamp()),
            "text": text,
            "entities": [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}],
        },
    }
    return update, chat["id"]


# ---------------------------------------------------------------------- measuring


def rss_mb(pid: int) -> float:
    """The process's resident set, in MB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


def backlog(db: Path) -> dict[str, Any]:
    """Messages stored, scored and waiting; unsent alerts; unhandled chat updates; the
    newest stored post's time (read through the store, as ``moodring status`` does)."""
    from bot.store import Store

    store = Store(db)
    try:
        counts = store.counts()
        return {
            "stored": sum(counts.get(s, 0) for s in ("new", "scored", "failed")),
            "scored": counts.get("scored", 0),
            "unscored": counts.get("new", 0),
            "failed": counts.get("failed", 0),
            "spam": counts.get("spam", 0),
            "unsent": store.count_unsent(),
            "inbox_pending": len(store.pending_updates("telegram", 100_000)),
            "newest": store.newest_message_time(),
        }
    finally:
        store.close()


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per hour; None under two points."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in points) / var * 3600


class StateLogReader:
    """Reads the bot's "state sizes" log lines as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.largest: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.lines = 0

    def poll(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self.offset += end
        for line in data[:end].decode("utf-8", "replace").splitlines():
            match = STATE_LINE.search(line)
            if match is None:
                continue
            self.lines += 1
            sizes = {}
            for pair in match.group(1).split():
                key, _, value = pair.partition("=")
                if value.isdigit():
                    sizes[key] = int(value)
            self.last = sizes
            for key, value in sizes.items():
                self.largest[key] = max(value, self.largest.get(key, 0))


def answered(fake: Any, asked: dict[int, int]) -> int:
    """Commands answered: a private chat counts once (one command each), a group's every
    reply (a reply is one message; photos carry their caption)."""
    sends = fake.requests("sendMessage") + fake.requests("sendPhoto")
    per_chat: dict[int, int] = {}
    for call in sends:
        chat = int(call.params["chat_id"])
        per_chat[chat] = per_chat.get(chat, 0) + 1
    return sum(min(n, asked.get(chat, 0)) for chat, n in per_chat.items())


# ---------------------------------------------------------------------- the run


def bot_env(db: Path, fake_url: str, model_dir: str | None) -> dict[str, str]:
    from tests.fake_telegram import TOKEN

    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
    env.update(
        MOODRING_DB=str(db),
        MOODRING_TELEGRAM_TOKEN=TOKEN,
        MOODRING_TELEGRAM_API_URL=fake_url,
        MOODRING_COMMUNITIES=json.dumps([f"telegram:{g}" for g in GROUPS]),
        MOODRING_LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
    )
    if model_dir:
        env["MOODRING_MODEL_DIR"] = model_dir
    if "MOODRING_CACHE_DIR" in os.environ:  # the int8 model is built once per cache
        env["MOODRING_CACHE_DIR"] = os.environ["MOODRING_CACHE_DIR"]
    return env


def soak(args: argparse.Namespace, work: Path) -> Report:
    from tests.fake_telegram import FakeTelegram

    duration = args.minutes * 60
    rows = int(duration * args.rate)
    report = Report(minutes=args.minutes, rate=args.rate, rows_written=rows)
    db, replay, log_path = work / "soak.db", work / "chatter.jsonl", work / "moodring.log"
    fake = FakeTelegram()
    for group in GROUPS:
        fake.admins[group] = [ADMIN]
    fake.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        print(f"writing {rows:,} posts to {replay} …", flush=True)
        # Dated from now: the model loads in a few seconds, so the first posts come a
        # little late, well within the live run's lateness (120 s).
        write_replay(replay, rows, args.rate, datetime.now(UTC), args.burst)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bot.app.cli", "run", "--replay", str(replay), *SPEED],
                cwd=work,  # no stray moodring.toml
                env=bot_env(db, fake.base_url, args.model_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        print(f"moodring run started (pid {proc.pid}); log: {log_path}", flush=True)
        deadline = time.monotonic() + args.ready_s
        while not fake.requests("getMe"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"moodring did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        start = time.monotonic()
        print("ready: replaying and asking one command a second", flush=True)
        states = StateLogReader(log_path)
        asked: dict[int, int] = {}
        sent = 0
        next_sample = start + min(args.sample_s, 5.0)  # a first look soon after start
        while (now := time.monotonic()) < start + duration:
            if proc.poll() is not None:
                print(f"moodring exited early with {proc.returncode}", flush=True)
                break
            update, chat = command_update(sent, datetime.now(UTC))
            fake.queue_update(update)
            asked[chat] = asked.get(chat, 0) + 1
            sent += 1
            if now >= next_sample:
                report.samples.append(take_sample(proc.pid, db, now - start, fake, asked, sent))
                states.poll()
                print_sample(report.samples[-1], states.last)
                next_sample += args.sample_s
            time.sleep(max(0.0, start + sent - time.monotonic()))  # one command a second
        report.duration_s = time.monotonic() - start
        report.samples.append(take_sample(proc.pid, db, report.duration_s, fake, asked, sent))
        states.poll()
        report.commands = sent
        report.answered = answered(fake, asked)
        report.largest, report.last_sizes = states.largest, states.last
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                report.exit_code = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                report.exit_code = proc.wait(10)
        else:
            report.exit_code = proc.returncode
        final = backlog(db)
        report.stored, report.scored, report.spam = final["stored"], final["scored"], final["spam"]
        report.backlog = {k: final[k] for k in ("unscored", "failed", "unsent", "inbox_pending")}
        report.msgs_per_s = report.stored / report.duration_s if report.duration_s else 0.0
        summarise_rss(report, args.minutes)
        return report
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        fake.stop()


def take_sample(
    pid: int, db: Path, t_s: float, fake: Any, asked: dict[int, int], commands: int
) -> Sample:
    b = backlog(db)
    newest = b["newest"]
    lag = (datetime.now(UTC) - newest).total_seconds() if newest is not None else None
    return Sample(
        t_s=round(t_s, 1),
        rss_mb=round(rss_mb(pid), 1),
        stored=b["stored"],
        scored=b["scored"],
        unscored=b["unscored"],
        unsent=b["unsent"],
        inbox_pending=b["inbox_pending"],
        lag_s=round(lag, 1) if lag is not None else None,
        commands=commands,
        answered=answered(fake, asked),
    )


def print_sample(s: Sample, sizes: dict[str, int]) -> None:
    lag = f"{s.lag_s:.0f}s" if s.lag_s is not None else "-"
    print(
        f"[{s.t_s:7.0f}s] rss {s.rss_mb:7.1f} MB  stored {s.stored:>9,}  scored {s.scored:>9,}"
        f"  unscored {s.unscored:>6,}  unsent {s.unsent}  inbox {s.inbox_pending}  lag {lag}"
        f"  commands {s.answered}/{s.commands}",
        flush=True,
    )
    if sizes:
        print("          " + " ".join(f"{k}={v}" for k, v in sizes.items()), flush=True)


def summarise_rss(report: Report, minutes: float) -> None:
    live = [s for s in report.samples if s.rss_mb > 0]
    if not live:
        return
    report.rss_first_mb, report.rss_last_mb = live[0].rss_mb, live[-1].rss_mb
    report.rss_max_mb = max(s.rss_mb for s in live)
    # Warm-up: the model, caches and the index filling up; five minutes, or a third of a
    # shorter run.
    report.warmup_s = min(300.0, minutes * 60 / 3)
    points = [(s.t_s, s.rss_mb) for s in live if s.t_s >= report.warmup_s]
    slope = slope_per_hour(points)
    report.rss_slope_mb_per_h = round(slope, 1) if slope is not None else None


def print_report(r: Report) -> None:
    slope = f"{r.rss_slope_mb_per_h:+.1f} MB/h" if r.rss_slope_mb_per_h is not None else "n/a"
    print("\n==== soak summary ====")
    print(f"duration            {r.duration_s:,.0f} s (asked {r.minutes:g} min at {r.rate:g}/s)")
    print(f"replay rows written {r.rows_written:,}")
    print(f"messages stored     {r.stored:,} ({r.msgs_per_s:.1f} msgs/s), scored {r.scored:,}")
    print(f"marked spam         {r.spam:,}")
    print(
        f"RSS                 first {r.rss_first_mb:.1f} MB, last {r.rss_last_mb:.1f} MB, "
        f"max {r.rss_max_mb:.1f} MB; slope {slope} (after {r.warmup_s:.0f} s of warm-up)"
    )
    chat = {k: v for k, v in r.largest.items() if "." in k}
    caches = {k: v for k, v in r.largest.items() if "." not in k}
    print("largest chat state  " + (" ".join(f"{k}={v}" for k, v in chat.items()) or "n/a"))
    print("largest pipeline    " + (" ".join(f"{k}={v}" for k, v in caches.items()) or "n/a"))
    print("final backlog       " + " ".join(f"{k}={v}" for k, v in r.backlog.items()))
    print(f"commands answered   {r.answered:,} of {r.commands:,}")
    print(f"moodring exit code  {r.exit_code}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--rate", type=float, default=50.0, help="posts a second (default 50)")
    parser.add_argument("--out", type=Path, help="write the report and samples as JSON here")
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples")
    parser.add_argument(
        "--burst", type=int, help="posts per timestamp (default: --rate, one stamp a second)"
    )
    parser.add_argument("--model-dir", help="the model (default: the shipped one)")
    parser.add_argument("--ready-s", type=float, default=600.0, help="start-up timeout")
    parser.add_argument("--keep", action="store_true", help="keep the database and the log")
    args = parser.parse_args()
    args.burst = max(1, args.burst or round(args.rate))
    sys.path.insert(0, str(ROOT))  # tests.fake_telegram, from a checkout
    work = Path(tempfile.mkdtemp(prefix="moodring-soak-"))
    try:
        report = soak(args, work)
    finally:
        if not args.keep:
            for path in sorted(work.iterdir()):
                path.unlink()
            work.rmdir()
        else:
            print(f"kept {work}")
    print_report(report)
    if args.out:
        args.out.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
        print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
