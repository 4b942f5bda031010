"""What the pipeline's stages share: its knobs and the seams to sources (the run's counters
are the observer's, ``bot/pipeline/observer.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from connectors.types import Message
from nlp.types import Score

#: How far back the index looks: the 7d window plus its 4-window baseline, and a day spare.
LOOKBACK = timedelta(days=36)


@runtime_checkable
class Acking(Protocol):
    """A source with its own durable inbox: told which messages are now safely stored."""

    def ack(self, messages: Sequence[Message]) -> None: ...


@runtime_checkable
class Resettable(Protocol):
    """A source with in-memory progress (messages handed over, not yet acked) to forget
    before the supervisor restarts it, so they are read again from its durable state."""

    def reset(self) -> None: ...


class ScorerLike(Protocol):
    """What the pipeline needs of a scorer (``nlp.scorer.Scorer`` fits)."""

    def score(self, texts: Sequence[str]) -> list[Score]: ...


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Knobs of one pipeline run."""

    batch_size: int = 256  # messages per intake transaction
    score_chunk: int = 1024  # texts per scorer call: more texts, better length bucketing
    flush_s: float = 0.5  # a quiet source's partial batch is stored after this long
    #: Live runs: a partial scoring chunk is cut once its oldest message waited this long, so
    #: a slow stream is not held back until 1,024 messages arrive (replays cut full chunks only).
    chunk_wait_s: float = 1.0
    #: Live runs: the watermark is never older than the wall clock less this, so a source
    #: streaming old posts cannot hold alerts back; its posts older than that are late.
    lateness_s: float = 120.0
    delivery_s: float = 30.0  # live mode: how often unsent alerts are retried
    #: How long a deliverer's claim on unsent outbox rows lasts without renewal: the
    #: rows of a deliverer that crashed are sent by another after this long.
    outbox_lease_s: float = 300.0
    #: Live chats (no replay): tick on the wall clock too, so quiet hours tick; and alerts
    #: about readings older than ``alert_max_age_s`` by that clock are stored, never sent.
    tick_to_clock: bool = False
    queue_size: int = 64  # in chunks
    tick_s: int = 3600  # readings are stored once per tick of message time
    assets: tuple[str, ...] = ("BTC", "ETH")
    min_asset_mentions: int = 50
    alert_window: str = "24h"
    sinks_targets: tuple[tuple[str, str], ...] = (("console", ""),)
    #: An alert not delivered within this long (wall clock) of being queued is abandoned;
    #: until then a failing send is retried with backoff, however many tries that takes.
    alert_max_age_s: float = 6 * 3600.0
    retention_days: int | None = None  # purge message texts older than this; None keeps them
    #: Chat communities the bot reads ("telegram:-100123", "discord:4567"); messages from
    #: others are dropped at intake (acked, never stored). None: not checked (tests, tools).
    communities: frozenset[str] | None = None
    #: Chat sources the operator calls public ("telegram", "telegram:-100123"): their posts
    #: may be quoted in alerts beyond their own community. X and replays always may.
    public_sources: tuple[str, ...] = ()
    #: Assets alerts may be about besides the coin table, ``assets`` and priced assets.
    alert_assets: tuple[str, ...] = ()
    #: All-sources extreme and hype alerts need breadth (``AlertParams.min_authors``, no
    #: community over half the weight): set when several untrusted communities are read.
    need_breadth: bool = False
    alert_min_authors: int = 10  # effective authors that breadth needs
    #: Most scored messages the index engine holds (``IndexEngine._cap``).
    max_held_rows: int = 1_000_000
    #: The minute alert rules re-read a scope's whole alert window, so a scope with at least
    #: this many messages in it (a firehose: ~14 msgs/min over 24h) is re-evaluated only
    #: once its new messages reach ``dense_share`` of the window, or ``dense_wait_s`` passed
    #: (``IndexEngine.evaluate_minutes``); smaller scopes, every minute with news.
    dense_messages: int = 20_000
    dense_share: float = 0.05
    dense_wait_s: int = 900
    #: Live chats: a reading a command computed (``/mood``, ``/why``, ``/trending``, …) is
    #: reused by the same question within the same ``command_memo_s`` of wall clock, so a busy
    #: group asking every second costs one pass over the window per scope, not one per ask
    #: (``IndexEngine.memo``). 0: every ask computes (replays, tests, tools).
    command_memo_s: float = 0.0


def floor_time(ts: datetime, step_s: int) -> datetime:
    """``ts`` rounded down to a multiple of ``step_s`` seconds (the tick it falls in)."""
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step_s, UTC)
