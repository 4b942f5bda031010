"""The X (Twitter API v2) connector: recent search polled, since_id checkpoints stored on ack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import requests
import tweepy
from requests.adapters import HTTPAdapter

from connectors.bounds import count_ok, time_problem
from connectors.errors import MalformedInput, SourceUnavailable
from connectors.retry import backoff_delay
from connectors.types import Message

logger = logging.getLogger(__name__)

PLATFORM = "x"
COMMUNITY = "x"
#: One channel for every query, so a post found by two queries has one key.
CHANNEL = "search"
EXPANSIONS = ("author_id",)
TWEET_FIELDS = (
    "created_at",
    "public_metrics",
    "lang",
    "conversation_id",
    "referenced_tweets",  # to recognise retweets without trusting the "RT @" prefix alone
    "note_tweet",  # the full text of posts over 280 characters (``text`` is cut there)
)
USER_FIELDS = ("created_at", "public_metrics", "verified", "username")
#: X's ``lang`` codes that name no language (undetermined, cashtags or mentions only, ...).
_NO_LANGUAGE = frozenset({"und", "zxx", "qam", "qct", "qht", "qme", "qst", "art"})


# ---------------------------------------------------------------------- client


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a timeout: tweepy sets none, and a hung socket would hang forever."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self._timeout = timeout

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        if timeout is None:
            timeout = self._timeout
        return super().send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )


def build_client(
    bearer_token: str, *, timeout: tuple[float, float] = (10.0, 30.0)
) -> tweepy.Client:
    """A tweepy ``Client`` for app-only (bearer token) API v2 calls, as ``XSource`` needs it.

    Rate limits are not waited out inside tweepy (``wait_on_rate_limit=False``): ``XSource``
    waits itself, interruptibly. Responses come back as plain dicts (``return_type=dict``)
    because tweepy's ``Tweet``/``User`` objects raise on one malformed post and would lose
    the whole page; ``XSource`` skips that one post instead.

    Note: tweepy logs request headers, bearer token included, at DEBUG on the
    ``tweepy.client`` logger; keep that logger at INFO or above.

    Args:
        bearer_token: the app's OAuth 2.0 bearer token (never logged or raised here).
        timeout: (connect, read) seconds for every HTTP request.
    """
    client = tweepy.Client(bearer_token, return_type=dict, wait_on_rate_limit=False)
    client.session.mount("https://", _TimeoutAdapter(timeout))
    return client


# ---------------------------------------------------------------------- translation


def tweet_to_message(
    tweet: Mapping[str, Any] | tweepy.Tweet,
    users: Mapping[str, Mapping[str, Any] | tweepy.User],
) -> Message:
    """Turn one API v2 post (and the ``author_id`` user expansion) into a Message.

    The key is ``("x", "search", <post id>)`` whatever query found it. ``author`` is the
    username (the numeric author id where the expansion lacks it); ``reposts`` is
    ``retweet_count + quote_count``; the text is ``note_tweet.text`` for long posts, else
    ``text``. X's pseudo-languages (``und``, ``qct`` cashtags only, ...) become None so the
    pipeline detects the language itself. Author fields the expansion lacks stay None.

    Args:
        tweet: one element of the response's ``data`` (a dict or a ``tweepy.Tweet``).
        users: user id (string) -> user object from ``includes.users``.

    Returns:
        The Message, ``created_at`` in aware UTC.

    Raises:
        MalformedInput: no id, no text, or no parseable ``created_at``.
    """
    data = _as_dict(tweet)
    if data is None:
        raise MalformedInput("post is not an object")
    post_id = data.get("id")
    if (
        not isinstance(post_id, str | int)
        or isinstance(post_id, bool)
        or not str(post_id).isdigit()
    ):
        raise MalformedInput("post without a numeric id")
    text = _full_text(data)
    if text is None:
        raise MalformedInput(f"post {post_id} has no text")
    created_at = _parse_time(data.get("created_at"))
    if created_at is None:
        raise MalformedInput(f"post {post_id} has no valid created_at")
    if problem := time_problem(created_at):
        raise MalformedInput(f"post {post_id}: {problem}")

    metrics = data.get("public_metrics")
    metrics = metrics if isinstance(metrics, Mapping) else {}
    author_id = data.get("author_id")
    author_id = str(author_id) if isinstance(author_id, str | int) else ""
    user = _as_dict(users.get(author_id)) if author_id else None
    user = user or {}
    username = user.get("username")
    user_metrics = user.get("public_metrics")
    followers = (
        _count(user_metrics.get("followers_count")) if isinstance(user_metrics, Mapping) else None
    )
    verified = user.get("verified")
    lang = data.get("lang")
    return Message(
        platform=PLATFORM,
        community=COMMUNITY,
        channel=CHANNEL,
        message_id=str(post_id),
        author=username if isinstance(username, str) and username else author_id,
        text=text,
        created_at=created_at,
        likes=_count(metrics.get("like_count")) or 0,
        replies=_count(metrics.get("reply_count")) or 0,
        reposts=(_count(metrics.get("retweet_count")) or 0)
        + (_count(metrics.get("quote_count")) or 0),
        language=lang if isinstance(lang, str) and lang and lang not in _NO_LANGUAGE else None,
        public=True,
        author_followers=followers,
        author_created_at=_parse_time(user.get("created_at")),
        author_verified=verified if isinstance(verified, bool) else None,
    )


def is_retweet(tweet: Mapping[str, Any] | tweepy.Tweet) -> bool:
    """Whether a post is a plain retweet (``referenced_tweets`` type ``retweeted``, or, where
    that field is missing, text starting ``RT @``). Quotes and replies are not retweets."""
    data = _as_dict(tweet) or {}
    refs = data.get("referenced_tweets")
    if isinstance(refs, list):
        return any(isinstance(r, Mapping) and r.get("type") == "retweeted" for r in refs)
    text = data.get("text")
    return isinstance(text, str) and text.startswith("RT @")


def _as_dict(obj: Any) -> Mapping[str, Any] | None:
    """The JSON object behind a dict or a tweepy model (``.data``)."""
    if isinstance(obj, Mapping) and not isinstance(obj, tweepy.Tweet | tweepy.User):
        return obj
    data = getattr(obj, "data", None)
    return data if isinstance(data, Mapping) else None


def _full_text(data: Mapping[str, Any]) -> str | None:
    note = data.get("note_tweet")
    if isinstance(note, Mapping) and isinstance(note.get("text"), str) and note["text"].strip():
        return note["text"]
    text = data.get("text")
    if isinstance(text, str) and text.strip():
        return text
    return None


def _parse_time(value: Any) -> datetime | None:
    """An API v2 timestamp (``2024-05-01T12:00:00.000Z``) as aware UTC; None if unusable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # the API always says Z; a naive time is not what it sent
    return parsed.astimezone(UTC)


def _count(value: Any) -> int | None:
    # Beyond MAX_COUNT is no real metric, and would overflow the store's integers.
    if isinstance(value, int) and not isinstance(value, bool) and count_ok(value):
        return value
    return None


# ---------------------------------------------------------------------- checkpoints


@runtime_checkable
class XState(Protocol):
    """Durable key/value state and the read meter for the X source (the bot implements it).

    ``set`` must be durable when it returns. An empty string means "no value".
    """

    def get(self, key: str) -> str | None:
        """The stored value, or None."""
        ...

    def set(self, key: str, value: str) -> None:
        """Store a value durably ("" clears it)."""
        ...

    def add_reads(self, n: int) -> None:
        """Add ``n`` posts read to the cost meter (X bills per post read)."""
        ...

    def may_read(self) -> bool:
        """Whether the plan allows another page now (False once the month's cap is spent)."""
        ...


class AccessRejected(SourceUnavailable):
    """X refused the app itself (401 bad token, 403 plan without search): no query can work."""


def since_key(query: str) -> str:
    """State key of a query's ``since_id``: the newest post id fully read and stored."""
    return f"x:since_id:{query}"


def gap_key(query: str) -> str:
    """State key of a query's unfinished poll (a JSON object, see ``Gap``), "" when none."""
    return f"x:gap:{query}"


@dataclass(frozen=True, slots=True)
class Gap:
    """A poll that stopped before its last page; the next poll finishes it first.

    Everything newer than ``oldest_id`` up to ``newest_id`` was read and stored; the posts in
    ``(since_id, oldest_id)`` were not. The next poll sends ``since_id`` (the same value the
    token was issued with), ``until_id`` if set, and ``next_token``; once no token is left,
    ``newest_id`` becomes the query's ``since_id`` and the gap is cleared. Should X reject the
    stored token (400), the gap is asked for again as ``since_id``..``until_id=oldest_id``.
    """

    since_id: str
    next_token: str
    newest_id: str
    oldest_id: str | None = None
    until_id: str | None = None

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(
            {
                "since_id": self.since_id,
                "next_token": self.next_token,
                "newest_id": self.newest_id,
                "oldest_id": self.oldest_id,
                "until_id": self.until_id,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Gap:
        """Parse the stored form; raises ValueError when it is not one."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("gap is not an object")
        for name in ("since_id", "next_token", "newest_id"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                raise ValueError(f"gap without {name}")
        for name in ("oldest_id", "until_id"):
            if raw.get(name) is not None and not isinstance(raw[name], str):
                raise ValueError(f"gap {name} is not a string")
        return cls(
            raw["since_id"], raw["next_token"], raw["newest_id"], raw.get("oldest_id"),
            raw.get("until_id"),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a query's next poll starts: after ``since_id``, finishing ``gap`` first."""

    since_id: str | None = None
    gap: Gap | None = None


@dataclass(slots=True)
class _Pending:
    """A poll's cursor, written to state once every message it yielded has been acked."""

    query: str
    cursor: Cursor
    unacked: Counter[str]


# ---------------------------------------------------------------------- source


def _epoch() -> float:
    return time.time()


class XSource:
    """Polls X recent search for each query and yields the posts as Messages.

    Checkpoints (per query, in ``state``; see ``since_key``, ``gap_key`` and ``Gap``):

    * One poll sends the stored ``since_id`` unchanged on every page and follows
      ``meta.next_token`` for up to ``max_pages`` pages. The first page's ``meta.newest_id``
      becomes the new ``since_id``.
    * The new cursor is written only after the pipeline has acked (stored) every message the
      poll yielded, and after every earlier poll's cursor: a crash between yield and store
      re-reads those posts (the store dedupes by key) instead of losing them. Within this
      process the next poll already starts from the new cursor.
    * A poll that stops with a ``next_token`` left (``max_pages`` reached, or a failure or
      stop after some pages) keeps a ``Gap``; the next poll finishes the gap before reading
      anything newer.
    * With no stored ``since_id`` (first run) only ``first_run_pages`` pages of the newest
      posts are read and the rest is dropped: the last seven days are not backfilled.

    Retweets are skipped (counted in ``retweets``): they repeat another post's text and
    would count one opinion many times; write queries with ``-is:retweet`` so they are not
    even read (and billed). Malformed posts are skipped and counted in ``skipped``. A post
    that two queries find is yielded twice with the same key; the store keeps it once.

    Errors: 429 waits until ``x-rate-limit-reset`` (+1 s, at most ``max_rate_wait_s``) and
    retries the same page; 5xx and network errors back off exponentially with jitter and
    retry the same page, raising ``SourceUnavailable`` after ``max_failures`` failures in a
    row; 401/403 and other rejections raise ``SourceUnavailable`` at once.

    Health, read-only: ``reads`` (posts read by this process), ``last_message_at`` (wall
    time of the last yield), ``errors`` (failed requests), ``last_error``, ``skipped``,
    ``retweets``.

    Example::

        source = XSource(build_client(token), ["$BTC -is:retweet lang:en"], state,
                         stopping=stop)
        await pipeline.intake(source)  # calls source.ack(batch) after each stored batch
    """

    def __init__(
        self,
        client: tweepy.Client,
        queries: Sequence[str],
        state: XState,
        *,
        poll_s: float = 60.0,
        max_pages: int = 10,
        max_results: int = 100,
        first_run_pages: int = 1,
        stopping: asyncio.Event | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], float] = _epoch,
        rng: random.Random | None = None,
        max_failures: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_rate_wait_s: float = 900.0,
        name: str = "x",
    ) -> None:
        """Create the source; nothing is requested until ``messages()`` is iterated.

        Args:
            client: from ``build_client`` (a tweepy ``Client`` returning dicts).
            queries: recent-search queries, polled in this order; each has its own cursor.
            state: durable checkpoints and the read meter.
            poll_s: seconds between rounds over all queries.
            max_pages: most pages one poll of one query reads.
            max_results: posts per page (10 to 100).
            first_run_pages: pages read for a query with no stored ``since_id``.
            stopping: when set, polling ends (waits are cut short).
            sleep: awaited to wait (tests inject one that does not).
            clock: Unix time in seconds, for rate-limit resets and ``last_message_at``.
            rng: jitter source (tests pass a seeded one).
            max_failures: consecutive 5xx/network failures of one page before giving up.
            backoff_base: the first backoff in seconds, doubled per failure.
            backoff_cap: the longest backoff in seconds.
            max_rate_wait_s: the longest wait for a rate-limit reset.
            name: the source's name in logs and status.

        Raises:
            ValueError: a bad argument (no queries, a blank one, ``max_results`` out of
                range, a client that does not return dicts).
        """
        if getattr(client, "return_type", None) is not dict:
            raise ValueError("XSource needs a client from build_client (return_type=dict)")
        if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
            raise ValueError("XSource needs at least one non-blank query")
        if len(set(queries)) != len(queries):
            raise ValueError("XSource queries must be distinct (each has its own cursor)")
        if not 10 <= max_results <= 100:
            raise ValueError("max_results must be between 10 and 100")
        if max_pages < 1 or first_run_pages < 1 or max_failures < 1:
            raise ValueError("max_pages, first_run_pages and max_failures must be at least 1")
        self.name = name
        self.client = client
        self.queries = tuple(queries)
        self.state = state
        self.poll_s = poll_s
        self.max_pages = max_pages
        self.max_results = max_results
        self.first_run_pages = first_run_pages
        self.stopping = stopping or asyncio.Event()
        self._sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.max_failures = max_failures
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_rate_wait_s = max_rate_wait_s
        # Health (mutable I/O state, read by the supervisor).
        self.reads = 0
        self.skipped = 0
        self.retweets = 0
        self.capped = False  # the last poll stopped because the read budget was spent
        self.errors = 0
        self.last_error: str | None = None
        self.last_message_at: datetime | None = None
        # Cursors this process polls from (ahead of the stored ones until acks arrive).
        self._cursors: dict[str, Cursor] = {}
        # Polls whose cursors wait for acks, oldest first; written strictly in this order.
        self._pending: deque[_Pending] = deque()

    # -------------------------------------------------------------- the loop

    async def messages(self) -> AsyncIterator[Message]:
        """Poll every query, yield its new posts oldest first, wait ``poll_s``, repeat.

        Ends when ``stopping`` is set.

        Raises:
            SourceUnavailable: the token was rejected, the plan lacks search access, a
                query was rejected, or X kept failing; posts read before the failure are
                yielded first and their cursor kept.
        """
        while not self.stopping.is_set():
            failed: list[SourceUnavailable] = []
            for query in self.queries:
                if self.stopping.is_set():
                    return
                try:
                    batch, failure = await self._poll(query)
                except AccessRejected:
                    raise  # the token or plan: every query would fail the same way
                except SourceUnavailable as exc:
                    batch, failure = [], exc
                for message in batch:
                    self.last_message_at = datetime.fromtimestamp(self.clock(), UTC)
                    yield message
                if failure is not None:
                    # One rejected or failing query must not stop the others.
                    logger.warning("x: query %r failed this round: %s", query, failure)
                    failed.append(failure)
            if failed and len(failed) == len(self.queries):
                raise failed[-1]  # X itself is failing: let the supervisor back off
            if await self._pause(self.poll_s):
                return

    def ack(self, messages: Sequence[Message]) -> None:
        """The pipeline has stored these messages: write the cursors they were holding back.

        Messages of other sources, or already acked, are ignored.
        """
        for message in messages:
            if message.platform != PLATFORM:
                continue
            for pending in self._pending:
                if pending.unacked[message.message_id] > 0:
                    pending.unacked[message.message_id] -= 1
                    if pending.unacked[message.message_id] == 0:
                        del pending.unacked[message.message_id]
                    break
        self._settle()

    def reset(self) -> None:
        """Forget in-memory progress before a restart: posts handed over but never acked (the
        pipeline failed mid-batch) are read again from the stored cursors."""
        self._pending.clear()
        self._cursors.clear()

    @property
    def pending_polls(self) -> int:
        """How many polls still wait for acks before their cursor is written."""
        return len(self._pending)

    def cursor(self, query: str) -> Cursor:
        """The cursor the next poll of ``query`` starts from (loaded from state once)."""
        if query not in self._cursors:
            self._cursors[query] = self._load(query)
        return self._cursors[query]

    # -------------------------------------------------------------- one poll

    async def _poll(self, query: str) -> tuple[list[Message], SourceUnavailable | None]:
        """Read one query's new posts; return them oldest first and any failure to raise
        after they are yielded. Registers the new cursor to be written once they are acked."""
        start = self.cursor(query)
        first_run = start.since_id is None and start.gap is None
        limit = min(self.max_pages, self.first_run_pages) if first_run else self.max_pages
        gap = start.gap
        since = gap.since_id if gap else start.since_id
        until = gap.until_id if gap else None
        token = gap.next_token if gap else None
        newest = gap.newest_id if gap else None
        oldest = gap.oldest_id if gap else None
        posts: list[Mapping[str, Any]] = []
        users: dict[str, Mapping[str, Any]] = {}
        failure: SourceUnavailable | None = None
        pages = 0
        while pages < limit and not self.stopping.is_set():
            if not self.state.may_read():
                # The month's read budget is spent: stop here like any early stop (the gap
                # is kept), and read nothing more until the operator's cap allows it.
                self.capped = True
                break
            self.capped = False
            try:
                body = await self._fetch(query, since, until, token)
            except tweepy.BadRequest as exc:
                if pages == 0 and since is not None and "since_id" in str(exc):
                    # Recent search reaches back 7 days and refuses an older since_id (a
                    # month paused at the read cap, a bot down for a week). What lies between
                    # cannot be read any more: start again from the newest posts rather than
                    # fail the same way forever.
                    logger.warning(
                        "x: since_id %s for %r is beyond recent search's 7 days (%s); the"
                        " posts in between cannot be read, starting from the newest",
                        since, query, self._clean(exc),
                    )  # fmt: skip
                    start = Cursor(None, None)
                    self._cursors[query] = start
                    since = until = token = newest = oldest = None
                    limit = min(self.max_pages, self.first_run_pages)
                    continue
                if token is not None and oldest is not None and pages == 0:
                    # The stored token is no longer accepted: ask for the same gap by id.
                    logger.warning(
                        "x: next_token for %r rejected (%s); resuming below id %s",
                        query, self._clean(exc), oldest,
                    )  # fmt: skip
                    until, token = oldest, None
                    continue
                failure = SourceUnavailable(f"X rejected the search {query!r}: {self._clean(exc)}")
            except SourceUnavailable as exc:
                failure = exc
            if failure is not None:
                if pages == 0:
                    raise failure
                break  # keep what was read; the gap starts at the failed page's token
            if body is None:
                break  # stopping while waiting
            pages += 1
            data = body.get("data")
            page_posts = (
                [p for p in data if isinstance(p, Mapping)] if isinstance(data, list) else []
            )
            read = len(data) if isinstance(data, list) else 0
            if read:
                self.reads += read
                self.state.add_reads(read)
            posts.extend(page_posts)
            includes = body.get("includes")
            for user in (includes or {}).get("users", []) if isinstance(includes, Mapping) else []:
                if isinstance(user, Mapping) and isinstance(user.get("id"), str | int):
                    users[str(user["id"])] = user
            meta = body.get("meta")
            meta = meta if isinstance(meta, Mapping) else {}
            if newest is None and _is_id(meta.get("newest_id")):
                newest = str(meta["newest_id"])
            if _is_id(meta.get("oldest_id")):
                oldest = str(meta["oldest_id"])
            next_token = meta.get("next_token")
            token = next_token if isinstance(next_token, str) and next_token else None
            if token is None:
                break

        if token is not None and not first_run and newest is not None and since is not None:
            end = Cursor(since, Gap(since, token, newest, oldest, until))
        else:
            end = Cursor(newest or since, None)
        batch = self._translate(query, posts, users)
        self._cursors[query] = end
        self._pending.append(_Pending(query, end, Counter(m.message_id for m in batch)))
        self._settle()
        logger.debug(
            "x: %r: %d pages, %d posts, %d new messages, cursor %s",
            query, pages, len(posts), len(batch), end,
        )  # fmt: skip
        return batch, failure

    def _translate(
        self, query: str, posts: list[Mapping[str, Any]], users: Mapping[str, Mapping[str, Any]]
    ) -> list[Message]:
        out: list[Message] = []
        for post in posts:
            if is_retweet(post):
                self.retweets += 1
                continue
            try:
                out.append(tweet_to_message(post, users))
            except (MalformedInput, ValueError) as exc:
                self.skipped += 1
                # Never the text: user content.
                logger.warning("x: skipping malformed post from %r: %s", query, exc)
        # The API returns newest first; ids grow with time.
        out.sort(key=lambda m: int(m.message_id))
        return out

    async def _fetch(
        self, query: str, since: str | None, until: str | None, token: str | None
    ) -> dict[str, Any] | None:
        """One page, retried through rate limits and transient failures.

        Returns None when ``stopping`` was set while waiting.

        Raises:
            tweepy.BadRequest: X rejected the request (the caller decides).
            SourceUnavailable: auth rejected, another 4xx, or ``max_failures`` in a row.
        """
        params: dict[str, Any] = {
            "max_results": self.max_results,
            "expansions": list(EXPANSIONS),
            "tweet_fields": list(TWEET_FIELDS),
            "user_fields": list(USER_FIELDS),
        }
        if since is not None:
            params["since_id"] = since
        if until is not None:
            params["until_id"] = until
        if token is not None:
            params["next_token"] = token
        failures = 0
        while True:
            try:
                body = await asyncio.to_thread(self.client.search_recent_tweets, query, **params)
            except tweepy.TooManyRequests as exc:
                delay = self._rate_wait(exc)
                self._note(exc)
                logger.warning("x: rate limited on %r; waiting %.0f s", query, delay)
            except (tweepy.Unauthorized, tweepy.Forbidden) as exc:
                self._note(exc)
                what = (
                    "the bearer token was rejected (401)"
                    if isinstance(exc, tweepy.Unauthorized)
                    else "access denied (403): the app's plan may lack recent search"
                )
                raise AccessRejected(f"X: {what}: {self._clean(exc)}") from exc
            except tweepy.BadRequest as exc:
                self._note(exc)
                raise
            except (tweepy.TwitterServerError, requests.RequestException) as exc:
                failures += 1
                self._note(exc)
                if failures >= self.max_failures:
                    raise SourceUnavailable(
                        f"X search failed {failures} times in a row: {self._clean(exc)}"
                    ) from exc
                delay = self._backoff(failures)
                logger.warning(
                    "x: search %r failed (%s), retry %d in %.1f s",
                    query, self._clean(exc), failures, delay,
                )  # fmt: skip
            except tweepy.HTTPException as exc:  # 404 and other statuses: not transient
                self._note(exc)
                raise SourceUnavailable(f"X search failed: {self._clean(exc)}") from exc
            else:
                if not isinstance(body, dict):
                    raise SourceUnavailable("X client did not return a JSON object")
                return body
            if await self._pause(delay):
                return None

    # -------------------------------------------------------------- helpers

    def _rate_wait(self, exc: tweepy.TooManyRequests) -> float:
        """Seconds until the rate-limit window resets, +1, within [1, max_rate_wait_s]."""
        reset = exc.reset_time
        if reset is None:
            with contextlib.suppress(AttributeError, TypeError, ValueError):
                reset = int(exc.response.headers["x-rate-limit-reset"])
        if reset is None:
            return min(self.backoff_cap, self.max_rate_wait_s)
        return min(self.max_rate_wait_s, max(1.0, reset - self.clock() + 1))

    def _backoff(self, failures: int) -> float:
        return backoff_delay(failures, self.backoff_base, self.backoff_cap, self.rng)

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` or until ``stopping``; True when stopping."""
        if self.stopping.is_set():
            return True
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        stopper = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
        return self.stopping.is_set()

    def _note(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {self._clean(exc)}"

    def _clean(self, exc: BaseException) -> str:
        """An exception's text, one line, with the bearer token masked should it appear."""
        text = " ".join(str(exc).split())
        token = getattr(self.client, "bearer_token", None)
        if isinstance(token, str) and token:
            text = text.replace(token, "<token>")
        return text

    def _load(self, query: str) -> Cursor:
        since = self.state.get(since_key(query)) or None
        if since is not None and not _is_id(since):
            logger.warning("x: stored since_id for %r is not an id; starting afresh", query)
            since = None
        raw_gap = self.state.get(gap_key(query)) or None
        gap = None
        if raw_gap is not None and since is not None:
            try:
                gap = Gap.from_json(raw_gap)
            except ValueError:
                logger.warning("x: stored gap for %r is unreadable; ignoring it", query)
            # A gap for another since_id was finished (since_id written, gap not yet cleared).
            if gap is not None and gap.since_id != since:
                gap = None
        return Cursor(since, gap)

    def _settle(self) -> None:
        """Write the cursors of fully acked polls, oldest first, stopping at the first that
        still waits (a later cursor must never be stored before an earlier one)."""
        while self._pending and not self._pending[0].unacked:
            pending = self._pending.popleft()
            self._store(pending.query, pending.cursor)

    def _store(self, query: str, cursor: Cursor) -> None:
        # Two keys, so order the writes such that a crash between them leaves a state that
        # ``_load`` reads correctly (a gap whose since_id differs is ignored).
        if cursor.gap is not None:
            self.state.set(gap_key(query), cursor.gap.to_json())
            self.state.set(since_key(query), cursor.gap.since_id)
            return
        if cursor.since_id is not None:
            self.state.set(since_key(query), cursor.since_id)
        if self.state.get(gap_key(query)):
            self.state.set(gap_key(query), "")


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit()
