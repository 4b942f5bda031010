"""The queues between pipeline stages: a narrow protocol with acks, in-process by default.

A stage ``get``s an item, does its work, commits it to the store, and only then ``ack``s the
item. A backend that keeps unacked items (Redis Streams' pending entries) hands them out again
after a crash; every stage's work is keyed in the store, so doing an item twice is harmless.
Items are plain frozen dataclasses of strings, numbers and timestamps, so they serialise.
Queues are bounded: a slow stage slows the ones in front of it (backpressure) instead of
letting memory grow.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """Raised by ``get`` once the queue is closed and drained."""


@dataclass(frozen=True, slots=True)
class Received(Generic[T]):
    """One item as a consumer got it; ``ack`` it once its work is committed."""

    item: T
    #: The backend's handle for the ack (a Redis Streams entry id; a counter in process).
    tag: str


class Queue(Protocol[T]):
    """A bounded FIFO between two stages, with at-least-once delivery."""

    async def put(self, item: T) -> None: ...

    async def get(self) -> Received[T]: ...

    async def ack(self, received: Received[T]) -> None: ...

    async def close(self) -> None: ...

    def qsize(self) -> int: ...


_END = object()


class InProcessQueue(Generic[T]):
    """``asyncio.Queue`` with a bound, an end marker and ack bookkeeping.

    A crash loses what it holds; the pipeline's start-up recovery re-reads that work from
    the store (unscored messages, unticked time), which is where it was committed.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=maxsize)
        self._closed = False
        self._next = 0
        self._unacked: set[str] = set()

    async def put(self, item: T) -> None:
        if self._closed:
            raise Closed("put on a closed queue")
        await self._queue.put(item)

    async def get(self) -> Received[T]:
        item = await self._queue.get()
        if item is _END:
            # Leave the marker for any other consumer.
            self._queue.put_nowait(_END)
            raise Closed("queue closed")
        self._next += 1
        tag = str(self._next)
        self._unacked.add(tag)
        return Received(item, tag)  # type: ignore[arg-type]

    async def ack(self, received: Received[T]) -> None:
        self._unacked.discard(received.tag)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._queue.put(_END)

    def qsize(self) -> int:
        return self._queue.qsize()

    @property
    def unacked(self) -> int:
        """Items handed out and not yet acked."""
        return len(self._unacked)
