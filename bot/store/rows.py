"""What the store hands out and keys on: timestamps as text, message and alert rows."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.mood.index import Point
from bot.types import CHAT_PLATFORMS, Alert, Scope
from connectors.types import Message

MESSAGE_KEY = ("platform", "channel", "message_id")

#: The checkpoint holding the index's last tick (message time).
TICK_CHECKPOINT = "index_tick"
#: The newest minute the alert rules evaluated (readings stay hourly, alerts run per minute).
MINUTE_CHECKPOINT = "alerts_minute"
#: ``outbox.given_up`` of a row abandoned because it was not delivered within
#: ``alert_max_age_s`` of being queued (the count ``moodring status`` and ``/status`` show).
TOO_OLD = "too old"


def iso(ts: datetime) -> str:
    """A UTC timestamp as sortable ISO text (``2022-06-25T13:39:06+00:00``)."""
    return ts.astimezone(UTC).isoformat(timespec="seconds")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message row with what intake worked out about it."""

    message: Message
    norm_text: str
    assets: tuple[str, ...]
    spam_reason: str | None
    set_aside: str | None
    author_weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ScoredRow:
    """What the index needs of one scored message."""

    key: str
    created_at: datetime
    author: str
    community: str
    platform: str
    polarity: float
    engagement: int
    spam: bool
    set_aside: bool
    public: bool
    text: str
    assets: tuple[str, ...]
    reputation: float = 1.0
    model_id: str = ""

    def to_point(self, public_sources: Collection[str] = ()) -> Point:
        """The index's view of this message: quotable beyond its community only if its
        source is public and, for a chat group, the operator lists it or its platform in
        ``public_sources`` (a Telegram group with a username is public to Telegram, not to
        moodring: its members did not post for other groups)."""
        public = self.public
        if public and self.platform in CHAT_PLATFORMS:
            public = (
                self.platform in public_sources
                or f"{self.platform}:{self.community}" in public_sources
            )
        return Point(
            created_at=self.created_at,
            author=self.author,
            polarity=self.polarity,
            engagement=self.engagement,
            spam=self.spam,
            set_aside=self.set_aside,
            message_key=self.key,
            text=self.text,
            public=public,
            community=self.community,
            platform=self.platform,
            reputation=self.reputation,
            model_id=self.model_id,
            n_assets=max(1, len(self.assets)),
        )


ALERT_COLUMNS = "a.key, a.kind, a.scope, a.at, a.title, a.detail, a.value, a.previous, a.evidence"


def alert_from_row(r: Sequence[Any]) -> Alert:
    """An ``Alert`` from the first nine columns of a row selected with ``ALERT_COLUMNS``."""
    asset, community, platform = r[2].split("|")
    return Alert(
        key=r[0],
        kind=r[1],
        scope=Scope(asset, community, platform),
        at=parse_ts(r[3]),
        title=r[4],
        detail=r[5] or "",
        value=r[6],
        previous=r[7],
        evidence=tuple(json.loads(r[8] or "[]")),
    )
