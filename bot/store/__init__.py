"""SQLite storage: the Store, its migrations, and the rows it hands out."""

from bot.store.chat import ChatMixin
from bot.store.derivatives import DerivativesMixin, LiquidationHour
from bot.store.market import MarketMixin
from bot.store.messages import MessagesMixin
from bot.store.ops import OpsMixin
from bot.store.privacy import Erasure, PrivacyMixin
from bot.store.readings import ReadingsMixin
from bot.store.rows import (
    MESSAGE_KEY,
    MINUTE_CHECKPOINT,
    TICK_CHECKPOINT,
    ScoredRow,
    StoredMessage,
    iso,
    parse_ts,
)


class Store(
    MessagesMixin,
    MarketMixin,
    DerivativesMixin,
    ReadingsMixin,
    ChatMixin,
    OpsMixin,
    PrivacyMixin,
):
    """The database. Opens (creating if needed), migrates, and offers keyed reads/writes.

    Every write is keyed, so a replay or a restart never duplicates: messages on
    ``(platform, channel, message_id)``, scores on the same key, readings on
    ``(scope, window, at)``, alerts on their dedupe key, outbox rows on
    ``(alert_key, sink, target)``. Writes are spelled as PostgreSQL runs them too
    (``ON CONFLICT`` upserts from ``bot/store/sql.py``, reserved words quoted), so a
    PostgreSQL backend can follow (issue #15). Each section is a mixin in its
    own module; the SQL of the whole bot lives in this package (tests/test_store_owns_sql.py).
    """


__all__ = [
    "MESSAGE_KEY",
    "MINUTE_CHECKPOINT",
    "TICK_CHECKPOINT",
    "Erasure",
    "LiquidationHour",
    "ScoredRow",
    "Store",
    "StoredMessage",
    "iso",
    "parse_ts",
]
