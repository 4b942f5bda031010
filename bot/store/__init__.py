"""SQLite storage: the Store, its migrations, and the rows it hands out."""

from bot.store.core import (
    MESSAGE_KEY,
    TICK_CHECKPOINT,
    ScoredRow,
    Store,
    StoredMessage,
    iso,
    parse_ts,
)

__all__ = [
    "MESSAGE_KEY",
    "TICK_CHECKPOINT",
    "ScoredRow",
    "Store",
    "StoredMessage",
    "iso",
    "parse_ts",
]
