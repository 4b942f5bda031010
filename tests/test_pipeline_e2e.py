"""End to end: replay → normalise → score (tiny real model) → store → index → alert → sink.

Also the restart guarantees: a second run over the same stream stores, scores and sends
nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.mood.spam import SpamConfig, SpamMarker
from bot.pipeline.config import PipelineConfig
from bot.pipeline.observer import Counters
from bot.pipeline.runner import Pipeline, Queues
from bot.store import Store, parse_ts
from connectors.replay import ReplaySource
from connectors.types import Message
from nlp.assets import AssetTable
from nlp.language import LanguageDetector
from nlp.scorer import Scorer
from tests.conftest import synthetic_text
from tests.doubles import ListSource, RecordingSink

START = datetime(2022, 6, 1, tzinfo=UTC)


def write_stream(path: Path) -> int:
    """Two calm days (mixed mood), then a day of panic from many authors."""
    rng = random.Random(3)
    rows = []
    t = START
    n = 0
    while t < START + timedelta(days=3):
        panic = t >= START + timedelta(days=2)
        per_hour = 24 if panic else 10
        for k in range(per_hour):
            mood = "negative" if panic else rng.choice(["positive", "negative", "neutral"])
            n += 1
            rows.append(
                {
                    "id": str(n),
                    "created_at": (t + timedelta(seconds=k * 3600 // per_hour)).isoformat(),
                    "author": f"user{rng.randrange(60)}",
                    "text": synthetic_text(rng, mood),
                    "likes": rng.randrange(5),
                }
            )
        t += timedelta(hours=1)
    rows.append({"id": "bad", "created_at": "not a time", "text": "x"})  # malformed: skipped
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return n


def make_pipeline(store: Store, scorer: Scorer, sinks: dict, **config) -> Pipeline:
    """The real pipeline with the real helpers; only the scorer's model is tiny."""
    return Pipeline(
        store=store,
        scorer=scorer,
        assets=AssetTable.load(),
        language=LanguageDetector(),
        spam=SpamMarker(SpamConfig()),
        sinks=sinks,
        queues=Queues.in_process(PipelineConfig(**config).queue_size),
        config=PipelineConfig(**config),
    )


def run_once(db: Path, stream: Path, model: Path, sink: RecordingSink) -> Counters:
    store = Store(db)
    try:
        pipeline = make_pipeline(
            store,
            Scorer(model, cache_size=0),
            {"chat": sink},
            sinks_targets=(("chat", "group-1"),),
        )
        source = ReplaySource(stream, platform="replay", community="test")
        return asyncio.run(pipeline.run([source]))
    finally:
        store.close()


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("stream") / "posts.jsonl"
    return path, write_stream(path)


def test_replay_to_alert_and_resume(
    tmp_path: Path, stream: tuple[Path, int], tiny_model_dir: Path
) -> None:
    path, n = stream
    db = tmp_path / "moodring.db"
    sink = RecordingSink()
    stats = run_once(db, path, tiny_model_dir, sink)

    assert stats.added == n and stats.scored == n and stats.failed == 0
    store = Store(db)
    [[stored]] = store.query("SELECT COUNT(*) FROM messages")
    [[scored]] = store.query("SELECT COUNT(*) FROM scores")
    assert stored == scored == n
    # The calm days read near neutral; the panic day drives the all-sources index into
    # Extreme Fear, and the alert explains itself with quotes of the panicking posts.
    calm = store.query(
        "SELECT value FROM readings WHERE scope = '*|*|*' AND window = '24h' AND at = ?",
        [(START + timedelta(days=2)).isoformat()],
    )
    assert calm and 30 < calm[0][0] < 70
    alerts = store.alerts_between(START, START + timedelta(days=4))
    fear = [a for a in alerts if a.kind == "extreme" and a.scope.key() == "*|*|*"]
    assert fear and "Extreme Fear" in fear[0].title
    assert fear[0].evidence and all(len(q) <= 140 for q in fear[0].evidence)
    assert fear[0].at > START + timedelta(days=2)
    # Every alert reached the sink exactly once, with its explanation.
    assert len(sink.sent) == len(alerts)
    assert sum("Extreme Fear" in r.text for r in sink.sent) >= 1
    assert all(r.target == "group-1" for r in sink.sent)
    [[unsent]] = store.query("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
    assert unsent == 0
    readings_before = store.query("SELECT COUNT(*) FROM readings")
    store.close()

    # A restart over the same stream: nothing stored, scored, raised or sent twice.
    again = RecordingSink()
    stats2 = run_once(db, path, tiny_model_dir, again)
    assert stats2.added == 0 and stats2.scored == 0 and stats2.alerts == 0
    assert again.sent == []
    store = Store(db)
    assert store.query("SELECT COUNT(*) FROM readings") == readings_before
    assert store.query("SELECT COUNT(*) FROM messages")[0][0] == n
    store.close()


def test_poison_message_is_set_aside_and_the_rest_flow(
    tmp_path: Path, stream: tuple[Path, int], tiny_model_dir: Path
) -> None:
    """A text the scorer cannot process is marked failed with its error; others are scored."""
    path, _ = stream

    class Fussy(Scorer):
        def score(self, texts):  # type: ignore[override]
            if any("poison" in t for t in texts):
                raise RuntimeError("cannot score this text")
            return super().score(texts)

    lines = path.read_text().splitlines()
    poisoned = tmp_path / "poisoned.jsonl"
    bad = json.loads(lines[5])
    bad["text"] = "poison pill"
    lines[5] = json.dumps(bad)
    poisoned.write_text("\n".join(lines[:200]) + "\n")
    store = Store(tmp_path / "p.db")
    pipeline = make_pipeline(store, Fussy(tiny_model_dir, cache_size=0), {})
    stats = asyncio.run(pipeline.run([ReplaySource(poisoned, platform="replay")]))
    assert stats.failed == 1 and stats.scored == 199
    [(status, error)] = store.query("SELECT status, error FROM messages WHERE text = 'poison pill'")
    assert status == "failed" and "cannot score" in error
    store.close()


def test_an_edit_updates_the_stored_text_and_is_scored_again(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    at = START.isoformat()
    first = tmp_path / "first.jsonl"
    first.write_text(
        json.dumps({"id": "1", "created_at": at, "author": "a", "text": "$BTC crash dump rekt"})
        + "\n"
    )
    edited = tmp_path / "edited.jsonl"
    edited.write_text(
        json.dumps({"id": "1", "created_at": at, "author": "a", "text": "$ETH moon pump gains"})
        + "\n"
    )
    store = Store(tmp_path / "e.db")
    scorer = Scorer(tiny_model_dir, cache_size=0)
    asyncio.run(
        make_pipeline(store, scorer, {}).run(
            [ReplaySource(first, platform="replay", community="c")]
        )
    )
    [(p_before,)] = store.query("SELECT p_pos - p_neg FROM scores")
    stats = asyncio.run(
        make_pipeline(store, scorer, {}).run(
            [ReplaySource(edited, platform="replay", community="c")]
        )
    )
    assert stats.edited == 1 and stats.added == 0 and stats.scored == 1
    assert store.query("SELECT text, status FROM messages") == [("$ETH moon pump gains", "scored")]
    assert store.query("SELECT asset FROM message_assets") == [("ETH",)]
    [(p_after,)] = store.query("SELECT p_pos - p_neg FROM scores")
    assert p_after > p_before
    # The same edit replayed again changes nothing.
    again = asyncio.run(
        make_pipeline(store, scorer, {}).run(
            [ReplaySource(edited, platform="replay", community="c")]
        )
    )
    assert again.edited == 0 and again.scored == 0
    store.close()


def test_a_quiet_live_chat_still_ticks_on_the_clock(tmp_path: Path, tiny_model_dir: Path) -> None:
    """No message crosses the hour, yet the live index keeps ticking up to now."""
    now = datetime.now(UTC)
    posts = tmp_path / "recent.jsonl"
    posts.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": str(i),
                    "created_at": (
                        now - timedelta(hours=5) + timedelta(minutes=10 * i)
                    ).isoformat(),
                    "author": f"a{i}",
                    "text": f"$BTC chart watching {i}",
                }
            )
            for i in range(20)
        )
        + "\n"
    )
    store = Store(tmp_path / "live.db")
    scorer = Scorer(tiny_model_dir, cache_size=0)
    asyncio.run(make_pipeline(store, scorer, {}).run([ReplaySource(posts, platform="replay")]))
    before = store.checkpoint("index_tick")
    assert before is not None and parse_ts(before) < now - timedelta(hours=1, minutes=30)
    pipeline = make_pipeline(store, scorer, {}, tick_to_clock=True, delivery_s=0.05)
    silent = ListSource([], name="silent", until=pipeline.stopping)  # live, but nobody posts

    async def main() -> None:
        run = asyncio.create_task(pipeline.run([silent], live=True))
        await asyncio.sleep(1.0)
        pipeline.stop()
        await run

    assert pipeline.watermark.lateness_s is None
    asyncio.run(main())
    after = parse_ts(store.checkpoint("index_tick") or "")
    assert after > now - timedelta(hours=1)
    # A live run holds message time no further back than the wall clock less the lateness.
    assert pipeline.watermark.lateness_s == pipeline.config.lateness_s
    store.close()


def test_a_burst_ending_on_a_timed_flush_is_still_scored(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A slow live stream's last message can close a batch because the batch is ``flush_s``
    old; that batch is stored with only full chunks cut. The quiet that follows must cut the
    partial chunk (it once waited for the next message: a CI run caught it on Discord)."""
    store = Store(tmp_path / "burst.db")
    pipeline = make_pipeline(store, Scorer(tiny_model_dir, cache_size=0), {}, flush_s=0.1)
    now = datetime.now(UTC).replace(microsecond=0)
    posts = [
        Message("chat", "c", "g", str(i), f"u{i}", f"$BTC post {i}", now, public=False)
        for i in range(3)
    ]
    # The third message comes 0.12 s after the first: it closes the batch by age.
    source = ListSource(posts, name="slow", until=pipeline.stopping, gap_s=0.06)

    async def main() -> None:
        run = asyncio.create_task(pipeline.run([source], live=True))
        deadline = time.monotonic() + 30  # a bound on waiting, not a timing assertion
        while store.query("SELECT COUNT(*) FROM scores") != [(3,)]:
            assert time.monotonic() < deadline, store.query("SELECT COUNT(*) FROM scores")
            await asyncio.sleep(0.05)
        pipeline.stop()
        await run

    asyncio.run(main())
    store.close()


def test_replays_score_identically_whatever_the_timing(
    tmp_path: Path, stream: tuple[Path, int], tiny_model_dir: Path
) -> None:
    """Chunks are cut by position in the stream, not by how far scoring lags intake, so the
    int8 scores (which depend slightly on batch-mates) and the alerts repeat exactly."""
    path, _ = stream
    results = []
    for name, batch_size in (("a", 64), ("b", 300)):
        store = Store(tmp_path / f"{name}.db")
        pipeline = make_pipeline(
            store, Scorer(tiny_model_dir, cache_size=0), {}, batch_size=batch_size, score_chunk=128
        )
        asyncio.run(pipeline.run([ReplaySource(path, platform="replay", community="t")]))
        results.append(
            (
                store.query("SELECT message_id, p_neg, p_pos FROM scores ORDER BY message_id"),
                store.query("SELECT key FROM alerts ORDER BY key"),
            )
        )
        store.close()
    assert results[0] == results[1]


def test_moderators_choose_which_channels_are_read(tmp_path: Path, tiny_model_dir: Path) -> None:
    from bot.prefs.community import CommunitySettings, apply_setting

    rows = [
        {
            "id": str(i),
            "created_at": START.isoformat(),
            "author": f"a{i}",
            "text": f"$BTC up {i}",
            "community": community,
            "channel": channel,
        }
        for i, (community, channel) in enumerate(
            [("quiet", "c1"), ("quiet", "c2"), ("picky", "c1"), ("picky", "c2"), ("open", "c1")]
        )
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    store = Store(tmp_path / "listen.db")
    off = apply_setting(CommunitySettings(), ("listen", "off"))
    picky = apply_setting(CommunitySettings(), ("channels", "c2"))
    store.set_community_settings("replay", "quiet", off, START)
    store.set_community_settings("replay", "picky", picky, START)
    pipeline = make_pipeline(store, Scorer(tiny_model_dir, cache_size=0), {})
    asyncio.run(pipeline.run([ReplaySource(path, platform="replay")]))
    assert store.query("SELECT community, channel FROM messages ORDER BY community") == [
        ("open", "c1"),
        ("picky", "c2"),
    ]
    store.close()


def test_a_late_message_joins_the_index_at_the_next_tick(tmp_path: Path) -> None:
    """An X post created at 11:57 but stored after the 12:00 tick (polls come every few
    minutes) still counts in later readings, though a chat message newer than it was already
    in memory."""
    from bot.pipeline.ticks import IndexEngine
    from bot.store import StoredMessage
    from connectors.types import Message
    from nlp.types import Score

    def stored(platform: str, mid: str, at: datetime) -> StoredMessage:
        msg = Message(platform, "c", "ch", mid, "a", "$BTC up", at)
        return StoredMessage(msg, "$BTC up", ("BTC",), None, None)

    noon = datetime(2024, 5, 3, 12, tzinfo=UTC)
    score = Score(0.1, 0.2, 0.7, "positive", "test")
    store = Store(tmp_path / "late.db")
    try:
        engine = IndexEngine(store, PipelineConfig())
        store.add_messages([stored("telegram", "1", noon - timedelta(seconds=10))], noon)
        store.save_scores([(("telegram", "ch", "1"), score)], datetime.now(UTC))
        engine.load(noon)
        store.add_messages([stored("x", "2", noon - timedelta(minutes=3))], noon)
        # Its stamp predates the last load (a write that waited on the lock): still found.
        store.save_scores([(("x", "ch", "2"), score)], datetime.now(UTC) - timedelta(hours=1))
        engine.load(noon + timedelta(hours=1))
        assert {p.message_key for p in engine._points} == {"telegram:ch:1", "x:ch:2"}
        assert [p.created_at for p in engine._points] == sorted(
            p.created_at for p in engine._points
        )
    finally:
        store.close()
