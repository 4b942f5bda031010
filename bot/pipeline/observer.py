"""One observer for the pipeline's counters and its connectors' health, with sensors.

In the spirit of faust's sensors: the stages, the supervisor and the composition root report
what happened as events (``on_messages``, ``on_scored``, ``on_source_error``, …) to one
:class:`Observer`. It keeps the run's :class:`Counters` and every connector's
:class:`~bot.pipeline.supervisor.Health`, and passes each event on to the sensors
registered with it (the demo's progress bar is one). Readings that are pulled rather than
pushed (the X source's read meter, the price feed's last answer) come from sensors'
``refresh(now)``, which the pipeline calls before it saves the health board.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from bot.pipeline.supervisor import Health

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Counters:
    """The run's counters, for progress and the final report (mutable run state)."""

    seen: int = 0
    added: int = 0
    edited: int = 0
    late: int = 0
    scored: int = 0
    failed: int = 0
    ticks: int = 0
    alerts: int = 0
    delivered: int = 0
    last_time: datetime | None = None
    withheld: int = 0  # messages not stored: their authors asked to be forgotten


class Sensor(Protocol):
    """What is told of the pipeline's events. Every method does nothing by default, so a
    sensor subclasses this and overrides only what it watches.

    Counter events (``on_stored``, ``on_scored``, ``on_failed``, ``on_tick``, ``on_alerts``,
    ``on_delivered``) may come from the stages' worker threads; the others come from the
    event loop. A sensor is told after the observer has updated its own state.
    """

    def on_messages(self, source: str | None, n: int, newest: datetime) -> None:
        """``n`` messages from ``source`` were stored; the newest was created at ``newest``."""
        return None

    def on_stored(self, added: int, edited: int, late: int) -> None:
        """Intake stored ``added`` new messages and ``edited`` edits; ``late`` came late."""
        return None

    def on_scored(self, n: int) -> None:
        """``n`` messages were scored and their scores committed."""
        return None

    def on_failed(self, n: int) -> None:
        """``n`` messages could not be scored and were set aside."""
        return None

    def on_tick(self, ticks: int, last: datetime | None) -> None:
        """The index ran ``ticks`` hourly ticks; ``last`` is its newest tick."""
        return None

    def on_alerts(self, n: int) -> None:
        """``n`` new alerts were raised and stored."""
        return None

    def on_delivered(self, n: int) -> None:
        """``n`` alerts were sent."""
        return None

    def on_source_off(self, name: str, why: str) -> None:
        """Connector ``name`` is not started, and why."""
        return None

    def on_source_start(self, name: str, at: datetime) -> None:
        """The supervisor (re)started connector ``name``."""
        return None

    def on_source_error(self, name: str, error: str) -> None:
        """Connector ``name`` failed with ``error``."""
        return None

    def on_source_restart(self, name: str, restarts: int, wait_s: float) -> None:
        """Connector ``name`` restarts (its ``restarts``-th time) in ``wait_s`` seconds."""
        return None

    def on_source_state(self, name: str, state: str) -> None:
        """Connector ``name`` is now ``state`` (stopped, done, failed)."""
        return None

    def on_reading(
        self,
        name: str,
        *,
        reads: int | None = None,
        errors: int | None = None,
        note: str | None = None,
        last_error: str | None = None,
    ) -> None:
        """A pulled reading of connector ``name``: its paid reads (X), its error count and
        last error, a note on what it is doing; ``None`` leaves a field as it was."""
        return None

    def refresh(self, now: datetime) -> None:
        """Take pull-style readings now (called before the health board is saved)."""
        return None


class Observer(Sensor):
    """Owns the counters and the health board, and fans every event out to its sensors.

    Health is touched only from the event loop (not thread-safe by design); counters are plain
    additions from the stages' threads, for progress and reports rather than accounting.
    """

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self.counters = Counters()
        self._health: dict[str, Health] = {}
        self._sensors: list[Sensor] = []

    # ------------------------------------------------------------------ sensors, snapshots

    def add(self, sensor: Sensor) -> None:
        """Register ``sensor``: it is told of every event from now on."""
        self._sensors.append(sensor)

    def remove(self, sensor: Sensor) -> None:
        self._sensors.remove(sensor)

    def snapshot(self) -> Counters:
        """A copy of the counters (the demo's figures, a log line)."""
        return replace(self.counters)

    def health(self, name: str) -> Health:
        """The connector's health (a fresh "starting" one if it was never seen)."""
        return self._health.get(name) or Health(name=name)

    def health_snapshot(self) -> list[Health]:
        """Every connector's health, by name (what ``moodring status`` shows, once saved)."""
        return [self._health[k] for k in sorted(self._health)]

    def _update(self, name: str, **changes: object) -> Health:
        health = replace(self.health(name), updated_at=self._clock(), **changes)  # type: ignore[arg-type]
        self._health[name] = health
        return health

    # ------------------------------------------------------------------ counter events

    def on_messages(self, source: str | None, n: int, newest: datetime) -> None:
        if source is not None:
            now = self._clock()
            h = self.health(source)
            self._update(
                source,
                messages=h.messages + n,
                last_message_at=now,
                lag_s=max((now - newest).total_seconds(), 0.0),
            )
        self.counters.seen += n
        for s in self._sensors:
            s.on_messages(source, n, newest)

    def on_stored(self, added: int, edited: int, late: int) -> None:
        c = self.counters
        c.added += added
        c.edited += edited
        c.late += late
        for s in self._sensors:
            s.on_stored(added, edited, late)

    def on_withheld(self, n: int) -> None:
        """Intake did not store ``n`` messages: their authors are on the do-not-store list."""
        self.counters.withheld += n

    def on_scored(self, n: int) -> None:
        self.counters.scored += n
        for s in self._sensors:
            s.on_scored(n)

    def on_failed(self, n: int) -> None:
        self.counters.failed += n
        for s in self._sensors:
            s.on_failed(n)

    def on_tick(self, ticks: int, last: datetime | None) -> None:
        self.counters.ticks += ticks
        if ticks:
            self.counters.last_time = last
        for s in self._sensors:
            s.on_tick(ticks, last)

    def on_alerts(self, n: int) -> None:
        self.counters.alerts += n
        for s in self._sensors:
            s.on_alerts(n)

    def on_delivered(self, n: int) -> None:
        self.counters.delivered += n
        for s in self._sensors:
            s.on_delivered(n)

    # ------------------------------------------------------------------ health events

    def on_source_off(self, name: str, why: str) -> None:
        self._update(name, state="off", note=why)
        for s in self._sensors:
            s.on_source_off(name, why)

    def on_source_start(self, name: str, at: datetime) -> None:
        self._update(name, state="running", started_at=at, note="")
        for s in self._sensors:
            s.on_source_start(name, at)

    def on_source_error(self, name: str, error: str) -> None:
        self._update(name, errors=self.health(name).errors + 1, last_error=error)
        for s in self._sensors:
            s.on_source_error(name, error)

    def on_source_restart(self, name: str, restarts: int, wait_s: float) -> None:
        self._update(name, state="backoff", restarts=restarts, note=f"restarting in {wait_s:.0f}s")
        for s in self._sensors:
            s.on_source_restart(name, restarts, wait_s)

    def on_source_state(self, name: str, state: str) -> None:
        self._update(name, state=state)
        for s in self._sensors:
            s.on_source_state(name, state)

    def on_reading(
        self,
        name: str,
        *,
        reads: int | None = None,
        errors: int | None = None,
        note: str | None = None,
        last_error: str | None = None,
    ) -> None:
        fields = {"reads": reads, "errors": errors, "note": note, "last_error": last_error}
        self._update(name, **{k: v for k, v in fields.items() if v is not None})
        for s in self._sensors:
            s.on_reading(name, reads=reads, errors=errors, note=note, last_error=last_error)

    def refresh(self, now: datetime) -> None:
        """Ask every sensor for its pull-style readings; one failing sensor does not stop
        the others (nor the health board's save that follows)."""
        for s in list(self._sensors):
            try:
                s.refresh(now)
            except Exception:
                log.exception("sensor %s failed to refresh", type(s).__name__)


@runtime_checkable
class ReportsSizes(Protocol):
    """A part of the running bot that can say how much in-memory state it holds."""

    name: str

    def state_sizes(self) -> dict[str, int]: ...


def state_line(sizes: Mapping[str, int]) -> str:
    """``{"index_rows": 3, "telegram.limiter": 2}`` → ``"index_rows=3 telegram.limiter=2"``."""
    return " ".join(f"{key}={value}" for key, value in sizes.items())


class StateLog:
    """A periodic job of the live bot: logs the sizes of its long-lived in-memory state
    (``state sizes: index_rows=… spam_kept=… telegram.limiter=…``) at most once per
    ``every``, so a slow leak shows in the log; ``scripts/soak.py`` reads these lines."""

    def __init__(
        self, sizes: Callable[[], Mapping[str, int]], every: timedelta = timedelta(minutes=1)
    ) -> None:
        self.sizes = sizes
        self.every = every
        self._next: datetime | None = None

    async def __call__(self, now: datetime) -> dict[str, int] | None:
        """Log the sizes if due; they are returned too (None when not due)."""
        if self._next is not None and now < self._next:
            return None
        self._next = now + self.every
        sizes = dict(self.sizes())
        log.info("state sizes: %s", state_line(sizes))
        return sizes
