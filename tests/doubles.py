"""Test doubles for the connectors' two seams: sinks that record, fail or lag, and a list source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from connectors.errors import DeliveryError
from connectors.types import Message, Reply


class RecordingSink:
    """The chat boundary: records what would have been sent, in ``sent``."""

    def __init__(self) -> None:
        self.sent: list[Reply] = []

    async def send(self, reply: Reply) -> None:
        self.sent.append(reply)


class FlakySink(RecordingSink):
    """The chat boundary, with scripted failures.

    Each send raises the next error of ``failures`` (a ``DeliveryError``, with ``retry_after``
    where the platform asked to wait, or a ``RecipientGone``) and drops it from the list; once
    the list is empty, sends are recorded. A test may replace ``failures`` at any time.
    """

    def __init__(self, failures: Iterable[DeliveryError] = ()) -> None:
        super().__init__()
        self.failures: list[DeliveryError] = list(failures)

    async def send(self, reply: Reply) -> None:
        if self.failures:
            raise self.failures.pop(0)
        await super().send(reply)


class SlowSink(RecordingSink):
    """The chat boundary with a network's latency: each send takes a while, and is recorded."""

    def __init__(self, latency_s: float) -> None:
        super().__init__()
        self.latency_s = latency_s

    async def send(self, reply: Reply) -> None:
        await asyncio.sleep(self.latency_s)
        await super().send(reply)


class ListSource:
    """A Source that yields the given Messages in order, as fast as the consumer takes them.

    ``yielded`` counts the messages taken so far. After the first message and every
    ``pause_every``-th one after it, it gives the event loop a turn, as a real source awaiting
    its network now and then does (for ``gap_s`` seconds: a slow stream). With ``until`` it
    stays open once the list is spent, like a live chat gone quiet, and ends when that event
    is set.
    """

    def __init__(
        self,
        messages: Iterable[Message],
        name: str = "list",
        *,
        pause_every: int = 1,
        until: asyncio.Event | None = None,
        gap_s: float = 0.0,
    ) -> None:
        self.name = name
        self.items = list(messages)
        self.pause_every = pause_every
        self.gap_s = gap_s
        self.until = until
        self.yielded = 0

    async def messages(self) -> AsyncIterator[Message]:
        for i, message in enumerate(self.items):
            yield message
            self.yielded += 1
            if i % self.pause_every == 0:
                await asyncio.sleep(self.gap_s)
        if self.until is not None:
            await self.until.wait()
