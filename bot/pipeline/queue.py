"""The queue between pipeline stages: a narrow protocol, in-process by default.

A Redis Streams backend can implement the same three methods later; the stages only ever
``put``, ``get`` and ``close``. Queues are bounded, so a slow stage slows the ones in front
of it (backpressure) instead of letting memory grow.
"""

from __future__ import annotations

import asyncio
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """Raised by ``get`` once the queue is closed and drained."""


class Queue(Protocol[T]):
    """A bounded FIFO between two stages."""

    async def put(self, item: T) -> None: ...

    async def get(self) -> T: ...

    async def close(self) -> None: ...


_END = object()


class InProcessQueue(Generic[T]):
    """``asyncio.Queue`` with a bound and an end marker."""

    def __init__(self, maxsize: int = 1024) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=maxsize)
        self._closed = False

    async def put(self, item: T) -> None:
        if self._closed:
            raise Closed("put on a closed queue")
        await self._queue.put(item)

    async def get(self) -> T:
        item = await self._queue.get()
        if item is _END:
            # Leave the marker for any other consumer.
            self._queue.put_nowait(_END)
            raise Closed("queue closed")
        return item  # type: ignore[return-value]

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._queue.put(_END)

    def qsize(self) -> int:
        return self._queue.qsize()
