"""The X connector against tweepy's real HTTP calls, answered by recorded API v2 responses."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import tweepy

from connectors.base import Source
from connectors.errors import MalformedInput, SourceUnavailable
from connectors.types import Message
from connectors.x import (
    XSource,
    XState,
    build_client,
    gap_key,
    is_retweet,
    since_key,
    tweet_to_message,
)

URL = "https://api.twitter.com/2/tweets/search/recent"
TOKEN = "AAAAAAAAAAAAAAAAAAAAAsecret%2Fbearer%2Btoken0123456789"
FIXTURES = Path(__file__).parent / "fixtures" / "x"
QUERY = "$BTC -is:retweet"
POLL_S = 3600.0  # distinct from every retry wait, so the fake sleep can tell them apart
NOW = 1_714_744_800.0  # 2024-05-03T14:00:00Z


class MemoryState:
    """A dict-backed XState that records every write in order."""

    def __init__(self, values: dict[str, str] | None = None, cap: int | None = None) -> None:
        self.values = dict(values or {})
        self.writes: list[tuple[str, str]] = []
        self.reads = 0
        self.cap = cap

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value
        self.writes.append((key, value))

    def add_reads(self, n: int) -> None:
        self.reads += n

    def may_read(self) -> bool:
        return self.cap is None or self.reads < self.cap


class FakeTime:
    """An injected clock and sleep: records waits, never waits; stops after ``rounds`` polls."""

    def __init__(self, stopping: asyncio.Event, rounds: int = 1, now: float = NOW) -> None:
        self.stopping = stopping
        self.rounds = rounds
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        if seconds == POLL_S:
            self.rounds -= 1
            if self.rounds <= 0:
                self.stopping.set()
            return
        self.sleeps.append(seconds)


def make_source(
    state: XState, rounds: int = 1, queries: Sequence[str] = (QUERY,), **kwargs: Any
) -> tuple[XSource, FakeTime]:
    stopping = asyncio.Event()
    fake = FakeTime(stopping, rounds)
    kwargs.setdefault("max_failures", 3)
    source = XSource(
        build_client(TOKEN),
        queries,
        state,
        poll_s=POLL_S,
        stopping=stopping,
        sleep=fake.sleep,
        clock=fake.clock,
        rng=random.Random(7),
        **kwargs,
    )
    return source, fake


def tweet(
    post_id: int,
    text: str | None = None,
    *,
    author: str = "1001",
    created_at: str = "2024-05-03T13:00:00.000Z",
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(post_id),
        "author_id": author,
        "created_at": created_at,
        "lang": "en",
        "conversation_id": str(post_id),
        "edit_history_tweet_ids": [str(post_id)],
        "public_metrics": {
            "retweet_count": 1,
            "reply_count": 2,
            "like_count": 3,
            "quote_count": 4,
            "bookmark_count": 0,
            "impression_count": 50,
        },
        **fields,
    }
    if text is not None or "text" not in fields:
        body["text"] = text if text is not None else f"post {post_id} about $BTC"
    return body


USER = {
    "id": "1001",
    "name": "Trader",
    "username": "trader1001",
    "created_at": "2021-01-02T03:04:05.000Z",
    "verified": False,
    "public_metrics": {"followers_count": 1234, "following_count": 5, "tweet_count": 6},
}


def page(ids: Sequence[int], next_token: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A search page in the documented v2 shape, newest first."""
    if not ids:
        return {"meta": {"result_count": 0}}
    meta: dict[str, Any] = {
        "newest_id": str(max(ids)),
        "oldest_id": str(min(ids)),
        "result_count": len(ids),
    }
    if next_token:
        meta["next_token"] = next_token
    body = {
        "data": [tweet(i) for i in sorted(ids, reverse=True)],
        "includes": {"users": [USER]},
        "meta": meta,
    }
    body.update(overrides)
    return body


def sent(call: Any) -> dict[str, str]:
    """The query parameters of one recorded request."""
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


async def drain(source: XSource, ack: bool = True) -> list[Message]:
    """Iterate like the pipeline does, acking each message after 'storing' it."""
    out = []
    async for message in source.messages():
        out.append(message)
        if ack:
            source.ack([message])
    return out


def run(source: XSource, ack: bool = True) -> list[Message]:
    return asyncio.run(drain(source, ack))


# ---------------------------------------------------------------------- polling


def test_multi_page_poll_keeps_since_id_fixed_and_stores_newest_only_after_ack() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, _ = make_source(state)
    assert isinstance(source, Source)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([130, 129], "t1"))
        rsps.get(URL, json=page([120, 115], "t2"))
        rsps.get(URL, json=page([110]))
        got = run(source, ack=False)
        calls = [sent(c) for c in rsps.calls]
        assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"

    assert [c["since_id"] for c in calls] == ["100", "100", "100"]
    assert [c.get("next_token") for c in calls] == [None, "t1", "t2"]
    assert calls[0]["query"] == QUERY
    assert calls[0]["max_results"] == "100"
    assert calls[0]["expansions"] == "author_id"
    assert {"created_at", "public_metrics", "lang", "conversation_id"} <= set(
        calls[0]["tweet.fields"].split(",")
    )
    assert set(calls[0]["user.fields"].split(",")) >= {
        "created_at",
        "public_metrics",
        "verified",
        "username",
    }
    # Oldest first; nothing stored until the pipeline acks.
    assert [m.message_id for m in got] == ["110", "115", "120", "129", "130"]
    assert state.values[since_key(QUERY)] == "100"
    source.ack(got[:4])
    assert state.values[since_key(QUERY)] == "100"
    source.ack(got[4:])
    assert state.values[since_key(QUERY)] == "130"
    assert source.pending_polls == 0
    assert source.reads == state.reads == 5


def test_crash_before_ack_rereads_from_the_stored_since_id() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    first, _ = make_source(state)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([102, 101]))
        lost = run(first, ack=False)  # yielded, then the process dies before storing
    assert [m.message_id for m in lost] == ["101", "102"]
    assert state.values[since_key(QUERY)] == "100"

    second, _ = make_source(state)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([103, 102, 101]))
        again = run(second)
        assert sent(rsps.calls[0])["since_id"] == "100"
    assert [m.message_id for m in again] == ["101", "102", "103"]
    assert state.values[since_key(QUERY)] == "103"
    assert state.reads == 5  # both reads are billed


def test_next_poll_in_process_starts_after_the_unacked_newest_without_storing_it() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, _ = make_source(state, rounds=2)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([105]))
        rsps.get(URL, json=page([106]))
        got = run(source, ack=False)
        assert [sent(c)["since_id"] for c in rsps.calls] == ["100", "105"]
    assert [m.message_id for m in got] == ["105", "106"]
    assert state.values[since_key(QUERY)] == "100"
    # The later poll's cursor waits for the earlier one's acks: never stored out of order.
    source.ack([got[1]])
    assert state.values[since_key(QUERY)] == "100"
    source.ack([got[0]])
    assert state.values[since_key(QUERY)] == "106"


def test_early_stop_keeps_next_token_and_the_next_poll_finishes_the_gap_first() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, _ = make_source(state, max_pages=2)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([130, 129], "t1"))
        rsps.get(URL, json=page([120, 115], "t2"))
        got = run(source)
        assert len(rsps.calls) == 2
    assert [m.message_id for m in got] == ["115", "120", "129", "130"]
    assert state.values[since_key(QUERY)] == "100"
    gap = json.loads(state.values[gap_key(QUERY)])
    assert gap["next_token"] == "t2"
    assert gap["newest_id"] == "130"
    assert gap["since_id"] == "100"

    # A restart: the gap comes first, with the same since_id the token was issued for.
    resumed, _ = make_source(state, rounds=2, max_pages=2)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([110, 105]))
        rsps.get(URL, json=page([140]))
        rest = run(resumed)
        calls = [sent(c) for c in rsps.calls]
    assert calls[0]["since_id"] == "100" and calls[0]["next_token"] == "t2"
    assert calls[1]["since_id"] == "130" and "next_token" not in calls[1]
    assert [m.message_id for m in rest] == ["105", "110", "140"]
    assert state.values[since_key(QUERY)] == "140"
    assert state.values[gap_key(QUERY)] == ""


def test_a_spent_read_budget_stops_polling_and_keeps_the_gap() -> None:
    # The plan allows 3 posts: the first page (2 posts) is read, the second (2 more, over the
    # cap by one) too, then nothing more is fetched and the gap waits for the next month.
    state = MemoryState({since_key(QUERY): "100"}, cap=3)
    source, _ = make_source(state, rounds=2, max_pages=5)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([130, 129], "t1"))
        rsps.get(URL, json=page([120, 115], "t2"))
        got = run(source)
        assert len(rsps.calls) == 2  # the second poll fetched nothing
    assert source.capped and state.reads == 4
    assert [m.message_id for m in got] == ["115", "120", "129", "130"]
    assert json.loads(state.values[gap_key(QUERY)])["next_token"] == "t2"
    assert state.values[since_key(QUERY)] == "100"


STALE = {
    "errors": [
        {
            "parameters": {"since_id": ["100"]},
            "message": "Invalid 'since_id':'100'. 'since_id' must be a tweet id created after"
            " 2024-04-26T13:00Z. Please use a 'since_id' that is larger than 1783800000000000000",
        }
    ],
    "title": "Invalid Request",
    "detail": "One or more parameters to your request was invalid.",
    "type": "https://api.twitter.com/2/problems/invalid-request",
}


def test_a_since_id_beyond_seven_days_restarts_from_the_newest_posts() -> None:
    # Paused at the read cap for a month: recent search refuses the old since_id with a 400.
    state = MemoryState({since_key(QUERY): "100"})
    source, _ = make_source(state)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, status=400, json=STALE)
        rsps.get(URL, json=page([500, 499]))
        got = run(source)
        calls = [sent(c) for c in rsps.calls]
    assert calls[0]["since_id"] == "100" and "since_id" not in calls[1]
    assert [m.message_id for m in got] == ["499", "500"]
    assert state.values[since_key(QUERY)] == "500"


def test_one_failing_query_does_not_stop_the_others() -> None:
    state = MemoryState({since_key(QUERY): "100", since_key("$ETH"): "100"})
    source, _ = make_source(state, queries=(QUERY, "$ETH"))
    bad = {"title": "Invalid Request", "detail": "There were errors processing your request"}
    with responses.RequestsMock() as rsps:
        rsps.get(URL, status=400, json=bad)  # the first query is rejected...
        rsps.get(URL, json=page([130]))  # ...the second still reads
        got = run(source)
    assert [m.message_id for m in got] == ["130"]
    assert state.values[since_key("$ETH")] == "130" and state.values[since_key(QUERY)] == "100"
    # When every query fails, X itself is failing: the supervisor should back off.
    source, _ = make_source(MemoryState({since_key(QUERY): "100"}))
    with responses.RequestsMock() as rsps:
        rsps.get(URL, status=400, json=bad)
        with pytest.raises(SourceUnavailable, match="rejected the search"):
            run(source)


def test_reset_rereads_what_was_handed_over_but_never_stored() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, _ = make_source(state, rounds=1)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([130, 129]))
        assert len(run(source, ack=False)) == 2  # the pipeline failed before storing them
    source.reset()  # what the supervisor does before restarting intake
    source.stopping.clear()
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([130, 129]))
        again = run(source)
        assert sent(rsps.calls[0])["since_id"] == "100"
    assert [m.message_id for m in again] == ["129", "130"]
    assert state.values[since_key(QUERY)] == "130" and source.pending_polls == 0


def test_rejected_stored_token_resumes_the_gap_by_until_id() -> None:
    gap = '{"since_id": "100", "next_token": "old", "newest_id": "130", "oldest_id": "115"}'
    state = MemoryState({since_key(QUERY): "100", gap_key(QUERY): gap})
    source, _ = make_source(state)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, status=400, json={"errors": [{"message": "Invalid next_token"}]})
        rsps.get(URL, json=page([110]))
        got = run(source)
        calls = [sent(c) for c in rsps.calls]
    assert calls[0]["next_token"] == "old"
    assert (calls[1]["since_id"], calls[1]["until_id"]) == ("100", "115")
    assert "next_token" not in calls[1]
    assert [m.message_id for m in got] == ["110"]
    assert state.values[since_key(QUERY)] == "130"
    assert state.values[gap_key(QUERY)] == ""


def test_a_finished_gap_left_behind_by_a_crash_between_writes_is_ignored() -> None:
    # since_id was advanced to the gap's newest, then the process died before clearing it.
    gap = '{"since_id": "100", "next_token": "t2", "newest_id": "130", "oldest_id": "115"}'
    state = MemoryState({since_key(QUERY): "130", gap_key(QUERY): gap})
    source, _ = make_source(state)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([131]))
        run(source)
        assert sent(rsps.calls[0])["since_id"] == "130"
        assert "next_token" not in sent(rsps.calls[0])
    assert state.values[since_key(QUERY)] == "131"


def test_first_run_reads_only_the_newest_page_and_does_not_backfill() -> None:
    state = MemoryState()
    source, _ = make_source(state, rounds=2)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([500, 499], "older"))
        rsps.get(URL, json=page([501]))
        got = run(source)
        calls = [sent(c) for c in rsps.calls]
    assert "since_id" not in calls[0]
    assert calls[1]["since_id"] == "500" and "next_token" not in calls[1]
    assert [m.message_id for m in got] == ["499", "500", "501"]
    assert state.values[since_key(QUERY)] == "501"
    assert not state.values.get(gap_key(QUERY))


def test_empty_poll_keeps_the_since_id() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, _ = make_source(state)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([]))
        assert run(source) == []
    assert state.values[since_key(QUERY)] == "100"
    assert state.reads == 0


def test_a_post_found_by_two_queries_is_one_key_and_both_cursors_advance() -> None:
    state = MemoryState({since_key("a"): "100", since_key("b"): "100"})
    source, _ = make_source(state, queries=("a", "b"))
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([101, 102]))
        rsps.get(URL, json=page([102]))
        got = run(source)
        assert [sent(c)["query"] for c in rsps.calls] == ["a", "b"]
    keys = {(m.platform, m.channel, m.message_id) for m in got}
    assert keys == {("x", "search", "101"), ("x", "search", "102")}
    assert len(got) == 3
    assert state.values[since_key("a")] == "102"
    assert state.values[since_key("b")] == "102"


# ---------------------------------------------------------------------- errors


def test_429_waits_until_the_reset_then_retries_the_same_page() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, fake = make_source(state)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([130], "t1"))
        rsps.get(
            URL,
            status=429,
            json={"title": "Too Many Requests", "detail": "Too Many Requests", "status": 429},
            headers={"x-rate-limit-reset": str(int(NOW) + 30), "x-rate-limit-remaining": "0"},
        )
        rsps.get(URL, json=page([120]))
        got = run(source)
        calls = [sent(c) for c in rsps.calls]
    assert fake.sleeps == [31.0]
    assert calls[1] == calls[2]  # the same page again, same since_id and next_token
    assert calls[2]["next_token"] == "t1"
    assert [m.message_id for m in got] == ["120", "130"]
    assert source.errors == 1
    assert "TooManyRequests" in (source.last_error or "")


def test_429_wait_is_capped() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, fake = make_source(state, max_rate_wait_s=900.0)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, status=429, headers={"x-rate-limit-reset": str(int(NOW) + 86_400)})
        rsps.get(URL, json=page([101]))
        run(source)
    assert fake.sleeps == [900.0]


def test_server_and_network_errors_back_off_then_succeed_on_the_same_page() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, fake = make_source(state)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, status=503, json={"title": "Service Unavailable"})
        rsps.get(URL, body=requests.ConnectionError("connection reset"))
        rsps.get(URL, json=page([101]))
        got = run(source)
        calls = [sent(c) for c in rsps.calls]
    assert calls[0] == calls[1] == calls[2]
    assert [m.message_id for m in got] == ["101"]
    assert len(fake.sleeps) == 2
    assert 0.5 <= fake.sleeps[0] <= 1.0 and 1.0 <= fake.sleeps[1] <= 2.0  # 2**n, equal jitter
    assert source.errors == 2


def test_repeated_5xx_raise_source_unavailable() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, fake = make_source(state, max_failures=3)
    with responses.RequestsMock() as rsps:
        rsps.get(URL, status=503, json={"title": "Service Unavailable"})
        with pytest.raises(SourceUnavailable, match="3 times"):
            run(source)
        assert len(rsps.calls) == 3
    assert len(fake.sleeps) == 2
    assert source.errors == 3
    assert "503" in (source.last_error or "")
    assert state.values[since_key(QUERY)] == "100"


def test_failure_after_some_pages_yields_them_and_keeps_the_gap() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, _ = make_source(state, max_failures=2)
    got: list[Message] = []

    async def pipeline() -> None:
        # Like the pipeline: on a connector error the batch read so far is still stored.
        try:
            async for message in source.messages():
                got.append(message)
        finally:
            source.ack(got)

    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=page([130, 129], "t1"))
        rsps.get(URL, status=500, json={"title": "Internal Error"})
        with pytest.raises(SourceUnavailable):
            asyncio.run(pipeline())
    assert [m.message_id for m in got] == ["129", "130"]
    gap = json.loads(state.values[gap_key(QUERY)])
    assert (gap["since_id"], gap["next_token"], gap["newest_id"]) == ("100", "t1", "130")


def test_401_raises_source_unavailable_without_the_token() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, _ = make_source(state)
    with responses.RequestsMock() as rsps:
        rsps.get(
            URL,
            status=401,
            json={"title": "Unauthorized", "type": "about:blank", "status": 401,
                  "detail": "Unauthorized"},
        )  # fmt: skip
        with pytest.raises(SourceUnavailable) as info:
            run(source)
        assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "token was rejected" in str(info.value)
    assert TOKEN not in str(info.value)
    assert TOKEN not in (source.last_error or "")
    assert "secret" not in str(info.value).lower()


def test_403_names_the_plan() -> None:
    state = MemoryState()
    source, _ = make_source(state)
    with responses.RequestsMock() as rsps:
        rsps.get(
            URL,
            status=403,
            json={"title": "Client Forbidden", "reason": "client-not-enrolled",
                  "detail": "When authenticating requests to the Twitter API v2 endpoints, "
                  "you must use keys and tokens from a Twitter developer App."},
        )  # fmt: skip
        with pytest.raises(SourceUnavailable, match="plan"):
            run(source)


def test_stopping_during_a_rate_limit_wait_ends_quietly() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    stopping = asyncio.Event()

    async def sleep(seconds: float) -> None:
        stopping.set()  # stop arrives while waiting for the reset
        await asyncio.sleep(3600)

    source = XSource(
        build_client(TOKEN), [QUERY], state, stopping=stopping, sleep=sleep, clock=lambda: NOW
    )
    with responses.RequestsMock() as rsps:
        rsps.get(URL, status=429, headers={"x-rate-limit-reset": str(int(NOW) + 60)})
        assert run(source) == []
    assert state.values[since_key(QUERY)] == "100"


# ---------------------------------------------------------------------- translation


def test_reads_are_counted_and_malformed_posts_skipped() -> None:
    state = MemoryState({since_key(QUERY): "100"})
    source, _ = make_source(state)
    body = page([103, 102, 101])
    body["data"][0].pop("text")  # 103: no text
    body["data"][1]["created_at"] = "yesterday"  # 102: bad date
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=body)
        got = run(source)
    assert [m.message_id for m in got] == ["101"]
    assert source.skipped == 2
    assert source.reads == state.reads == 3
    assert state.values[since_key(QUERY)] == "103"  # the skipped ones are not re-read


def test_author_metadata_retweets_and_long_posts_from_a_recorded_page() -> None:
    state = MemoryState({since_key(QUERY): "1786391000000000000"})
    source, _ = make_source(state)
    body = json.loads((FIXTURES / "search_recent_authors.json").read_text())
    with responses.RequestsMock() as rsps:
        rsps.get(URL, json=body)
        got = run(source)
    assert source.retweets == 1 and source.skipped == 0 and source.reads == 3
    assert [m.message_id for m in got] == ["1786391400000000001", "1786391523456789012"]
    short, long = got
    assert long == Message(
        platform="x",
        community="x",
        channel="search",
        message_id="1786391523456789012",
        author="rangetrader",
        text=body["data"][1]["note_tweet"]["text"],
        created_at=datetime(2024, 5, 3, 14, 1, 40, tzinfo=UTC),
        likes=240,
        replies=7,
        reposts=15,
        language="en",
        public=True,
        author_followers=48210,
        author_created_at=datetime(2020, 10, 20, 5, 12, 1, tzinfo=UTC),
        author_verified=True,
    )
    # No user expansion for this author: the id stands in, metadata unknown.
    assert short.author == "99887766"
    assert (short.author_followers, short.author_created_at, short.author_verified) == (
        None,
        None,
        None,
    )
    assert short.language is None  # "qct": cashtags only, no language
    assert state.values[since_key(QUERY)] == "1786391640375439873"
    assert source.last_message_at == datetime.fromtimestamp(NOW, UTC)


def test_tweet_to_message_accepts_tweepy_models() -> None:
    data = tweet(42, "gm $ETH", lang="und")
    message = tweet_to_message(tweepy.Tweet(data), {"1001": tweepy.User(USER)})
    assert message.message_id == "42"
    assert message.author == "trader1001"
    assert message.author_followers == 1234
    assert message.author_verified is False
    assert message.created_at == datetime(2024, 5, 3, 13, 0, tzinfo=UTC)
    assert (message.likes, message.replies, message.reposts) == (3, 2, 5)
    assert message.language is None


@pytest.mark.parametrize(
    "change",
    [
        {"text": "   "},
        {"created_at": "2024-05-03 13:00"},
        {"created_at": None},
        {"id": "abc"},
        {"created_at": "1970-01-01T00:00:00.000Z"},  # before Bitcoin: a broken clock
        {"created_at": "9999-01-01T00:00:00.000Z"},  # far past the allowed clock skew
    ],
)
def test_tweet_to_message_rejects_malformed_posts(change: dict[str, Any]) -> None:
    data = {**tweet(42), **change}
    with pytest.raises(MalformedInput):
        tweet_to_message(data, {})


def test_retweets_are_recognised_by_reference_or_prefix() -> None:
    assert is_retweet(tweet(1, referenced_tweets=[{"type": "retweeted", "id": "9"}]))
    assert not is_retweet(
        tweet(1, "RT @x: quoted", referenced_tweets=[{"type": "quoted", "id": "9"}])
    )
    assert is_retweet(tweet(1, "RT @someone: hi"))
    assert not is_retweet(tweet(1, "ART @ the gallery"))


def test_constructor_rejects_bad_settings() -> None:
    state = MemoryState()
    with pytest.raises(ValueError, match="build_client"):
        XSource(tweepy.Client(TOKEN), [QUERY], state)
    with pytest.raises(ValueError, match="query"):
        XSource(build_client(TOKEN), ["  "], state)
    with pytest.raises(ValueError, match="max_results"):
        XSource(build_client(TOKEN), [QUERY], state, max_results=500)


def test_metrics_beyond_the_count_bound_read_as_zero() -> None:
    data = tweet(42)
    data["public_metrics"] = {**data["public_metrics"], "like_count": 10**30}
    message = tweet_to_message(data, {})
    assert message.likes == 0  # an absurd metric is no metric; 10**30 would overflow SQLite
    assert message.replies == 2
