"""Alert latency benchmark: a live burst through the real pipeline, message in → alert out.

Run it as ``python -m bot.app.latency [--seconds 300]``. It measures the scorer's rate on demo
texts first, then replays a burst of real demo posts, stamped with the wall clock as they
arrive, at half that rate (or fewer, if there are not enough distinct posts), spread over ten
communities whose mood turns from greed to fear halfway. For each alert it prints the time
from intake receiving the newest message stamped before the alert's minute to the alert reaching the
sink (just after its outbox row is committed): p50, p99 and the worst.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bot.app.wiring import load_scorer
from bot.market.candles import load_bundled
from bot.mood.spam import SpamConfig, SpamMarker
from bot.paths import demo_file
from bot.pipeline.config import PipelineConfig
from bot.pipeline.runner import Pipeline, Queues
from bot.settings import load_settings
from bot.store import Store
from connectors.types import Message, Reply
from nlp.assets import AssetTable
from nlp.language import LanguageDetector
from nlp.normalize import normalize

COMMUNITIES = 10
AUTHORS = 300


class TimedSink:
    """Records when each alert reached it (monotonic clock)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, Reply]] = []

    async def send(self, reply: Reply) -> None:
        self.received.append((time.monotonic(), reply))


class Burst:
    """Real posts, bullish first then bearish, stamped with the wall clock as they go out."""

    name = "burst"

    def __init__(self, texts: Sequence[str], rate: float) -> None:
        self.texts = texts
        self.rate = rate
        self.sent: list[tuple[datetime, float]] = []  # (created_at, monotonic when yielded)

    async def messages(self) -> AsyncIterator[Message]:
        start = time.monotonic()
        for i, text in enumerate(self.texts):
            due = start + i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = datetime.now(UTC).replace(microsecond=0)
            self.sent.append((now, time.monotonic()))
            yield Message(
                platform="bench",
                community=f"group-{i % COMMUNITIES}",
                channel=f"group-{i % COMMUNITIES}",
                message_id=str(i),
                author=f"user-{(i * 7919) % AUTHORS}",
                text=text,
                created_at=now,
            )


def demo_texts() -> list[str]:
    with demo_file("stocktwits_btc_eth_2022.csv").open(newline="", encoding="utf-8") as f:
        texts = [row.get("text") or row.get("body") or "" for row in csv.DictReader(f)]
    return list(dict.fromkeys(t for t in texts if t.strip()))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.app.latency", description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0, help="burst length")
    args = parser.parse_args(argv)
    settings = load_settings(None)
    scorer = load_scorer(settings, cache_size=0)

    texts = demo_texts()
    sample = [normalize(t) for t in texts[:2048]]
    scorer.score(sample[:64])  # warm-up (the int8 model is built on first use)
    started = time.perf_counter()
    scores = scorer.score(sample)
    rate = len(sample) / (time.perf_counter() - started)
    # Bullish posts first, then bearish: the mood turns halfway through the burst.
    polar = sorted(
        zip(scorer.score([normalize(t) for t in texts]), texts, strict=True),
        key=lambda p: p[0].p_pos - p[0].p_neg,
        reverse=True,
    )
    del scores
    wanted = int(rate / 2 * args.seconds)
    n = min(wanted, len(polar))
    half = n // 2
    burst_texts = [t for _, t in polar[:half]] + [t for _, t in polar[-(n - half) :]][::-1]
    burst_rate = n / args.seconds
    print(
        f"scoring rate {rate:.0f} msgs/s; burst {n} posts over {args.seconds:.0f} s "
        f"({burst_rate:.0f} msgs/s{'' if n == wanted else ', capped by distinct demo posts'}),"
        f" {COMMUNITIES} communities, {AUTHORS} authors"
    )

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "latency.db")
        load_bundled(store)
        sink = TimedSink()
        config = PipelineConfig(sinks_targets=(("bench", ""),), tick_to_clock=False)
        pipeline = Pipeline(
            store=store,
            scorer=scorer,
            assets=AssetTable.load(),
            language=LanguageDetector(),
            spam=SpamMarker(SpamConfig()),
            sinks={"bench": sink},
            queues=Queues.in_process(config.queue_size),
            config=config,
        )
        source = Burst(burst_texts, burst_rate)
        asyncio.run(pipeline.run([source], live=True))
        alerts = store.alerts_between(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
        store.close()

    stamps = [c for c, _ in source.sent]
    latencies = []
    for arrived, reply in sink.received:
        alert = next((a for a in alerts if a.title in reply.text), None)
        # The trigger: the newest post stamped before the alert's minute (stamps have whole
        # seconds, so one stamped with the minute itself may come after its evaluation).
        i = bisect.bisect_left(stamps, alert.at) - 1 if alert is not None else -1
        if i >= 0:
            latencies.append(arrived - source.sent[i][1])
    print(
        f"{len(alerts)} alerts, {len(sink.received)} delivered: "
        + ", ".join(sorted({a.kind for a in alerts}))
    )
    if not latencies:
        print("no alert to measure")
        return 1
    minutes = len({a.at for a in alerts})
    print(
        f"{len(latencies)} measured over {minutes} distinct alert minutes; "
        f"intake → alert at the sink: p50 {statistics.median(latencies):.2f} s, "
        f"p99 {percentile(latencies, 0.99):.2f} s, max {max(latencies):.2f} s "
        f"(bar: p99 ≤ 60 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
