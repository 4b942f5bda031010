"""The feed connectors wired to the store: X search state and spend, exchange candles."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.status import month_of
from bot.store import Store

log = logging.getLogger(__name__)


class StoreXState:
    """The X source's checkpoints and read meter, kept in the database.

    ``set`` commits before it returns (the source relies on that); reads are counted per
    calendar month (UTC) and the source reads nothing more once ``monthly_cap`` is spent.
    """

    def __init__(
        self,
        store: Store,
        monthly_cap: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.monthly_cap = monthly_cap
        self._clock = clock

    def get(self, key: str) -> str | None:
        value = self.store.checkpoint(key)
        return value or None

    def set(self, key: str, value: str) -> None:
        self.store.set_checkpoint(key, value, self._clock())

    def add_reads(self, n: int) -> None:
        total = self.store.add_usage("x", month_of(self._clock()), n)
        if total >= self.monthly_cap:
            log.warning("x: %d posts read this month, the cap is %d", total, self.monthly_cap)

    def may_read(self) -> bool:
        return self.store.usage("x", month_of(self._clock())) < self.monthly_cap
