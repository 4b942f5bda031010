"""End-to-end throughput of the demo on each store backend, in one run (not a test).

    .venv/bin/python scripts/bench_store.py                      # SQLite, then PostgreSQL
    .venv/bin/python scripts/bench_store.py --pg postgresql://postgres@127.0.0.1:5432/test

Runs the real ``moodring demo`` (the bundled month: replay → intake → score → index → alerts)
as a subprocess on a fresh SQLite file, then on a fresh PostgreSQL database created for the
run (and dropped after), with the same model and cache. Prints for each: wall time, messages
through the whole pipeline per second, peak RSS of the moodring process (PostgreSQL's own
processes are not counted), and whether the timeline (the daily table and every alert) is
the same on both. The figures go in docs/SCALING.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    backend: str
    wall_s: float
    messages: int
    alerts: int
    peak_rss_mb: float
    timeline: str

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.wall_s if self.wall_s else 0.0


def _peak_rss(pid: int, stop: threading.Event, out: list[float]) -> None:
    peak = 0.0
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            break
        stop.wait(0.2)
    out.append(peak)


def run_demo(backend: str, db: str, extra: list[str], work: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
    env["MOODRING_LOG_LEVEL"] = "WARNING"
    if "MOODRING_CACHE_DIR" in os.environ:
        env["MOODRING_CACHE_DIR"] = os.environ["MOODRING_CACHE_DIR"]
    cmd = [sys.executable, "-m", "bot.app.cli", "--db", db, "demo", "--no-progress", *extra]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stop, peak = threading.Event(), []
    watcher = threading.Thread(target=_peak_rss, args=(proc.pid, stop, peak))
    watcher.start()
    stdout, stderr = proc.communicate()
    wall = time.monotonic() - started
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"{backend}: moodring demo exited {proc.returncode}\n{stderr[-2000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    start = stdout.index("\nDay ")
    return Run(backend, wall, summary["messages"], summary["alerts"], peak[0], stdout[start:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL server to create the run's database on (default: the local one)",
    )
    parser.add_argument("--messages", help="replay this file instead of the bundled month")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import psycopg
    from psycopg import sql

    from bot.store.postgres import redact

    extra = ["--messages", str(Path(args.messages).resolve())] if args.messages else []
    name = f"moodring_bench_{uuid.uuid4().hex[:12]}"
    base = re.sub(r"/[^/]*$", "", args.pg)
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="moodring-bench-") as tmp:
            work = Path(tmp)
            print(f"demo on SQLite ({work / 'bench.db'}) …", flush=True)
            runs.append(run_demo("SQLite", str(work / "bench.db"), extra, work))
            url = f"{base}/{name}"
            print(f"demo on PostgreSQL ({redact(url)}) …", flush=True)
            runs.append(run_demo("PostgreSQL", url, extra, work))
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))
    print(
        f"\n{'backend':<11} {'wall s':>7} {'msgs':>7} {'msgs/s':>7} {'alerts':>6} {'peak RSS':>9}"
    )
    for r in runs:
        print(
            f"{r.backend:<11} {r.wall_s:7.1f} {r.messages:7,} {r.msgs_per_s:7.1f} "
            f"{r.alerts:6} {r.peak_rss_mb:7.0f} MB"
        )
    same = runs[0].timeline == runs[1].timeline
    print(f"timeline (daily table and every alert) the same on both: {'yes' if same else 'NO'}")
    print(json.dumps({r.backend: round(r.msgs_per_s, 1) for r in runs} | {"same": same}))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
