"""The supervisor: one task per connector, restarted with backoff and jitter, and its health."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from connectors.retry import backoff_delay, wait_or_stop

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


class HealthBoard:
    """Every connector's health, updated by the supervisor and the stages, saved by the caller.

    Not thread-safe by design: only the event loop's tasks touch it.
    """

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._health: dict[str, Health] = {}

    def get(self, name: str) -> Health:
        """The connector's health (a fresh "starting" one if it was never seen)."""
        return self._health.get(name) or Health(name=name)

    def update(self, name: str, **changes: object) -> Health:
        """Change some fields of ``name``'s health and stamp it."""
        health = replace(self.get(name), updated_at=self._clock(), **changes)  # type: ignore[arg-type]
        self._health[name] = health
        return health

    def off(self, name: str, why: str) -> None:
        """Record that a connector is not started, and why (e.g. no token configured)."""
        self.update(name, state="off", note=why)

    def messages(self, name: str, count: int, newest: datetime) -> None:
        """``count`` messages from ``name`` were stored; the newest was created at ``newest``."""
        now = self._clock()
        h = self.get(name)
        self.update(
            name,
            messages=h.messages + count,
            last_message_at=now,
            lag_s=max((now - newest).total_seconds(), 0.0),
        )

    def snapshot(self) -> list[Health]:
        """Every connector's health, by name."""
        return [self._health[k] for k in sorted(self._health)]


@dataclass
class Supervisor:
    """Runs connectors side by side; a connector that fails is restarted, the others go on.

    A connector is a coroutine factory: each (re)start calls it for a fresh coroutine. It
    returns when its work is done (a replay that ended) or when ``stopping`` is set; it raises
    when it failed, and is then restarted after ``Backoff.delay``. Cancellation is never
    swallowed.
    """

    board: HealthBoard
    stopping: asyncio.Event
    backoff: Backoff = field(default_factory=Backoff)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    max_restarts: int | None = None  # None: keep trying for as long as the bot runs

    async def supervise(self, name: str, start: Callable[[], Awaitable[None]]) -> None:
        """Run ``start()`` until it returns or ``stopping`` is set, restarting it on failure."""
        failures = 0
        restarts = self.board.get(name).restarts
        while not self.stopping.is_set():
            started = self.clock()
            self.board.update(name, state="running", started_at=started, note="")
            try:
                await start()
            except asyncio.CancelledError:
                self.board.update(name, state="stopped")
                raise
            except Exception as exc:  # any connector failure: log it, wait, restart
                up_s = (self.clock() - started).total_seconds()
                failures = 1 if up_s >= self.backoff.reset_after_s else failures + 1
                h = self.board.get(name)
                text = f"{type(exc).__name__}: {exc}"[:300]
                if self.stopping.is_set():  # failed while shutting down: nothing to restart
                    self.board.update(name, errors=h.errors + 1, last_error=text)
                    break
                if self.max_restarts is not None and restarts >= self.max_restarts:
                    self.board.update(name, state="failed", errors=h.errors + 1, last_error=text)
                    log.error("%s failed for good after %d restarts: %s", name, restarts, text)
                    return
                wait = self.backoff.delay(failures, self.rng)
                restarts += 1
                self.board.update(
                    name,
                    state="backoff",
                    errors=h.errors + 1,
                    restarts=restarts,
                    last_error=text,
                    note=f"restarting in {wait:.0f}s",
                )
                log.warning("%s failed (%s); restart %d in %.1fs", name, text, restarts, wait)
                if not await wait_or_stop(self.stopping, wait):
                    continue
                break
            else:
                self.board.update(name, state="done" if not self.stopping.is_set() else "stopped")
                return
        self.board.update(name, state="stopped")


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
