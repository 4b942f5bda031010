"""A Redis Streams backend for the pipeline's ``Queue``: consumer groups, acks, dead letters.

One stream per queue (``<prefix><name>``) with one consumer group. ``put`` adds an entry whose
``data`` field is the item's JSON (``bot/pipeline/codec.py``); ``get`` hands out one entry
through ``XREADGROUP``; ``ack`` is ``XACK`` and ``XDEL`` together. A stage calls ``ack`` only
after the item's work is committed to the database, so an entry whose consumer crashed stays
pending in the group and is done again by another consumer; every stage's work is keyed in
the store, so doing it twice is harmless (at-least-once delivery).

How the parts fit:

* **Acked entries are deleted**, so the stream holds exactly what is not yet acked: entries
  not yet delivered plus pending ones. The backlog is then ``XLEN``, on Redis 6.2 as on 7
  (``lag`` and ``entries-read`` of ``XINFO GROUPS`` exist only on 7). This assumes one
  consumer group per stream, which is how the pipeline uses it.
* **Dead consumers.** Before reading new entries, ``get`` takes over (``XAUTOCLAIM``) an entry
  that has been pending longer than ``claim_idle_ms`` on any consumer, itself included (a
  restarted process under the same name). ``claim_idle_ms`` must exceed the longest a stage
  takes over one item, or a slow consumer's item is done twice.
* **Poison entries.** An entry delivered more than ``max_deliveries`` times (its count read
  with ``XPENDING``; ``XAUTOCLAIM`` adds one per take-over) is moved to ``<stream>:dead`` with
  the reason and acked, and so is an entry whose payload does not decode: the consumer never
  crashes on it. A Lua script does the move, so only one consumer moves and counts it.
* **Backpressure, not loss.** ``put`` waits (polling, with a growing pause) while the backlog
  is ``max_backlog`` or more. ``MAXLEN`` (10x ``max_backlog`` by default) is only a safety
  net for producers that do not wait; since every entry in the stream is unacked, whatever
  the trim removes is lost, and the put script counts it (``stats().lost``). Redis 7 also
  drops trimmed entries from the pending list; on 6.2 ``XAUTOCLAIM`` answers them with nil,
  and ``get`` then acks those dangling ids so they stop counting as pending.
* **Held entries.** A consumer that keeps entries unacked on purpose (the index worker's
  reorder buffer, bot/pipeline/workers.py) says how many (``hold``), and producers leave them
  out of the backlog they wait on; it resets their idle time (``touch``: ``XCLAIM … JUSTID``,
  which counts no delivery), so they are neither taken over nor set aside while held.
* **The end.** ``close`` adds an end marker entry and records its id under
  ``<stream>:closed``, atomically. The consumer that reads the marker acks it and raises
  ``Closed``; every other consumer raises ``Closed`` once nothing up to the marker is left to
  deliver (the group's last-delivered id has reached it). Entries still pending on a dead
  consumer at that point stay pending for the next run. Closing is final for the stream: a
  new run over the same streams calls ``reopen`` before its consumers start.
* **Outages.** The first contact with Redis fails at once with ``QueueUnavailable`` naming
  the URL without its password. Later, each call is retried on connection errors, 0.5 s
  doubling to 10 s, for at most ``retry_s``, with a warning each time. A ``put`` retried after
  Redis applied it but before the answer came adds the item twice: harmless, as above.

``qsize`` cannot ask Redis (it is synchronous): it gives the backlog seen by the last ``put``
or ``stats`` call. A single Redis server is assumed (the scripts touch several keys, which a
cluster would need in one hash slot).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.errors import BotError, ConfigError
from bot.pipeline.codec import SCORE_CHUNKS, SCORED_CHUNKS, Codec, CodecError
from bot.pipeline.queue import Closed, Received
from bot.pipeline.runner import Queues, process_name
from bot.store.postgres import redact

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DATA = b"data"  # the field holding an item's payload
END = b"end"  # the field that marks the end marker entry
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
PUT_POLL_FIRST_S = 0.01
PUT_POLL_MAX_S = 0.5
SWEEP_COUNT = 1000  # dangling pending ids acked per sweep (Redis 6.2 only)
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)

# KEYS: stream, stats. ARGV: "~" or "=", maxlen, then the entry's field/value pairs.
# The trim runs after the add, in the same script, so the count of what it removed (all of it
# unacked, since acked entries are deleted) is exact.
_PUT = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
local trimmed = redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1], ARGV[2])
if trimmed > 0 then redis.call('HINCRBY', KEYS[2], 'lost', trimmed) end
return id
"""
# KEYS: stream, closed. The marker and the record of its id appear together, once.
_CLOSE = """
local old = redis.call('GET', KEYS[2])
if old then return old end
local id = redis.call('XADD', KEYS[1], '*', 'end', '1')
redis.call('SET', KEYS[2], id)
return id
"""
# KEYS: stream, closed. ARGV: group. Forgets a close (and its marker, if nobody read it).
_REOPEN = """
local id = redis.call('GET', KEYS[2])
if id then
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  redis.call('DEL', KEYS[2])
end
return id
"""
# KEYS: stream, dead stream, stats. ARGV: group, id, dead maxlen, then field/value pairs.
# XACK first: of two consumers racing to set one entry aside, only the one that acks it
# moves and counts it, and a retry after a lost answer does nothing twice.
_DEAD = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
redis.call('HINCRBY', KEYS[3], 'dead', 1)
return 1
"""


class QueueUnavailable(BotError):
    """Redis could not be reached (at first use, or for longer than ``retry_s`` later)."""


@dataclass(frozen=True, slots=True)
class RedisQueueConfig:
    """The knobs of one Redis Streams queue."""

    #: ``put`` waits while this many entries are unacked (the in-process queue's bound).
    max_backlog: int = 64
    #: The trim safety net: ``MAXLEN`` for the stream (None: 10x ``max_backlog``).
    maxlen: int | None = None
    #: ``MAXLEN =`` instead of ``~`` (exact trims cost more; tests use it to force a trim).
    exact_trim: bool = False
    #: An entry pending this long on a consumer is taken over by the next ``get``.
    claim_idle_ms: int = 120_000
    #: An entry delivered more often than this is set aside as poison.
    max_deliveries: int = 5
    #: How long one ``XREADGROUP`` waits for new entries before ``get`` looks around again.
    block_ms: int = 1_000
    #: How long calls are retried while Redis is unreachable, after the first contact.
    retry_s: float = 120.0
    connect_timeout_s: float = 5.0
    #: The dead-letter stream keeps about this many entries.
    dead_maxlen: int = 10_000
    group: str = "moodring"

    @property
    def trim_at(self) -> int:
        return self.maxlen if self.maxlen is not None else 10 * self.max_backlog


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One look at a queue: what waits in it and what it set aside or lost."""

    #: Entries not yet acked: undelivered plus pending.
    backlog: int
    #: Entries no consumer has had yet (the lag).
    undelivered: int
    #: Entries delivered and not yet acked.
    pending: int
    #: Entries moved to the dead-letter stream (poison or undecodable), ever.
    dead_lettered: int
    #: Unacked entries removed by the ``MAXLEN`` safety net, ever.
    lost: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_key(entry_id: bytes | str) -> tuple[int, int]:
    ms, _, seq = _text(entry_id).partition("-")
    return int(ms), int(seq or 0)


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisStreamQueue(Generic[T]):
    """A ``Queue`` over one Redis stream and consumer group (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        name: str,
        codec: Codec[T],
        *,
        prefix: str = "moodring:",
        config: RedisQueueConfig | None = None,
        consumer: str | None = None,
    ) -> None:
        self.url = url
        self.config = config or RedisQueueConfig()
        self.codec = codec
        self.consumer = consumer or process_name()
        self.stream = f"{prefix}{name}"
        self.dead_stream = f"{self.stream}:dead"
        self._stats_key = f"{self.stream}:stats"
        self._closed_key = f"{self.stream}:closed"
        self._held_key = f"{self.stream}:held"
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._setup = asyncio.Lock()
        self._closed = False  # this producer closed it
        self._reached_end = False  # this consumer saw the end
        self._consumed = False
        self._cursor = "0-0"  # where the next XAUTOCLAIM scan starts
        self._backlog = 0

    # --- connection -------------------------------------------------------------------

    async def _ready(self) -> aioredis.Redis:
        """The client, connected and with the group made. Failing here is not retried: a
        Redis that never answered is a setting to fix, not an outage to wait out."""
        if self._client is not None:
            return self._client
        async with self._setup:
            if self._client is not None:
                return self._client
            try:
                client = aioredis.Redis.from_url(
                    self.url,
                    socket_connect_timeout=self.config.connect_timeout_s,
                    # Above the blocking read's own wait, so only a hung server times out.
                    socket_timeout=self.config.block_ms / 1000 + self.config.connect_timeout_s,
                    # Our own retry loop (with its warnings and bound) replaces redis-py's.
                    retry=Retry(NoBackoff(), 0),
                )
            except ValueError as exc:
                raise ConfigError(f"invalid Redis URL {redact(self.url)}: {exc}") from None
            # The raw reply: redis-py's parser drops Redis 7's deleted ids, and trips on
            # the nil entries of 6.2.
            client.set_response_callback("XAUTOCLAIM", lambda response, **_: response)
            try:
                await client.ping()
                await self._create_group(client)
            except _TRANSIENT as exc:
                await client.aclose()
                raise QueueUnavailable(f"cannot reach Redis at {redact(self.url)}: {exc}") from None
            scripts = {"put": _PUT, "close": _CLOSE, "reopen": _REOPEN, "dead": _DEAD}
            self._scripts = {key: client.register_script(src) for key, src in scripts.items()}
            self._client = client
            return client

    async def _create_group(self, client: aioredis.Redis) -> None:
        try:
            # From "0": entries a producer added before any consumer came are delivered too.
            await client.xgroup_create(self.stream, self.config.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _call(self, what: str, op: Callable[[aioredis.Redis], Awaitable[R]]) -> R:
        """``op(client)``, retried while Redis is unreachable (at most ``retry_s``)."""
        client = await self._ready()
        delay = RETRY_FIRST_S
        deadline: float | None = None
        regroup = False
        while True:
            try:
                if regroup:
                    await self._create_group(client)
                return await op(client)
            except _TRANSIENT as exc:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.config.retry_s
                if now >= deadline:
                    raise QueueUnavailable(
                        f"Redis at {redact(self.url)} unreachable for {self.config.retry_s:g} s"
                        f" ({what} on {self.stream}): {exc}"
                    ) from exc
                log.warning(
                    "queue %s: Redis at %s unreachable during %s (%s); retrying in %.1f s",
                    self.stream,
                    redact(self.url),
                    what,
                    exc,
                    delay,
                )
                await asyncio.sleep(min(delay, max(0.0, deadline - now)))
                delay = min(delay * 2, RETRY_MAX_S)
            except ResponseError as exc:
                # A Redis restarted without its data has no group; make it again, once.
                if "NOGROUP" not in str(exc) or regroup:
                    raise
                log.warning("queue %s: consumer group gone; creating it again", self.stream)
                regroup = True

    async def aclose(self) -> None:
        """Let go of the connections (and of this consumer's name, if it holds nothing)."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._consumed:
                mine = await client.xpending_range(
                    self.stream, self.config.group, "-", "+", 1, consumername=self.consumer
                )
                if not mine:
                    await client.xgroup_delconsumer(self.stream, self.config.group, self.consumer)
        except (*_TRANSIENT, ResponseError) as exc:
            log.warning(
                "queue %s: could not remove consumer %s: %s", self.stream, self.consumer, exc
            )
        finally:
            await client.aclose()

    # --- producer side ----------------------------------------------------------------

    async def put(self, item: T) -> None:
        """Add ``item``, first waiting while ``max_backlog`` entries are unacked."""
        if self._closed:
            raise Closed("put on a closed queue")
        payload = self.codec.encode(item)
        await self._wait_for_room()
        trim = "=" if self.config.exact_trim else "~"
        args = [trim, self.config.trim_at, DATA, payload]
        await self._call(
            "put", lambda c: self._scripts["put"](keys=[self.stream, self._stats_key], args=args)
        )
        self._backlog += 1

    async def _wait_for_room(self) -> None:
        pause = PUT_POLL_FIRST_S
        while True:
            backlog, closed = await self._call("put", self._backlog_and_closed)
            self._backlog = backlog
            if closed:
                raise Closed("put on a closed queue")
            if backlog < self.config.max_backlog:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, PUT_POLL_MAX_S)

    async def _backlog_and_closed(self, client: aioredis.Redis) -> tuple[int, bool]:
        async with client.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.exists(self._closed_key)
            pipe.get(self._held_key)
            length, closed, held = await pipe.execute()
        # Entries a consumer holds on purpose (``hold``) do not count against the bound.
        return max(0, int(length) - int(held or 0)), bool(closed)

    async def hold(self, n: int) -> None:
        """Say that this stream's consumer holds ``n`` delivered entries unacked on purpose
        (the index worker's reorder buffer, waiting for an earlier chunk): producers then
        do not count them against ``max_backlog``. Without this, a buffer as large as the
        bound would block every scorer in ``put``, and none would ever take over the
        missing chunk from a dead scorer. One holder per stream (the index lease's)."""
        await self._call("hold", lambda c: c.set(self._held_key, max(0, n)))

    async def close(self) -> None:
        """Put the end marker: consumers raise ``Closed`` once they reach it."""
        if self._closed:
            return
        self._closed = True
        await self._call(
            "close",
            lambda c: self._scripts["close"](keys=[self.stream, self._closed_key]),
        )

    async def reopen(self) -> None:
        """Forget an earlier run's ``close`` (call it before this run's consumers start)."""
        self._closed = False
        self._reached_end = False
        await self._call(
            "reopen",
            lambda c: self._scripts["reopen"](
                keys=[self.stream, self._closed_key], args=[self.config.group]
            ),
        )

    def qsize(self) -> int:
        """The backlog as this object last saw it (``put``, ``ack``, ``stats``): synchronous,
        so Redis is not asked here."""
        return self._backlog

    # --- consumer side ----------------------------------------------------------------

    async def get(self) -> Received[T]:
        """The next item: a dead consumer's first, then a new one; ``Closed`` at the end."""
        if self._reached_end:
            raise Closed("queue closed")
        self._consumed = True
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # A cancel that a blocking read swallowed (a client library may, while it
                # tears a connection down) must still end the loop, or the canceller waits on
                # a get that blocks again and again.
                raise asyncio.CancelledError
            received = await self._claim()
            if received is not None:
                return received
            entries = await self._call("get", self._read_new)
            for entry_id, fields in entries:
                received = await self._accept(entry_id, fields, deliveries=1)
                if received is not None:
                    return received
            if not entries and await self._call("get", self._drained):
                self._reached_end = True
                raise Closed("queue closed")

    async def _read_new(self, client: aioredis.Redis) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply: Any = await client.xreadgroup(
            self.config.group,
            self.consumer,
            {self.stream: ">"},
            count=1,
            block=self.config.block_ms,
        )
        if not reply:
            return []
        entries: list[tuple[bytes, dict[bytes, bytes]]] = reply[0][1]
        return entries

    async def _claim(self) -> Received[T] | None:
        """Take over one entry idle for ``claim_idle_ms`` on any consumer, if there is one."""
        reply = await self._call(
            "claim",
            lambda c: c.execute_command(
                "XAUTOCLAIM",
                self.stream,
                self.config.group,
                self.consumer,
                self.config.claim_idle_ms,
                self._cursor,
                "COUNT",
                1,
            ),
        )
        # Redis 7: [cursor, entries, deleted ids]; Redis 6.2: [cursor, entries], where an
        # entry trimmed away is nil and stays pending.
        self._cursor = _text(reply[0])
        if len(reply) > 2 and reply[2]:
            log.warning(
                "queue %s: %d pending entries had been trimmed (counted as lost)",
                self.stream,
                len(reply[2]),
            )
        dangling = False
        for raw in reply[1]:
            if raw is None or raw[1] is None:
                dangling = True
                continue
            entry_id, fields = raw[0], _pairs(raw[1])
            deliveries = await self._deliveries(entry_id)
            if deliveries is None:
                continue  # acked meanwhile by the slow consumer that had it
            received = await self._accept(entry_id, fields, deliveries)
            if received is not None:
                return received
        if dangling:
            await self._call("sweep", self._sweep_trimmed)
        return None

    async def _deliveries(self, entry_id: bytes) -> int | None:
        rows = await self._call(
            "claim",
            lambda c: c.xpending_range(
                self.stream,
                self.config.group,
                entry_id,
                entry_id,
                1,
                consumername=self.consumer,
            ),
        )
        return int(rows[0]["times_delivered"]) if rows else None

    async def _sweep_trimmed(self, client: aioredis.Redis) -> None:
        """Ack pending ids whose entries are gone (Redis 6.2 keeps them pending forever).

        Trims remove the oldest entries, so those are the ids before the stream's first one.
        Their loss was counted when the put script trimmed them.
        """
        info = await client.xinfo_stream(self.stream)
        first = info.get("first-entry")
        upper = "+" if not first else "(" + _text(first[0])
        rows = await client.xpending_range(self.stream, self.config.group, "-", upper, SWEEP_COUNT)
        ids = [row["message_id"] for row in rows]
        if ids:
            await client.xack(self.stream, self.config.group, *ids)
            log.warning(
                "queue %s: %d pending entries had been trimmed (counted as lost)",
                self.stream,
                len(ids),
            )

    async def _accept(
        self, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int
    ) -> Received[T] | None:
        """The entry as a ``Received``, or None once it has been set aside."""
        if END in fields:
            await self._call("get", lambda c: self._ack_and_delete(c, entry_id))
            self._reached_end = True
            raise Closed("queue closed")
        if deliveries > self.config.max_deliveries:
            await self._dead_letter(entry_id, fields, f"delivered {deliveries} times", deliveries)
            return None
        data = fields.get(DATA)
        try:
            if data is None:
                raise CodecError("no data field")
            item = self.codec.decode(data)
        except CodecError as exc:
            await self._dead_letter(entry_id, fields, f"undecodable: {exc}", deliveries)
            return None
        return Received(item, _text(entry_id))

    async def _dead_letter(
        self, entry_id: bytes, fields: dict[bytes, bytes], reason: str, deliveries: int
    ) -> None:
        """Move the entry to the dead-letter stream with why, and ack it there and then."""
        extra = {
            b"dead:reason": reason.encode(),
            b"dead:entry": entry_id,
            b"dead:deliveries": str(deliveries).encode(),
        }
        flat: list[bytes | str | int] = [v for pair in {**fields, **extra}.items() for v in pair]
        moved = await self._call(
            "dead-letter",
            lambda c: self._scripts["dead"](
                keys=[self.stream, self.dead_stream, self._stats_key],
                args=[self.config.group, entry_id, self.config.dead_maxlen, *flat],
            ),
        )
        if moved:
            log.warning(
                "queue %s: entry %s set aside to %s: %s",
                self.stream,
                _text(entry_id),
                self.dead_stream,
                reason,
            )

    async def _drained(self, client: aioredis.Redis) -> bool:
        """Whether the queue is closed and nothing up to its end marker waits undelivered."""
        end = await client.get(self._closed_key)
        if end is None:
            return False
        groups = await client.xinfo_groups(self.stream)
        last = next(
            (g["last-delivered-id"] for g in groups if _text(g["name"]) == self.config.group),
            b"0-0",
        )
        if _id_key(last) >= _id_key(end):
            return True
        # Not reached by delivery: then the marker must have been trimmed, and only what is
        # left before it (nothing, once delivered) keeps the queue open.
        rest = await client.xrange(self.stream, "(" + _text(last), end, count=1)
        return not rest

    async def ack(self, received: Received[T]) -> None:
        """Mark the item done; call it only once its work is committed to the store."""
        acked = await self._call("ack", lambda c: self._ack_and_delete(c, received.tag))
        self._backlog = max(0, self._backlog - acked)
        if not acked:
            # Taken over by another consumer after claim_idle_ms, or set aside: done twice.
            log.info("queue %s: entry %s was acked already", self.stream, received.tag)

    async def _ack_and_delete(self, client: aioredis.Redis, entry_id: bytes | str) -> int:
        async with client.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.config.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            acked, _ = await pipe.execute()
        return int(acked)

    async def touch(self, tags: Sequence[str]) -> None:
        """Reset the idle time of entries this consumer holds unacked on purpose (the index
        worker's reorder buffer), so no ``get`` takes them over as a dead consumer's, and
        without adding a delivery (``JUSTID``): held long, they are not set aside as poison."""
        if not tags:
            return
        await self._call(
            "touch",
            lambda c: c.xclaim(
                self.stream, self.config.group, self.consumer, 0, list(tags), justid=True
            ),
        )

    async def pending_split(self) -> tuple[int, int]:
        """Entries delivered and not acked: (on this consumer, on the others)."""

        async def read(client: aioredis.Redis) -> tuple[int, int]:
            summary: Any = await client.xpending(self.stream, self.config.group)
            mine = others = 0
            for c in summary.get("consumers") or []:
                if _text(c["name"]) == self.consumer:
                    mine += int(c["pending"])
                else:
                    others += int(c["pending"])
            return mine, others

        return await self._call("stats", read)

    # --- what it holds ----------------------------------------------------------------

    async def stats(self) -> QueueStats:
        """Backlog, pending, dead-lettered and lost counts, read from Redis now."""

        async def read(client: aioredis.Redis) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.xlen(self.stream)
                pipe.xpending(self.stream, self.config.group)
                pipe.hmget(self._stats_key, ["dead", "lost"])
                result: list[Any] = await pipe.execute()
            return result

        length, pending, (dead, lost) = await self._call("stats", read)
        self._backlog = int(length)
        pending_n = int(pending["pending"])
        return QueueStats(
            backlog=self._backlog,
            # Pending ids of trimmed entries (6.2, until swept) are not in XLEN: hence max.
            undelivered=max(0, self._backlog - pending_n),
            pending=pending_n,
            dead_lettered=int(dead or 0),
            lost=int(lost or 0),
        )


def redis_queues(
    url: str,
    prefix: str = "moodring:",
    config: RedisQueueConfig | None = None,
    consumer: str | None = None,
) -> Queues:
    """The pipeline's two queues on Redis Streams: ``<prefix>to_score`` and ``<prefix>to_index``.

    Nothing is contacted until first use; a run that reuses the streams of a closed run calls
    ``reopen()`` on both first.
    """
    return Queues(
        RedisStreamQueue(
            url, "to_score", SCORE_CHUNKS, prefix=prefix, config=config, consumer=consumer
        ),
        RedisStreamQueue(
            url, "to_index", SCORED_CHUNKS, prefix=prefix, config=config, consumer=consumer
        ),
    )
