"""Benchmark (not a test): what chat commands cost a live bot as its window fills, with the
command memo (``PipelineConfig.command_memo_s``) against computing every ask, in one process
on the same synthetic chatter.

    .venv/bin/python scripts/bench_commands.py --held 70000 --seconds 120

It holds ``--held`` scored messages over the last hours (four groups, BTC/ETH/SOL/none), then
for ``--seconds`` simulated seconds adds ``--rate`` messages and asks one command (the soak's
cycle: /mood BTC, /why, /trending, /price BTC, /help, /alerts, /chart BTC 7d, from one of
four groups or a DM) each second, through the real command handlers reading the engine's
held messages. Prints, per run, the command time per simulated second (mean, p50, p99, max),
the memo's hits, and the share of one core the commands take.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from random import Random

from bench_minutes import NOW, chatter  # scripts/ is on the path when run as a script

from bot.chat.commands import CommandContext, handle
from bot.pipeline.config import PipelineConfig
from bot.pipeline.ticks import IndexEngine
from bot.store import Store
from connectors.types import Command

CYCLE = ("/mood BTC", "/why", "/trending", "/price BTC", "/help", "/alerts", "/chart BTC 7d")
CHATS = ("-1000", "-1001", "-1002", "-1003", "dm")


def ask(i: int) -> Command:
    name, *args = CYCLE[i % len(CYCLE)].lstrip("/").split()
    chat = CHATS[i % len(CHATS)]
    community = "" if chat == "dm" else chat
    return Command(
        "telegram", community, chat if chat != "dm" else f"u{i}", f"u{i}", name, tuple(args)
    )


def run(memo_s: float, held: int, rate: int, seconds: int) -> tuple[list[float], int]:
    rng = Random(7)
    store = Store(Path(tempfile.mkdtemp()) / "bench.db")
    engine = IndexEngine(store, PipelineConfig(command_memo_s=memo_s))
    hours = max(held / (rate * 3600), 1 / 60)
    start = NOW - timedelta(hours=hours)
    engine.last_minute = NOW
    engine.add(chatter(rng, 0, held, start, (NOW - start).total_seconds()))
    n, spent = held, []
    for s in range(seconds):
        now = NOW + timedelta(seconds=s + 1)
        engine.add(chatter(rng, n, rate, now - timedelta(seconds=1), 1))
        n += rate
        t = time.perf_counter()
        handle(ask(s), CommandContext(store=store, now=now, held=engine))
        spent.append(time.perf_counter() - t)
    store.close()
    return spent, engine.memo_hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=70_000)
    parser.add_argument("--rate", type=int, default=50, help="messages a second")
    parser.add_argument("--seconds", type=int, default=120, help="asks, one a second")
    parser.add_argument("--memo", type=float, default=15.0, help="command_memo_s of the memo run")
    args = parser.parse_args()
    print(f"held {args.held:,} messages, +{args.rate}/s, one command a second for {args.seconds} s")
    for label, memo_s in (
        ("every ask computes (baseline)", 0.0),
        (f"memo {args.memo:g} s", args.memo),
    ):
        spent, hits = run(memo_s, args.held, args.rate, args.seconds)
        q = statistics.quantiles(spent, n=100)
        print(
            f"{label:30} mean {1000 * statistics.mean(spent):7.1f} ms  p50 {1000 * q[49]:7.1f}"
            f"  p99 {1000 * q[98]:7.1f}  max {1000 * max(spent):7.1f}  memo hits {hits:4}"
            f"  = {100 * sum(spent) / args.seconds:5.1f}% of a core"
        )


if __name__ == "__main__":
    main()
