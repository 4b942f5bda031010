"""Errors of the connectors layer.

ConnectorError
 ├── MalformedInput     a row or payload that cannot become a Message (skipped, counted)
 ├── SourceUnavailable  the platform or file cannot be reached or read
 └── DeliveryError      a send failed; ``retry_after`` is set when the platform asked to wait
      ├── RecipientGone the recipient blocked the bot or left: do not retry
      └── Rejected      the platform refused this very message (a bad request): do not retry
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error raised by a connector."""


class MalformedInput(ConnectorError):
    """A row or payload could not be turned into a Message."""


class SourceUnavailable(ConnectorError):
    """The source (platform, file) could not be reached or read."""


class DeliveryError(ConnectorError):
    """Sending a reply failed."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RecipientGone(DeliveryError):
    """The recipient blocked the bot or no longer exists; retrying will not help."""


class Rejected(DeliveryError):
    """The platform refused the message itself (a 400 other than a missing chat): sending the
    same message again fails the same way, so a bounded retry need not try."""
