"""The two seams of the connectors layer: a Source yields Messages, a Sink sends Replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from connectors.types import Message, Reply


@runtime_checkable
class Source(Protocol):
    """Anything that yields Messages: a platform listener, a replayed file.

    ``name`` identifies the source in logs and status output (e.g. ``"replay:demo.csv"``).
    ``messages()`` is an async generator; it may raise ``SourceUnavailable`` when it starts
    or when the platform goes away for good. Rows or payloads that cannot become a Message are
    skipped by the source itself, never raised.
    """

    name: str

    def messages(self) -> AsyncIterator[Message]:
        """Yield Messages as they arrive (or as they are replayed)."""
        ...


@runtime_checkable
class Sink(Protocol):
    """Anything that can deliver a Reply: a chat platform, the console."""

    async def send(self, reply: Reply) -> None:
        """Deliver one reply.

        Raises:
            DeliveryError: the send failed (``retry_after`` set when the platform asked to wait).
            RecipientGone: the recipient blocked the bot or left; do not retry.
        """
        ...
