"""The supervisor: one task per connector, restarted with backoff and jitter; a connector's
``Health``, which the pipeline's observer (``bot/pipeline/observer.py``) keeps."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from connectors.retry import backoff_delay, wait_or_stop

if TYPE_CHECKING:  # the observer keeps the health this module defines
    from bot.pipeline.observer import Observer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Health:
    """What the operator sees of one connector.

    ``lag_s`` is how far behind the newest message it handed over was when it arrived (a live
    platform's delivery delay, or how far a replay or a backlog still has to go).
    """

    name: str
    state: str = "starting"  # off | starting | running | backoff | stopped | done | failed
    note: str = ""  # why it is off, or what it is doing
    started_at: datetime | None = None
    last_message_at: datetime | None = None
    messages: int = 0
    errors: int = 0
    restarts: int = 0
    last_error: str = ""
    lag_s: float | None = None
    reads: int = 0  # posts read from a paid API (X) by this process
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with equal jitter (``connectors.retry``) up to ``max_s``.

    A connector that stayed up for ``reset_after_s`` is considered healthy again: its next
    failure waits ``base_s`` once more instead of continuing the old streak.
    """

    base_s: float = 1.0
    max_s: float = 300.0
    factor: float = 2.0
    reset_after_s: float = 120.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """The wait before restart number ``failures`` (1 = the first): a random share of the
        exponential step, so connectors that fell together do not come back in lockstep."""
        return backoff_delay(failures, self.base_s, self.max_s, rng, self.factor)


@dataclass
class Supervisor:
    """Runs connectors side by side; a connector that fails is restarted, the others go on.

    A connector is a coroutine factory: each (re)start calls it for a fresh coroutine. It
    returns when its work is done (a replay that ended) or when ``stopping`` is set; it raises
    when it failed, and is then restarted after ``Backoff.delay``. Cancellation is never
    swallowed.
    """

    observer: Observer  # told of starts, failures and restarts; keeps the health
    stopping: asyncio.Event
    backoff: Backoff = field(default_factory=Backoff)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    max_restarts: int | None = None  # None: keep trying for as long as the bot runs

    async def supervise(self, name: str, start: Callable[[], Awaitable[None]]) -> None:
        """Run ``start()`` until it returns or ``stopping`` is set, restarting it on failure."""
        failures = 0
        events = self.observer
        restarts = events.health(name).restarts
        while not self.stopping.is_set():
            started = self.clock()
            events.on_source_start(name, started)
            try:
                await start()
            except asyncio.CancelledError:
                events.on_source_state(name, "stopped")
                raise
            except Exception as exc:  # any connector failure: log it, wait, restart
                up_s = (self.clock() - started).total_seconds()
                failures = 1 if up_s >= self.backoff.reset_after_s else failures + 1
                text = f"{type(exc).__name__}: {exc}"[:300]
                events.on_source_error(name, text)
                if self.stopping.is_set():  # failed while shutting down: nothing to restart
                    break
                if self.max_restarts is not None and restarts >= self.max_restarts:
                    events.on_source_state(name, "failed")
                    log.error("%s failed for good after %d restarts: %s", name, restarts, text)
                    return
                wait = self.backoff.delay(failures, self.rng)
                restarts += 1
                events.on_source_restart(name, restarts, wait)
                log.warning("%s failed (%s); restart %d in %.1fs", name, text, restarts, wait)
                if not await wait_or_stop(self.stopping, wait):
                    continue
                break
            else:
                events.on_source_state(name, "done" if not self.stopping.is_set() else "stopped")
                return
        events.on_source_state(name, "stopped")


def health_to_json(health: Health) -> str:
    """``health`` as a JSON document (times as ISO 8601), for the store."""
    doc = {}
    for name in Health.__slots__:
        value = getattr(health, name)
        doc[name] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(doc, sort_keys=True)


def health_from_json(text: str) -> Health:
    """The inverse of :func:`health_to_json`; unknown keys (a newer version's) are ignored."""
    doc = json.loads(text)
    kwargs: dict[str, object] = {}
    for name in Health.__slots__:
        if name not in doc:
            continue
        value = doc[name]
        if name in _TIME_FIELDS and value is not None:
            value = datetime.fromisoformat(value)
        kwargs[name] = value
    return Health(**kwargs)  # type: ignore[arg-type]


_TIME_FIELDS = frozenset({"started_at", "last_message_at", "updated_at"})
