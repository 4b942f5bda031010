"""Benchmark (not a test): the minute alert rules' cost per minute of a firehose, with the
dense-scope rule (``PipelineConfig.dense_messages``) against evaluating every scope every
minute, in one process on the same synthetic chatter.

    .venv/bin/python scripts/bench_minutes.py --held 150000 --rate 50 --minutes 10

It holds ``--held`` scored messages spread over the alert window's last hours, then adds
``rate * 60`` messages a minute (four groups, BTC/ETH/SOL/none, 20,000 authors) and times
``IndexEngine.advance`` for each minute; prints mean/p50/p99/max seconds per minute and the
evaluations run and deferred."""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.pipeline.config import PipelineConfig
from bot.pipeline.ticks import IndexEngine
from bot.store import ScoredRow, Store

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ASSETS = (("BTC",), ("ETH",), ("BTC", "ETH"), (), ("SOL",))


def chatter(
    rng: random.Random, first: int, n: int, start: datetime, span_s: float
) -> list[ScoredRow]:
    return [
        ScoredRow(
            key=f"k{first + i}",
            created_at=start + timedelta(seconds=int(span_s * i / n)),
            author=f"u{rng.randrange(20_000)}",
            community=f"-100{rng.randrange(4)}",
            platform="telegram",
            polarity=rng.uniform(-1, 1),
            engagement=rng.randrange(5),
            spam=rng.random() < 0.05,
            set_aside=False,
            public=False,
            text="btc pumping, eth lagging",
            assets=rng.choice(ASSETS),
        )
        for i in range(n)
    ]


def run(
    config: PipelineConfig, held: int, rate: int, minutes: int
) -> tuple[list[float], IndexEngine]:
    rng = random.Random(7)
    store = Store(Path(tempfile.mkdtemp()) / "bench.db")
    engine = IndexEngine(store, config)
    hours = max(held / (rate * 3600), 1 / 60)
    start = NOW - timedelta(hours=hours)
    engine.last_minute = NOW  # what is held counts as evaluated already (late, not due)
    engine.add(chatter(rng, 0, held, start, (NOW - start).total_seconds()))
    per_minute: list[float] = []
    n = held
    for m in range(minutes):
        begin = NOW + timedelta(minutes=m)
        engine.add(chatter(rng, n, rate * 60, begin + timedelta(seconds=1), 59))
        n += rate * 60
        t = time.perf_counter()
        engine.advance(begin + timedelta(minutes=1))
        per_minute.append(time.perf_counter() - t)
    return per_minute, engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=150_000)
    parser.add_argument("--rate", type=int, default=50, help="messages a second")
    parser.add_argument("--minutes", type=int, default=10)
    args = parser.parse_args()
    base = PipelineConfig(tick_s=86_400)  # no hourly tick inside the timed minutes
    for name, config in (
        ("every minute (baseline)", replace(base, dense_messages=10**12)),
        ("dense-scope rule", base),
    ):
        times, engine = run(config, args.held, args.rate, args.minutes)
        q = statistics.quantiles(times, n=100) if len(times) > 1 else times * 99
        print(
            f"{name:24} held {args.held:,} +{args.rate}/s: s per minute mean "
            f"{statistics.fmean(times):.2f} p50 {q[49]:.2f} "
            f"p99 {q[98]:.2f} max {max(times):.2f}; evaluations {engine.evaluations}, "
            f"deferred {engine.deferred}"
        )


if __name__ == "__main__":
    main()
