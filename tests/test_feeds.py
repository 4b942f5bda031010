"""X through the whole bot: tweepy's real client (recorded responses) → pipeline → store,
with checkpoints and the read meter in the database, and the spend in ``moodring status``."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import responses

from bot.app.cli import RedactTokens
from bot.pipeline.feeds import StoreXState
from bot.pipeline.status import save_x_plan, status_report
from bot.store import Store
from connectors.x import XSource, build_client, since_key
from nlp.scorer import Scorer
from tests.test_pipeline_e2e import make_pipeline
from tests.test_x import QUERY, URL, page

TOKEN = "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI%3DEUifiRBkKG5E2XzMDj"
NOW = datetime(2024, 5, 3, 14, 0, tzinfo=UTC)


def _run(store: Store, model: Path, cap: int, pages: list[dict]) -> XSource:
    async def scenario() -> XSource:
        pipeline = make_pipeline(store, Scorer(model, cache_size=0), {})
        state = StoreXState(store, cap, clock=lambda: NOW)
        polls = 0
        done = asyncio.Event()  # the source ends after two polls; the pipeline then drains

        async def sleep(seconds: float) -> None:
            nonlocal polls
            polls += 1
            if polls >= 2:
                done.set()

        source = XSource(
            build_client(TOKEN),
            [QUERY],
            state,
            poll_s=60.0,
            max_pages=5,
            stopping=done,
            sleep=sleep,
        )
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            for body in pages:
                rsps.get(URL, json=body)
            await pipeline.run([source], live=True)
        return source

    return asyncio.run(scenario())


def test_x_posts_are_stored_once_with_their_authors_and_reads_are_metered(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    store = Store(tmp_path / "x.db")
    try:
        store.set_checkpoint(since_key(QUERY), "100", NOW)
        pages = [page([130, 129], "t1"), page([120]), page([])]  # the second poll: nothing new
        source = _run(store, tiny_model_dir, 1000, pages)
        rows = store.query(
            "SELECT message_id, author, likes, reposts, author_followers, author_created_at,"
            " status FROM messages ORDER BY message_id"
        )
        assert [r[0] for r in rows] == ["120", "129", "130"]
        assert rows[0][1:6] == ("trader1001", 3, 5, 1234, "2021-01-02T03:04:05+00:00")
        assert {r[6] for r in rows} == {"scored"}
        # The checkpoint moved only because the pipeline stored (acked) every post.
        assert store.checkpoint(since_key(QUERY)) == "130"
        assert store.usage("x", "2024-05") == 3 == source.reads

        save_x_plan(store, 1000, 0.005, NOW)
        report = status_report(store, NOW)
        assert "X reads in 2024-05: 3 of 1,000" in report and "$0.01" in report
        assert "x: " in report  # its health row, saved by the live pipeline
    finally:
        store.close()


def test_the_monthly_cap_stops_reading(tmp_path: Path, tiny_model_dir: Path) -> None:
    store = Store(tmp_path / "x.db")
    try:
        store.add_usage("x", "2024-05", 1000)  # the month's plan is spent already
        store.set_checkpoint(since_key(QUERY), "100", NOW)
        source = _run(store, tiny_model_dir, 1000, [page([130])])
        assert source.capped and source.reads == 0
        assert store.query("SELECT COUNT(*) FROM messages") == [(0,)]
        assert store.checkpoint(since_key(QUERY)) == "100"
    finally:
        store.close()


def test_bearer_tokens_never_reach_the_log() -> None:
    record = logging.LogRecord(
        "tweepy.client", logging.DEBUG, __file__, 1, "headers: %s",
        ({"Authorization": f"Bearer {TOKEN}"},), None,
    )  # fmt: skip
    RedactTokens().filter(record)
    assert TOKEN not in record.getMessage() and "Bearer <token>" in record.getMessage()
