"""Small chat trust fixes (#13 finding 17), through the real PTB client and the fake Bot API:
groups are named by their title, a DM subscription warns a user who never started the bot,
and a command's reply that fails transiently is sent again (bounded) before its inbox row is
done."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.chat.digest import send_due_digests
from bot.chat.inbox import ChatSource, RateLimiter
from bot.prefs.subscriptions import Subscription
from bot.store import Store
from bot.types import Alert, Scope
from connectors.telegram import TelegramPoller, TelegramSink, build_bot, roles_for
from connectors.types import Command
from nlp.types import Score
from tests.doubles import RecordingSink
from tests.fake_telegram import (
    BLOCKED,
    KICKED,
    SERVER_ERROR,
    TOKEN,
    Failure,
    FakeTelegram,
)
from tests.test_chat_telegram import ADMIN, GROUP
from tests.test_pipeline_e2e import make_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
MEMBER = 1005
TITLE = "Crypto Talk"
NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram()
    server.admins[GROUP] = [ADMIN]
    server.start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "small.db")
    yield db
    db.close()


def group_update(update_id: int, text: str, user_id: int, title: str = TITLE) -> dict:
    chat = {"id": GROUP, "title": title, "type": "supergroup"}
    return _update(update_id, text, user_id, chat)


def private_update(update_id: int, text: str, user_id: int) -> dict:
    return _update(update_id, text, user_id, {"id": user_id, "first_name": "M", "type": "private"})


def _update(update_id: int, text: str, user_id: int, chat: dict) -> dict:
    post: dict[str, Any] = {
        "message_id": update_id,
        "from": {"id": user_id, "is_bot": False, "first_name": f"u{user_id}"},
        "chat": chat,
        "date": int(datetime.now(UTC).timestamp()),
        "text": text,
    }
    if text.startswith("/"):
        post["entities"] = [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]
    return {"update_id": update_id, "message": post}


def inbox(store: Store) -> list[tuple[int, bool]]:
    """Each stored update and whether it is done."""
    rows = store.query("SELECT update_id, done_at IS NOT NULL FROM chat_inbox ORDER BY update_id")
    return [(int(u), bool(d)) for u, d in rows]


def serve(
    store: Store,
    fake: FakeTelegram,
    updates: int,
    *,
    until: Callable[[], bool] | None = None,
    watch: Callable[[], None] | None = None,
    timeout: float = 20.0,
    **source: Any,
) -> None:
    """Poll the fake and run the Telegram ChatSource until ``updates`` inbox rows are all done
    (or ``until()``), acknowledging messages as the pipeline would once stored; ``watch()``
    runs on every turn of the wait."""

    def finished() -> bool:
        if until is not None:
            return until()
        rows = inbox(store)
        return len(rows) == updates and all(done for _, done in rows)

    async def main() -> None:
        tg = build_bot(TOKEN, fake.base_url)
        await tg.initialize()
        stopping = asyncio.Event()
        poller = TelegramPoller(tg, store, timeout=0)
        chat = ChatSource(
            "telegram",
            poller,
            TelegramSink(tg),
            store,
            lambda cmd: roles_for(tg, cmd),
            stopping,
            limiter=RateLimiter(per_user=50, per_chat=50),
            idle_s=0.02,
            **source,
        )

        async def consume() -> None:
            async for message in chat.messages():
                chat.ack([message])

        tasks = [asyncio.create_task(poller.run(stopping)), asyncio.create_task(consume())]
        deadline = time.monotonic() + timeout
        while not finished() and time.monotonic() < deadline:
            if watch is not None:
                watch()
            await asyncio.sleep(0.01)
        stopping.set()
        await asyncio.gather(*tasks)
        await tg.shutdown()

    asyncio.run(main())


async def deliver(store: Store, fake: FakeTelegram) -> int:
    """One delivery round of the real pipeline through the real Telegram sink."""
    tg = build_bot(TOKEN, fake.base_url)
    await tg.initialize()
    pipeline = make_pipeline(store, NoScorer(), {"telegram": TelegramSink(tg)})
    try:
        return await pipeline.deliver(NOW)
    finally:
        await tg.shutdown()


def sent_texts(fake: FakeTelegram) -> list[str]:
    return [c.params["text"] for c in fake.requests("sendMessage")]


# ---------------------------------------------------------------------- titles, not ids


def test_replies_name_a_group_by_its_title_not_its_id(store: Store, fake: FakeTelegram) -> None:
    fake.queue_update(group_update(1, "gm, BTC looks fine", MEMBER, title="Crypto Chat"))
    fake.queue_update(group_update(2, "/mood", MEMBER))  # the group was renamed since
    serve(store, fake, 2)
    [reply] = sent_texts(fake)
    assert f"here — all assets in {TITLE}:" in reply
    assert str(GROUP) not in reply  # "-1001234567890" means nothing to members
    assert store.community_title("telegram", str(GROUP)) == TITLE  # the latest one is kept


def test_a_group_alert_and_digest_name_the_group_by_its_title(
    store: Store, fake: FakeTelegram
) -> None:
    fake.queue_update(group_update(1, "gm", MEMBER))
    serve(store, fake, 1)  # the group's title arrives with its messages
    store.subscribe(Subscription("telegram", str(GROUP), str(GROUP), str(ADMIN)), NOW)
    # As the mood rules word an alert about one community: by its id (they know no names).
    alert = Alert(
        f"extreme-fear:*|{GROUP}|telegram:24h:1",
        "extreme-fear",
        Scope(community=str(GROUP), platform="telegram"),
        NOW,
        f"Overall in {GROUP} on telegram social mood entered Extreme Fear: 18/100",
    )
    store.save_tick(
        [], [alert], {}, lambda a: [("telegram", str(GROUP))], ("index_tick", NOW.isoformat()), NOW
    )

    assert asyncio.run(deliver(store, fake)) == 1
    [text] = sent_texts(fake)
    assert f"Overall in {TITLE} on telegram social mood entered Extreme Fear" in text
    assert str(GROUP) not in text

    # A moderator's daily digest by DM says which group it is about, by name too.
    digest = Subscription(
        "telegram", str(GROUP), str(ADMIN), str(ADMIN), "digest", ("digest",), quiet_start=8
    )
    store.subscribe(digest, NOW)
    sink = RecordingSink()

    async def moderator(cmd: Command) -> frozenset[str]:
        return frozenset({"admin"})  # still a moderator of the group when it goes out

    sent = asyncio.run(send_due_digests(store, {"telegram": sink}, NOW, {"telegram": moderator}))
    assert sent == 1
    assert sink.sent[0].text.startswith(f"Daily digest for {TITLE} (")


class NoScorer:
    """Delivery scores nothing; the pipeline only needs something in the scorer's place."""

    def score(self, texts: Any) -> list[Score]:
        raise AssertionError("delivery scores nothing")


# ---------------------------------------------------------------------- DMs need Start


def test_subscribing_by_dm_warns_until_the_user_has_started_the_bot(
    store: Store, fake: FakeTelegram
) -> None:
    fake.queue_update(group_update(1, "/subscribe BTC", MEMBER))
    serve(store, fake, 1)
    [first] = sent_texts(fake)
    assert first.startswith("Subscribed by direct message")
    assert "press Start" in first  # Telegram would refuse every alert to them

    fake.queue_update(private_update(2, "/start", MEMBER))  # the Start button sends /start
    fake.queue_update(group_update(3, "/subscribe ETH", MEMBER))
    serve(store, fake, 3)
    *_, again = sent_texts(fake)
    assert again.startswith("Subscribed by direct message")
    assert "Start" not in again  # they opened the private chat: no warning


def test_an_admin_subscribing_the_group_gets_no_dm_warning(
    store: Store, fake: FakeTelegram
) -> None:
    fake.queue_update(group_update(1, "/subscribe BTC", ADMIN))
    serve(store, fake, 1)
    [reply] = sent_texts(fake)
    assert reply.startswith("Subscribed here") and "Start" not in reply


def test_a_dm_the_user_refuses_drops_their_subscription_and_warns_again(
    store: Store, fake: FakeTelegram
) -> None:
    fake.queue_update(private_update(1, "/start", MEMBER))
    fake.queue_update(group_update(2, "/subscribe", MEMBER))
    serve(store, fake, 2)
    assert "Start" not in sent_texts(fake)[-1]
    alert = Alert("extreme-fear:*|*|*:24h:1", "extreme-fear", Scope(), NOW, "Overall: Extreme Fear")
    subs = store.subscriptions()
    store.save_tick(
        [],
        [alert],
        {},
        lambda a: [(s.platform, s.target) for s in subs if s.matches(a)],
        ("index_tick", NOW.isoformat()),
        NOW,
    )
    fake.fail_next(Failure(403, "Forbidden: bot was blocked by the user", method="sendMessage"))

    assert asyncio.run(deliver(store, fake)) == 0
    assert store.subscriptions() == []  # RecipientGone: unsubscribed, not retried forever
    assert store.query("SELECT given_up FROM outbox") == [("gone",)]
    # They blocked the bot: the next /subscribe warns again (Restart, i.e. /start, unblocks).
    fake.queue_update(group_update(3, "/subscribe", MEMBER))
    serve(store, fake, 3)
    assert "press Start" in sent_texts(fake)[-1]


# ---------------------------------------------------------------------- reply retries


@pytest.mark.parametrize(
    "failure",
    [
        SERVER_ERROR,
        Failure(429, "Too Many Requests: retry after 1", retry_after=1),
        Failure(502, "Bad Gateway"),
    ],
    ids=["500", "429", "502"],
)
def test_a_reply_that_fails_transiently_is_sent_again_once(
    store: Store, fake: FakeTelegram, failure: Failure
) -> None:
    fake.fail_next(Failure(failure.status, failure.description, failure.retry_after, "sendMessage"))
    fake.queue_update(group_update(1, "/help", MEMBER))
    seen_pending: list[bool] = []

    def watch() -> None:  # while the reply waits to be sent again, its row is not done
        if len(fake.requests("sendMessage")) == 1:
            seen_pending.append(inbox(store) == [(1, False)])

    serve(store, fake, 1, watch=watch, reply_backoff_s=0.05)
    first, second = fake.requests("sendMessage")  # failed, then delivered: no third
    assert first.params["text"] == second.params["text"]
    assert inbox(store) == [(1, True)]
    assert seen_pending and all(seen_pending)
    if failure.retry_after is not None:
        assert second.at - first.at >= failure.retry_after  # the platform's wait honoured


@pytest.mark.parametrize(
    "failure",
    [
        BLOCKED,
        KICKED,
        Failure(400, "Bad Request: message thread not found"),  # refused as it is
        Failure(429, "Too Many Requests: retry after 600", retry_after=600),  # over the cap
    ],
    ids=["blocked", "kicked", "bad-request", "long-flood-wait"],
)
def test_a_reply_that_cannot_succeed_is_not_retried(
    store: Store, fake: FakeTelegram, failure: Failure
) -> None:
    fake.fail_next(Failure(failure.status, failure.description, failure.retry_after, "sendMessage"))
    fake.queue_update(group_update(1, "/help", MEMBER))
    fake.queue_update(group_update(2, "/help", ADMIN))
    started = time.monotonic()
    serve(store, fake, 2, reply_backoff_s=0.05)
    assert len(fake.requests("sendMessage")) == 2  # one try for the first, then the next
    assert inbox(store) == [(1, True), (2, True)]
    assert time.monotonic() - started < 10  # the inbox was not held up waiting


def test_retries_are_bounded(store: Store, fake: FakeTelegram) -> None:
    for _ in range(5):
        fake.fail_next(Failure(500, "Internal Server Error", method="sendMessage"))
    fake.queue_update(group_update(1, "/help", MEMBER))
    serve(store, fake, 1, reply_attempts=3, reply_backoff_s=0.01)
    assert len(fake.requests("sendMessage")) == 3  # given up after three attempts
    assert inbox(store) == [(1, True)]


def test_a_stop_while_a_reply_waits_leaves_its_row_to_be_answered_once_next_run(
    store: Store, fake: FakeTelegram
) -> None:
    fake.fail_next(Failure(429, "Too Many Requests: retry after 5", 5, "sendMessage"))
    fake.queue_update(group_update(1, "/help", MEMBER))
    serve(store, fake, 1, until=lambda: len(fake.requests("sendMessage")) == 1)
    assert inbox(store) == [(1, False)]  # stopped mid-wait: not done, so not lost
    serve(store, fake, 1)  # the restart answers it, once
    assert len(fake.requests("sendMessage")) == 2
    assert inbox(store) == [(1, True)]
