"""Stage workers over Redis vs the one-process bot: msgs/s, latency, CPU per stage (not a test).

    .venv/bin/python scripts/bench_workers.py                    # run, 1 scorer, 2 scorers
    .venv/bin/python scripts/bench_workers.py --posts 1000 --configs 1

Configurations, each on a fresh PostgreSQL database (created on ``--pg``'s server, dropped
after) and, for the workers, a fresh Redis key prefix (deleted after), all replaying the same
file (the first ``--posts`` posts of the bundled month) with the shipped model:

* ``run``: the single process ``moodring run --replay FILE``.
* ``N`` (a number): the stage workers, each the real CLI in its own process: one ``worker
  intake --replay FILE``, N ``worker score --threads 1``, one ``worker index`` and one
  ``worker deliver``. Index, deliverer and scorers start first; intake starts once their CPU
  time has stopped moving (imports done, model loaded, waiting on Redis). The run is over when
  intake has exited, the index has applied the last chunk intake numbered, and no outbox row
  waits to be sent.

What is measured, and how:

* **msgs/s**: messages / (last index evaluation - intake ready). "Intake ready" is the time
  of intake's "serving commands on the console" log line, logged right before it reads its
  sources; the last index evaluation is the newest "index evaluated to M at T" line (below)
  for message time up to the last message's minute. Process start-up and model loading are
  left out in every configuration; ``wall`` includes them.
* **latency**: the store keeps ``messages.ingested_at`` (wall time each message was stored)
  and ``outbox.created_at`` (wall time the alert's outbox row was written), both truncated to
  whole seconds, so each latency is the true one to within a second. When the index evaluated
  a minute is recorded nowhere else (the checkpoint row keeps only the latest), so the index
  (or the one process) runs with ``MOODRING_LOG_LEVEL=DEBUG`` and its engine logs "index
  evaluated to M at T" after each committed tick and batch of alert minutes
  (``bot.pipeline.ticks.evaluated``; T to the millisecond). A message dated t counts in minute
  ceil(t) (``ceil_minute``); it is evaluated at the first such line with M >= its minute, and
  one stored after that line is late (its minute was evaluated without it; counted, not
  timed). An alert's latency is, for each message of its minute (or, where its minute has
  none, e.g. an hourly tick's alert, the newest message dated before it), outbox.created_at
  minus that message's ingested_at. A replay at full speed keeps the pipeline saturated: intake
  runs ahead of the scorers up to the queue bound (``queue_size`` messages), so these are the
  latencies of a backlog draining, mostly queueing; ``--speed`` replays at a factor of real
  time instead.
* **CPU-s per message**: each process's user+system CPU time (``/proc/PID/stat``; for a
  process that exits by itself, its rusage from ``wait4``), minus what it had used when ready
  (start-up: imports, the model), divided by the messages stored. PostgreSQL: the backends
  serving the run's database (``pg_stat_activity``), sampled every 0.5 s (a backend's last half
  second before it closes is missed; the WAL writer and checkpointer, shared with other
  databases, are not counted). Redis: the server's ``used_cpu_user + used_cpu_sys`` delta,
  which counts any other client of that server too.
* **PostgreSQL writes**: rows inserted, updated and deleted per table, from
  ``pg_stat_user_tables`` of the run's database after its processes stopped, and commits from
  ``pg_stat_database``; divided by the messages. The index's writes (readings, ticks, alert
  state) follow message *time* and scopes, not message count: a replay crams days of message
  time into a minute, so those figures per message do not carry over to a live firehose.

The projection to N scorers and to 10,000 msgs/s is arithmetic on these figures, printed
with the table; the last line is one JSON object of every figure. The numbers go in
docs/SCALING.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "bot" / "demo_data" / "stocktwits_btc_eth_2022.csv"
EVALUATED = re.compile(r"index evaluated to (\S+) at (\S+)")
READY = "serving commands on the console"  # logged by `serve` right before the sources run
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FIREHOSE = 10_000  # msgs/s the projection is for
#: Tables written once or more per message (the rest follow chunks and message time).
PER_MESSAGE = ("messages", "message_assets", "scores")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces) start at the third field.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ceil_minute(ts: datetime) -> datetime:
    floor = ts.replace(second=0, microsecond=0)
    return floor if floor == ts else floor + timedelta(minutes=1)


def log_time(line: str) -> datetime:
    """The wall time of a moodring log line (``%(asctime)s``: local time, milliseconds)."""
    naive = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return naive.astimezone(UTC)


@dataclass
class Proc:
    """One moodring process of a run: its stage, logs, and CPU when ready and at the end."""

    name: str
    stage: str
    popen: subprocess.Popen[bytes]
    err: Path
    ready_cpu: float = 0.0
    end_cpu: float | None = None
    rc: int | None = None

    def reaped(self) -> bool:
        """Whether it has exited (then its CPU at exit is known, from ``wait4``)."""
        if self.rc is not None:
            return True
        pid, status, usage = os.wait4(self.popen.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.rc = os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.rc
        self.end_cpu = usage.ru_utime + usage.ru_stime
        return True

    def stop(self) -> None:
        """Read its CPU time, then SIGTERM it and wait."""
        if self.reaped():
            return
        self.end_cpu = cpu_seconds(self.popen.pid)
        self.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while not self.reaped():
            if time.monotonic() > deadline:
                self.popen.kill()
            time.sleep(0.1)

    @property
    def work_cpu(self) -> float:
        return (self.end_cpu or 0.0) - self.ready_cpu

    def log(self) -> str:
        return self.err.read_text(errors="replace")


class Monitor(threading.Thread):
    """Samples, every 0.5 s: the CPU of the PostgreSQL backends of one database (the newest
    reading per backend) and Redis's used memory (the peak)."""

    def __init__(self, admin_url: str, db_name: str, redis_url: str | None) -> None:
        import psycopg
        import redis

        super().__init__(daemon=True)
        self.db_name = db_name
        # One connection each, kept: a connection per sample would load the server measured.
        self.conn = psycopg.connect(admin_url, autocommit=True)
        self.redis = redis.Redis.from_url(redis_url) if redis_url else None
        self.backend_cpu: dict[int, float] = {}
        self.baseline: dict[int, float] = {}
        self.redis_base = 0
        self.redis_peak = 0
        self.ignore: set[int] = set()
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def sample(self) -> None:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.db_name]
        ).fetchall()
        with self._lock:
            for (pid,) in rows:
                cpu = cpu_seconds(pid)
                if cpu is not None and pid not in self.ignore:
                    self.backend_cpu[pid] = cpu
        if self.redis is not None:
            used = int(self.redis.info("memory")["used_memory"])
            self.redis_peak = max(self.redis_peak, used)

    def mark(self) -> None:
        """Take the backends' CPU and Redis's memory so far as the baseline (start-up)."""
        self.sample()
        with self._lock:
            self.baseline = dict(self.backend_cpu)
        self.redis_base = self.redis_peak

    def pg_cpu(self) -> float:
        with self._lock:
            return sum(cpu - self.baseline.get(pid, 0.0) for pid, cpu in self.backend_cpu.items())

    def run(self) -> None:
        while not self._halt.wait(0.5):
            try:
                self.sample()
            except Exception as exc:  # a missed sample only loses precision
                print(f"  (monitor: {exc})", file=sys.stderr)

    def finish(self) -> None:
        self._halt.set()
        self.join()
        self.sample()
        self.conn.close()
        if self.redis is not None:
            self.redis.close()


def redis_cpu(url: str) -> float:
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


@dataclass
class Result:
    """The figures of one configuration."""

    name: str
    scorers: int  # 0: the one-process run
    messages: int = 0
    wall_s: float = 0.0
    active_s: float = 0.0
    eval_latency: list[float] = field(default_factory=list)
    late: int = 0
    open_: int = 0  # messages of the last minute, not evaluated yet when the replay ended
    alert_latency: list[float] = field(default_factory=list)
    scored_latency: list[float] = field(default_factory=list)
    sent_latency: list[float] = field(default_factory=list)
    alerts: int = 0
    chunks: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # stage → CPU-s after start-up
    startup_cpu: dict[str, float] = field(default_factory=dict)
    pg_cpu: float = 0.0
    redis_cpu: float | None = None
    redis_peak_mb: float | None = None
    writes: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # rows ins, upd, del
    commits: int = 0  # transactions committed, read-only ones included

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.active_s if self.active_s else 0.0

    def per_msg(self, value: float) -> float:
        return value / self.messages if self.messages else 0.0

    def rows(self, table: str) -> int:
        """Rows of ``table`` inserted, updated and deleted."""
        return sum(self.writes.get(table, (0, 0, 0)))

    def cpu_per_msg(self) -> float:
        """Every process's CPU after start-up, PostgreSQL's and Redis's, per message."""
        return self.per_msg(sum(self.cpu.values()) + self.pg_cpu + (self.redis_cpu or 0.0))

    def summary(self) -> dict[str, Any]:
        def ms(values: list[float], q: float) -> float | None:
            v = quantile(values, q)
            return None if v is None else round(v, 2)

        return {
            "config": self.name,
            "scorers": self.scorers,
            "messages": self.messages,
            "wall_s": round(self.wall_s, 1),
            "active_s": round(self.active_s, 1),
            "msgs_per_s": round(self.msgs_per_s, 1),
            "eval_latency_s": {
                "p50": ms(self.eval_latency, 0.5),
                "p99": ms(self.eval_latency, 0.99),
            },
            "eval_timed": len(self.eval_latency),
            "late": self.late,
            "open_at_end": self.open_,
            "alert_latency_s": {
                "p50": ms(self.alert_latency, 0.5),
                "p99": ms(self.alert_latency, 0.99),
                "n": len(self.alert_latency),
            },
            "stored_to_scored_s": {
                "p50": ms(self.scored_latency, 0.5),
                "p99": ms(self.scored_latency, 0.99),
            },
            "outbox_to_sent_s": {
                "p50": ms(self.sent_latency, 0.5),
                "p99": ms(self.sent_latency, 0.99),
            },
            "alerts": self.alerts,
            "chunks": self.chunks,
            "cpu_s_per_msg": {k: round(self.per_msg(v), 6) for k, v in self.cpu.items()},
            "startup_cpu_s": {k: round(v, 1) for k, v in self.startup_cpu.items()},
            "pg_cpu_s_per_msg": round(self.per_msg(self.pg_cpu), 6),
            "redis_cpu_s_per_msg": None
            if self.redis_cpu is None
            else round(self.per_msg(self.redis_cpu), 6),
            "redis_peak_mb": None if self.redis_peak_mb is None else round(self.redis_peak_mb, 1),
            "cpu_s_per_msg_all": round(self.cpu_per_msg(), 6),
            "pg_rows_per_msg": {
                t: round(self.per_msg(self.rows(t)), 3) for t in sorted(self.writes)
            },
            "pg_ins_upd_del_per_msg": {
                t: [round(self.per_msg(n), 3) for n in v] for t, v in sorted(self.writes.items())
            },
            "pg_transactions_per_msg": round(self.per_msg(self.commits), 3),
        }


class Bench:
    """One run of the benchmark: the replay file, the servers, and a work folder."""

    def __init__(self, args: argparse.Namespace, replay: Path, work: Path) -> None:
        self.args = args
        self.replay = replay
        self.work = work
        self.base = re.sub(r"/[^/]*$", "", args.pg)

    def env(self, db_url: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
        if "MOODRING_CACHE_DIR" in os.environ:  # the built int8 model, reused
            env["MOODRING_CACHE_DIR"] = os.environ["MOODRING_CACHE_DIR"]
        env.update(
            MOODRING_DB=db_url,
            MOODRING_SCORE_CHUNK=str(self.args.chunk),
            MOODRING_LOG_LEVEL="INFO",
        )
        return env | extra

    def start(self, folder: Path, name: str, stage: str, env: dict[str, str], *cli: str) -> Proc:
        err = folder / f"{name}.err"
        with (folder / f"{name}.out").open("wb") as out, err.open("wb") as errf:
            popen = subprocess.Popen(
                [sys.executable, "-m", "bot.app.cli", *cli],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=errf,
            )
        return Proc(name, stage, popen, err)

    def replay_args(self) -> list[str]:
        speed = ["--speed", str(self.args.speed)] if self.args.speed else []
        return ["--replay", str(self.replay), *speed]

    # ------------------------------------------------------------------ one configuration

    def run(self, name: str, scorers: int) -> Result:
        import psycopg
        from psycopg import sql

        db_name = f"moodring_bench_{uuid.uuid4().hex[:12]}"
        db_url = f"{self.base}/{db_name}"
        prefix = f"moodring-bench-{uuid.uuid4().hex[:12]}:"
        folder = self.work / name
        folder.mkdir()
        with psycopg.connect(self.args.pg, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
        procs: list[Proc] = []
        try:
            return self._run(name, scorers, db_name, db_url, prefix, folder, procs)
        finally:
            for proc in procs:
                if not proc.reaped():
                    proc.popen.kill()
                    proc.popen.wait()
            with psycopg.connect(self.args.pg, autocommit=True) as conn:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(db_name)))
            if scorers:
                import redis

                client = redis.Redis.from_url(self.args.redis)
                keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
                if keys:
                    client.delete(*keys)
                client.close()

    def _run(
        self,
        name: str,
        scorers: int,
        db_name: str,
        db_url: str,
        prefix: str,
        folder: Path,
        procs: list[Proc],
    ) -> Result:
        from bot.pipeline.intake import SEQ_CHECKPOINT
        from bot.pipeline.workers import INDEX_CHECKPOINT, index_progress
        from bot.store import Store

        result = Result(name, scorers)
        Store(db_url).close()  # the schema, before several processes open it
        monitor = Monitor(self.args.pg, db_name, self.args.redis if scorers else None)
        began = time.monotonic()
        if scorers == 0:
            env = self.env(db_url, MOODRING_LOG_LEVEL="DEBUG")
            intake = self.start(folder, "run", "run", env, "run", *self.replay_args())
            procs.append(intake)
            index = intake
        else:
            env = self.env(
                db_url,
                MOODRING_QUEUE=self.args.redis,
                MOODRING_QUEUE_PREFIX=prefix,
            )
            index = self.start(
                folder, "index", "index", env | {"MOODRING_LOG_LEVEL": "DEBUG"}, "worker", "index"
            )
            deliver_env = env | {"MOODRING_DELIVERY_S": str(self.args.delivery_s)}
            procs += [
                index,
                self.start(folder, "deliver", "deliver", deliver_env, "worker", "deliver"),
            ]
            for i in range(1, scorers + 1):
                procs.append(
                    self.start(
                        folder, f"score-{i}", "score", env, "worker", "score", "--threads", "1"
                    )
                )
            wait_idle(procs)
            for proc in procs:
                proc.ready_cpu = cpu_seconds(proc.popen.pid) or 0.0
            intake = self.start(
                folder, "intake", "intake", env, "worker", "intake", *self.replay_args()
            )
            procs.append(intake)
        # Intake is ready when it logs that its sources start: start-up CPU ends there.
        ready_at = wait_for_line(intake, READY, procs)
        intake.ready_cpu = cpu_seconds(intake.popen.pid) or 0.0
        redis_before = redis_cpu(self.args.redis) if scorers else None
        store = Store(db_url)
        monitor.ignore.add(int(store.query("SELECT pg_backend_pid()")[0][0]))
        monitor.mark()
        monitor.start()

        def count(query: str) -> int:
            return int(store.query(query)[0][0])

        def done() -> bool:
            if not intake.reaped():
                return False
            if intake.rc != 0:
                raise SystemExit(
                    f"{name}: {intake.name} exited {intake.rc}\n{intake.log()[-3000:]}"
                )
            if scorers:
                numbered = store.checkpoint(SEQ_CHECKPOINT)
                applied = index_progress(store.checkpoint(INDEX_CHECKPOINT))[0]
                if numbered is None or applied < int(numbered):
                    return False
                result.chunks = int(numbered)
                # Every alert sent (the one process sends its own before it ends).
                unsent = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND given_up IS NULL"
                return count(unsent) == 0
            return True

        try:
            wait_until(done, self.args.timeout, procs, f"{name} to finish")
            for proc in procs:  # CPU read right before each is stopped
                proc.stop()
            result.wall_s = time.monotonic() - began
            monitor.finish()
            if redis_before is not None:
                result.redis_cpu = redis_cpu(self.args.redis) - redis_before
                result.redis_peak_mb = (monitor.redis_peak - monitor.redis_base) / 2**20
            result.pg_cpu = monitor.pg_cpu()
            self._collect(result, store, index, ready_at, procs)
        finally:
            store.close()
        time.sleep(1.0)  # the closed backends' statistics reach the collector
        self._writes(result, db_url)
        return result

    def _collect(
        self, result: Result, store: Any, index: Proc, ready_at: datetime, procs: list[Proc]
    ) -> None:
        """Throughput and latencies from the store's stamps and the index's log lines."""
        for proc in procs:
            if proc.rc not in (0, -signal.SIGTERM):
                raise SystemExit(f"{proc.name} exited {proc.rc}\n{proc.log()[-3000:]}")
            result.cpu[proc.stage] = result.cpu.get(proc.stage, 0.0) + proc.work_cpu
            result.startup_cpu[proc.stage] = (
                result.startup_cpu.get(proc.stage, 0.0) + proc.ready_cpu
            )
        rows = store.query(
            "SELECT m.created_at, m.ingested_at, s.scored_at FROM messages m LEFT JOIN scores s"
            " ON s.platform = m.platform AND s.channel = m.channel"
            " AND s.message_id = m.message_id ORDER BY m.created_at"
        )
        created = [datetime.fromisoformat(r[0]) for r in rows]
        stored = [datetime.fromisoformat(r[1]) for r in rows]
        result.messages = len(rows)
        result.scored_latency = [
            (datetime.fromisoformat(r[2]) - s).total_seconds()
            for r, s in zip(rows, stored, strict=True)
            if r[2]
        ]
        # The index's commits: (message time evaluated up to, wall time), in log order.
        evals = [
            (datetime.fromisoformat(m[1]), datetime.fromisoformat(m[2]))
            for line in index.log().splitlines()
            if (m := EVALUATED.search(line))
        ]
        newest = ceil_minute(created[-1]) if created else None
        evals = [(until, at) for until, at in evals if newest is None or until <= newest]
        if not evals:
            raise SystemExit(f"{result.name}: no 'index evaluated' line in {index.err}")
        result.active_s = (max(at for _, at in evals) - ready_at).total_seconds()
        reach: list[datetime] = []  # the message time evaluated so far, after each line
        for until, _ in evals:
            reach.append(max(until, reach[-1]) if reach else until)
        for c, s in zip(created, stored, strict=True):
            i = next_at_least(reach, ceil_minute(c))
            if i is None:  # the last minute: no message after it moved the watermark past it
                result.open_ += 1
                continue
            at = evals[i][1]
            # Stamps are whole seconds (truncated): stored up to 1 s after ``s``.
            if at < s:
                result.late += 1
            else:
                result.eval_latency.append((at - s).total_seconds())
        alerts = store.query(
            "SELECT a.at, o.created_at, o.sent_at FROM outbox o"
            " JOIN alerts a ON a.key = o.alert_key"
        )
        result.alerts = int(store.query("SELECT COUNT(*) FROM alerts")[0][0])
        for at_text, queued_text, sent_text in alerts:
            at, queued = datetime.fromisoformat(at_text), datetime.fromisoformat(queued_text)
            if sent_text:
                result.sent_latency.append(
                    (datetime.fromisoformat(sent_text) - queued).total_seconds()
                )
            minute = [s for c, s in zip(created, stored, strict=True) if ceil_minute(c) == at]
            if not minute:  # an hourly tick's alert: the newest message dated before it
                before = bisect_right(created, at)
                minute = [stored[before - 1]] if before else []
            result.alert_latency += [(queued - s).total_seconds() for s in minute]

    def _writes(self, result: Result, db_url: str) -> None:
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            result.writes = {
                table: (int(ins), int(upd), int(dele))
                for table, ins, upd, dele in conn.execute(
                    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
                    " WHERE relname <> 'moodring_migrations'"
                )
                if ins or upd or dele
            }
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
            result.commits = int(row[0]) if row else 0


def next_at_least(reach: list[datetime], minute: datetime) -> int | None:
    """The first index in the non-decreasing ``reach`` at or past ``minute``."""
    lo, hi = 0, len(reach)
    while lo < hi:
        mid = (lo + hi) // 2
        if reach[mid] >= minute:
            hi = mid
        else:
            lo = mid + 1
    return lo if lo < len(reach) else None


def check(procs: Sequence[Proc]) -> None:
    """Stop the bench when a process that should run has failed."""
    for proc in procs:
        if proc.reaped() and proc.rc != 0:
            raise SystemExit(f"{proc.name} exited {proc.rc}:\n{proc.log()[-3000:]}")


def wait_until(done: Callable[[], bool], timeout: float, procs: Sequence[Proc], what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        check(procs)
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.log()[-1500:]}" for p in procs)
            raise SystemExit(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.25)


def wait_idle(procs: Sequence[Proc], timeout: float = 300.0) -> None:
    """Until every process's CPU time has stood still for a second (loaded, waiting)."""
    last: dict[str, tuple[float, float]] = {}  # name → (cpu, since when it has not moved)

    def idle() -> bool:
        now = time.monotonic()
        quiet = 0
        for proc in procs:
            cpu = cpu_seconds(proc.popen.pid) or 0.0
            seen = last.get(proc.name)
            if seen is None or cpu - seen[0] > 0.02:
                last[proc.name] = (cpu, now)
            elif now - seen[1] >= 1.0:
                quiet += 1
        return quiet == len(procs)

    wait_until(idle, timeout, procs, "the workers to load")


def wait_for_line(proc: Proc, text: str, procs: Sequence[Proc]) -> datetime:
    """The time of ``proc``'s first log line holding ``text`` (waiting for it)."""
    found: list[datetime] = []

    def logged() -> bool:
        for line in proc.log().splitlines():
            if text in line:
                found.append(log_time(line))
                return True
        return False

    wait_until(logged, 300, procs, f"{proc.name} to log {text!r}")
    return found[0]


def write_replay(source: Path, posts: int, out: Path) -> int:
    """The first ``posts`` rows of ``source`` (a CSV with a header) into ``out``."""
    with source.open(newline="") as src, out.open("w", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        writer.writerow(next(reader))
        n = 0
        for row in reader:
            if n == posts:
                break
            writer.writerow(row)
            n += 1
    return n


# ---------------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[Result], args: argparse.Namespace) -> dict[str, Any]:
    stages = ("intake", "score", "index", "deliver", "run")
    print(
        f"\n{'config':<10} {'msgs':>6} {'wall s':>7} {'msgs/s':>7} {'eval p50':>9} {'p99':>6}"
        f" {'late':>5} {'alert p50':>9} {'p99':>6} {'n':>4}"
    )
    for r in results:
        print(
            f"{r.name:<10} {r.messages:6,} {r.wall_s:7.1f} {r.msgs_per_s:7.1f}"
            f" {fmt(quantile(r.eval_latency, 0.5)):>9} {fmt(quantile(r.eval_latency, 0.99)):>6}"
            f" {r.late:5} {fmt(quantile(r.alert_latency, 0.5)):>9}"
            f" {fmt(quantile(r.alert_latency, 0.99)):>6} {len(r.alert_latency):4}"
        )
    print("\nCPU-seconds per message (after start-up; milli-CPU-s/msg)")
    print(
        f"{'config':<10}" + "".join(f"{s:>9}" for s in stages) + f"{'PG':>9}{'Redis':>9}{'sum':>9}"
    )
    for r in results:
        cells = [r.per_msg(r.cpu[s]) * 1000 if s in r.cpu else None for s in stages]
        redis = None if r.redis_cpu is None else r.per_msg(r.redis_cpu) * 1000
        total = r.cpu_per_msg() * 1000
        print(
            f"{r.name:<10}"
            + "".join(f"{fmt(c, '.2f'):>9}" for c in cells)
            + f"{r.per_msg(r.pg_cpu) * 1000:9.2f}{fmt(redis, '.2f'):>9}{total:9.2f}"
        )
    tables = sorted({t for r in results for t in r.writes})
    print("\nPostgreSQL rows written (insert + update + delete) per message")
    print(f"{'table':<18}" + "".join(f"{r.name:>10}" for r in results))
    for t in tables:
        print(f"{t:<18}" + "".join(f"{r.per_msg(r.rows(t)):10.3f}" for r in results))
    print(f"{'(transactions)':<18}" + "".join(f"{r.per_msg(r.commits):10.3f}" for r in results))

    figures: dict[str, Any] = {
        "posts": args.posts,
        "chunk": args.chunk,
        "speed": args.speed,
        "configs": [r.summary() for r in results],
    }
    workers = {r.scorers: r for r in results if r.scorers}
    if not workers:
        return figures
    one = workers.get(1) or workers[min(workers)]
    print("\nProjection (arithmetic on the figures above)")
    best = max(results, key=lambda r: r.msgs_per_s)
    cores = os.cpu_count() or 1
    box = cores / best.cpu_per_msg() if best.cpu_per_msg() else 0.0
    print(
        f"  this box ({cores} cores): {best.msgs_per_s:.1f} msgs/s measured ({best.name});"
        f" {cores} cores / {best.cpu_per_msg() * 1000:.2f} ms CPU per message = {box:.0f} msgs/s"
        " if every core were busy"
    )
    figures["box"] = {"cores": cores, "best": best.name, "cpu_bound_msgs_per_s": round(box)}
    for r in workers.values():
        print(f"  {r.name}: score {r.per_msg(r.cpu['score']) * 1000:.2f} ms CPU per message")
    if 1 in workers and 2 in workers and workers[1].msgs_per_s:
        scaling = workers[2].msgs_per_s / workers[1].msgs_per_s
        figures["scaling_2_vs_1"] = round(scaling, 2)
        print(f"  2 scorers vs 1: {scaling:.2f}x the msgs/s on this machine")
    cost = {s: one.per_msg(one.cpu[s]) for s in ("intake", "score", "index", "deliver")}
    pg = one.per_msg(one.pg_cpu)
    redis = one.per_msg(one.redis_cpu or 0.0)
    per_scorer = 1 / cost["score"]
    caps = {"intake": 1 / cost["intake"], "index": 1 / cost["index"]}
    print(
        f"  one scorer (--threads 1, one core busy): {per_scorer:.0f} msgs/s"
        f" ({cost['score'] * 1000:.2f} ms CPU/msg, from the {one.name} run)"
    )
    print(
        f"  single intake at 100 % of a core: {caps['intake']:,.0f} msgs/s;"
        f" single index ticker: {caps['index']:,.0f} msgs/s (its CPU per message in a replay)"
    )
    projected = {}
    for n in (1, 2, 4, 8, 16, 32, 64):
        projected[n] = min(n * per_scorer, *caps.values())
    print(
        "  N scorers, each on its own core: "
        + ", ".join(f"{n}: {v:,.0f}" for n, v in projected.items())
    )
    scorers_needed = math.ceil(FIREHOSE * cost["score"])
    rows = {t: one.per_msg(one.rows(t)) * FIREHOSE for t in PER_MESSAGE}
    print(
        f"  {FIREHOSE:,} msgs/s: {scorers_needed} scoring workers ({FIREHOSE:,} x"
        f" {cost['score']:.5f} CPU-s); PostgreSQL backends ~{FIREHOSE * pg:.1f} cores;"
        f" Redis ~{FIREHOSE * redis:.2f} cores"
    )
    print(
        "  PostgreSQL rows/s for the per-message tables: "
        + ", ".join(f"{t} {v:,.0f}" for t, v in rows.items())
        + f"; transactions/s: {one.per_msg(one.commits) * FIREHOSE:,.0f}"
    )
    figures["projection"] = {
        "from": one.name,
        "scorer_msgs_per_s": round(per_scorer, 1),
        "intake_cap_msgs_per_s": round(caps["intake"]),
        "index_cap_msgs_per_s": round(caps["index"]),
        "n_scorers_msgs_per_s": {n: round(v) for n, v in projected.items()},
        "firehose": FIREHOSE,
        "scorers_needed": scorers_needed,
        "pg_cores": round(FIREHOSE * pg, 2),
        "redis_cores": round(FIREHOSE * redis, 3),
        "pg_rows_per_s": {t: round(v) for t, v in rows.items()},
        "pg_transactions_per_s": round(one.per_msg(one.commits) * FIREHOSE),
    }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL server to create each run's database on (default: the local one)",
    )
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="the Redis server for the workers"
    )
    parser.add_argument(
        "--posts", type=int, default=4000, help="replay this many posts (default 4000)"
    )
    parser.add_argument(
        "--messages", type=Path, default=DEMO, help="a CSV of posts (default: the bundled month)"
    )
    parser.add_argument(
        "--configs",
        default="run,1,2",
        help="'run' (one process) and counts of scoring workers, comma-separated (run,1,2)",
    )
    parser.add_argument(
        "--chunk", type=int, default=256, help="MOODRING_SCORE_CHUNK for every run (default 256)"
    )
    parser.add_argument("--speed", type=float, help="replay at this factor of real time")
    parser.add_argument(
        "--delivery-s", type=float, default=1.0, help="the deliverer's round (default 1 s)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds one configuration may take"
    )
    parser.add_argument("--keep", type=Path, help="keep every process's logs in this folder")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c != "run" and not (c.isdigit() and int(c) > 0):
            parser.error(f"--configs: 'run' or a number of scorers, not {c!r}")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="moodring-bench-") as tmp:
        work = args.keep.resolve() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        replay = work / "replay.csv"
        posts = write_replay(args.messages, args.posts, replay)
        print(f"{posts:,} posts from {args.messages.name}, chunks of {args.chunk}", flush=True)
        bench = Bench(args, replay, work)
        for c in configs:
            scorers = 0 if c == "run" else int(c)
            name = "run" if scorers == 0 else f"{scorers}-scorer" + ("s" if scorers > 1 else "")
            what = "moodring run --replay" if scorers == 0 else f"stage workers, {scorers} scoring"
            print(f"{name}: {what} …", flush=True)
            results.append(bench.run(name, scorers))
            r = results[-1]
            print(
                f"  {r.messages:,} messages, {r.msgs_per_s:.1f} msgs/s, wall {r.wall_s:.1f} s",
                flush=True,
            )
    figures = report(results, args)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
