"""Alert latency benchmark: a live burst through the real pipeline, message in → alert out.

Run it as ``python -m bot.app.latency [--seconds 300]``. It measures the scorer's rate on demo
texts first. Then ten communities get three days of history (real demo posts, one every three
minutes each, stamped over the past 72 hours), so every scope has a volume baseline and a
settled mood.
Then a live burst of real demo posts arrives at half the scoring rate, stamped with the wall
clock as it goes out. Each community's posts are bullish until its own turning point and
bearish after it; the turning points are spread over the burst, so hype, greed, swing and fear
alerts fall in many different minutes. For each alert it prints the time from intake receiving
the newest message stamped before the alert's minute to the alert reaching the sink (just after
its outbox row is committed): p50, p99 and the worst, by kind.

The demo has 13.7k distinct posts, fewer than a burst needs, so posts repeat across the burst
(each by a different author). The spam marker still runs on every post, but its campaign rule
(the same text from several authors) is switched off here: in this benchmark repeats stand for
distinct posts.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
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
AUTHORS = 50_000
HISTORY_S = 3 * 24 * 3600  # three days: the 24h window's volume baseline needs past days
HISTORY_EVERY_S = 180  # one history post every three minutes per community


class TimedSink:
    """Records when each alert reached it (monotonic clock)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, Reply]] = []

    async def send(self, reply: Reply) -> None:
        self.received.append((time.monotonic(), reply))


class History:
    """A day of real posts per community, stamped in the past, one a minute each."""

    name = "history"

    def __init__(self, texts: Sequence[str], end: datetime, seed: int = 5) -> None:
        self.texts = texts
        self.end = end
        self.rng = random.Random(seed)

    async def messages(self) -> AsyncIterator[Message]:
        steps = HISTORY_S // HISTORY_EVERY_S
        for step in range(steps):
            at = self.end - timedelta(seconds=HISTORY_S - step * HISTORY_EVERY_S)
            for c in range(COMMUNITIES):
                yield Message(
                    platform="bench",
                    community=f"group-{c}",
                    channel=f"group-{c}",
                    message_id=f"h{step}-{c}",
                    author=f"regular-{self.rng.randrange(2_000)}",
                    text=self.rng.choice(self.texts),
                    created_at=at,
                )


class Burst:
    """Real posts at a fixed rate, stamped with the wall clock as they go out. Community
    ``c`` posts bullish texts until ``turns[c]`` seconds into the burst, bearish after."""

    name = "burst"

    def __init__(
        self,
        bullish: Sequence[str],
        bearish: Sequence[str],
        rate: float,
        seconds: float,
        seed: int = 7,
    ) -> None:
        self.bullish = bullish
        self.bearish = bearish
        self.rate = rate
        self.count = int(rate * seconds)
        self.turns = [seconds * (c + 1) / (COMMUNITIES + 1) for c in range(COMMUNITIES)]
        self.rng = random.Random(seed)
        self.sent: list[tuple[datetime, float]] = []  # (created_at, monotonic when yielded)

    async def messages(self) -> AsyncIterator[Message]:
        start = time.monotonic()
        for i in range(self.count):
            due = start + i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = datetime.now(UTC).replace(microsecond=0)
            self.sent.append((now, time.monotonic()))
            c = i % COMMUNITIES
            pool = self.bullish if i / self.rate < self.turns[c] else self.bearish
            yield Message(
                platform="bench",
                community=f"group-{c}",
                channel=f"group-{c}",
                message_id=str(i),
                author=f"user-{(i * 7919) % AUTHORS}",
                text=self.rng.choice(pool),
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
    scorer = load_scorer(settings, dedupe=False)

    texts = demo_texts()
    sample = [normalize(t) for t in texts[:2048]]
    scorer.score(sample[:64])  # warm-up (the int8 model is built on first use)
    started = time.perf_counter()
    scorer.score(sample)
    rate = len(sample) / (time.perf_counter() - started)
    # The burst's two pools: the most bullish and the most bearish fifth of the demo posts.
    polarity = [s.p_pos - s.p_neg for s in scorer.score([normalize(t) for t in texts])]
    ranked = [t for _, t in sorted(zip(polarity, texts, strict=True), reverse=True)]
    fifth = len(ranked) // 5
    burst = Burst(ranked[:fifth], ranked[-fifth:], rate / 2, args.seconds)
    print(
        f"scoring rate {rate:.0f} msgs/s; history {HISTORY_S // HISTORY_EVERY_S * COMMUNITIES} "
        f"posts over 72 h; burst {burst.count} posts over {args.seconds:.0f} s "
        f"({burst.rate:.0f} msgs/s), {COMMUNITIES} communities, {AUTHORS} authors"
    )
    # Repeats stand for distinct posts here (see the module's docstring).
    spam = SpamConfig(coordinated_authors=1_000_000)

    def pipeline(store: Store, sink: TimedSink) -> Pipeline:
        config = PipelineConfig(sinks_targets=(("bench", ""),), tick_to_clock=False)
        return Pipeline(
            store=store,
            scorer=scorer,
            assets=AssetTable.load(),
            language=LanguageDetector(),
            spam=SpamMarker(spam),
            sinks={"bench": sink},
            queues=Queues.in_process(config.queue_size),
            config=config,
        )

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "latency.db")
        load_bundled(store)
        started = time.perf_counter()
        history_end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
        asyncio.run(pipeline(store, TimedSink()).run([History(texts, history_end)]))
        print(f"history replayed in {time.perf_counter() - started:.0f} s")
        sink = TimedSink()
        started = time.perf_counter()
        asyncio.run(pipeline(store, sink).run([burst], live=True))
        took = time.perf_counter() - started
        alerts = store.alerts_between(history_end, datetime.now(UTC) + timedelta(minutes=1))
        store.close()
    print(
        f"burst: {burst.count} posts sent in {args.seconds:.0f} s, all stored, scored and "
        f"evaluated {took - args.seconds:.1f} s after the last was sent"
    )

    source = burst
    stamps = [c for c, _ in source.sent]
    latencies: list[float] = []
    by_kind: dict[str, list[float]] = {}
    for arrived, reply in sink.received:
        alert = next((a for a in alerts if a.title in reply.text), None)
        # The trigger: the newest post stamped before the alert's minute (stamps have whole
        # seconds, so one stamped with the minute itself may come after its evaluation).
        i = bisect.bisect_left(stamps, alert.at) - 1 if alert is not None else -1
        if alert is not None and i >= 0:
            latencies.append(arrived - source.sent[i][1])
            by_kind.setdefault(alert.kind, []).append(latencies[-1])
    kinds = Counter(a.kind for a in alerts)
    print(
        f"{len(alerts)} alerts, {len(sink.received)} delivered: "
        + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
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
    for kind, values in sorted(by_kind.items()):
        print(
            f"  {kind}: {len(values)} alerts, p50 {statistics.median(values):.2f} s, "
            f"max {max(values):.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
