"""The work that travels through the pipeline's queues: chunks to score, chunks scored.

Both are plain frozen dataclasses (our own types, strings, numbers, timestamps), so a queue
backend that serialises them (Redis Streams) can carry them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.store import ScoredRow, StoredMessage, iso, parse_ts
from nlp.types import Score


@dataclass(frozen=True, slots=True)
class ScoreChunk:
    """Stored messages to score in one scorer call, cut at intake by position in the stream.

    The int8 model's scores move slightly with batch-mates, so a message's score must not
    depend on timing: the chunk, not the scorer, decides who shares a call.
    """

    messages: tuple[StoredMessage, ...]
    #: Every message the sources delivered up to this time is in this chunk or an earlier
    #: one (``None``: no source has delivered anything newer than what is already scored).
    watermark: datetime | None
    #: Stage workers: the chunk's place in intake's order (0, 1, 2, … across restarts), so
    #: the index applies chunks in that order however the scorers finish them. ``None`` in
    #: one process, where the queues keep the order themselves.
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A chunk's messages with their scores (those that failed are left out), for the index."""

    rows: tuple[ScoredRow, ...]
    watermark: datetime | None
    #: The ``ScoreChunk.seq`` it was scored from.
    seq: int | None = None


def message_key(item: StoredMessage) -> tuple[str, str, str]:
    """The store's key of a message: (platform, channel, message id)."""
    m = item.message
    return (m.platform, m.channel, m.message_id)


def scored_row(item: StoredMessage, score: Score) -> ScoredRow:
    """What the index needs of ``item`` once scored: the row ``Store.scored_since`` gives."""
    m = item.message
    return ScoredRow(
        key=f"{m.platform}:{m.channel}:{m.message_id}",
        created_at=parse_ts(iso(m.created_at)),  # as stored: whole seconds
        author=m.author or "",
        community=m.community or "",
        platform=m.platform,
        polarity=float(score.p_pos - score.p_neg),
        engagement=int((m.likes or 0) + (m.replies or 0) + (m.reposts or 0)),
        spam=item.spam_reason is not None,
        set_aside=item.set_aside is not None,
        public=bool(m.public),
        text=item.norm_text or "",
        assets=tuple(item.assets),
        reputation=float(item.author_weight),
        model_id=score.model_id or "",
    )
