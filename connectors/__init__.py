"""Platforms in and out: each module turns one platform's objects into our types and back."""

from connectors.errors import (
    ConnectorError,
    DeliveryError,
    MalformedInput,
    RecipientGone,
    SourceUnavailable,
)
from connectors.types import Command, Message, Reply

__all__ = [
    "Command",
    "ConnectorError",
    "DeliveryError",
    "MalformedInput",
    "Message",
    "RecipientGone",
    "Reply",
    "SourceUnavailable",
]
