"""The delivery stage: unsent outbox rows through their sinks, with per-target caps, quiet
hours, community filters, backoff and the platforms' own retry_after; rows not delivered
within ``alert_max_age_s`` of being queued are abandoned (kept, marked, counted in status)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from bot.pipeline.config import PipelineConfig
from bot.pipeline.observer import Observer
from bot.prefs.community import CommunitySettings
from bot.render import render_alert, render_digest
from bot.store import Store
from bot.types import Alert
from connectors.base import Sink
from connectors.errors import DeliveryError, RecipientGone

log = logging.getLogger(__name__)


class DeliveryStage:
    """Sends what the index stage queued in the outbox; ``sent_at`` right after each send.

    Rows are claimed first (``Store.claim_outbox``, a lease of ``outbox_lease_s``) and each
    claim renewed right before its send, so deliverers sharing a database never send one row
    twice, and the rows of one that died go to the others when its lease ends."""

    store: Store
    sinks: dict[str, Sink]
    config: PipelineConfig
    observer: Observer
    # (sink, target) → not before this time: the platform's retry_after, or backoff.
    _retry_at: dict[tuple[str, str], datetime]
    _failures: dict[tuple[str, str], int]
    _delivering: asyncio.Lock
    #: This process's name on the outbox rows it claims ("host:pid:random"): several
    #: deliverers on one PostgreSQL database each send only what they claimed.
    worker: str

    async def deliver(self, now: datetime | None = None) -> int:
        """Send every unsent outbox row through its sink; ``sent_at`` right after each send.

        Per target: alerts over its daily cap are given up (kept, marked "capped"); during
        its quiet hours they wait, and when those end everything waiting goes as one digest.
        """
        # The index stage and the live delivery loop both deliver: one at a time, or the
        # same unsent row could go out twice before either marks it sent.
        async with self._delivering:
            return await self._deliver(now or datetime.now(UTC))

    async def _deliver(self, now: datetime) -> int:
        sent = 0
        for name, sink in self.sinks.items():
            pending: dict[str, list[Alert]] = {}
            queued: dict[tuple[str, str], datetime] = {}
            claimed = self.store.claim_outbox(
                name, self.worker, now, self.config.outbox_lease_s, limit=1000
            )
            for alert, target, queued_at in claimed:
                pending.setdefault(target, []).append(alert)
                queued[(alert.key, target)] = queued_at
            self._forget_backoff(name, pending)
            if not pending:
                continue  # the usual case: nothing waits, so no need to read the subscribers
            subs = {s.target: s for s in self.store.subscriptions(platform=name) if not s.is_digest}
            for target, alerts in pending.items():
                if self._retry_at.get((name, target), now) > now:
                    continue  # rate limited or backing off: the rows wait, nothing is lost
                sub = subs.get(target)
                held: list[datetime | None] = []
                if sub is not None and sub.is_group:
                    # The community's moderators decide what reaches their group.
                    group = self.store.community_settings(name, sub.community)
                    alerts = self._filter_for_group(name, target, alerts, group, now)
                    if group.quiet_at(now):
                        continue
                    held.append(group.quiet_ended(now))
                if sub is not None and sub.quiet_at(now):
                    continue
                if sub is not None:
                    held.append(sub.quiet_ended(now))
                alerts = self._drop_stale(name, target, alerts, queued, held, now)
                if sub is not None:
                    room = sub.daily_cap - self.store.sent_since(name, target, now - timedelta(1))
                    for alert in alerts[max(room, 0) :]:
                        self.store.give_up(alert.key, name, target, "daily cap", now)
                    alerts = alerts[: max(room, 0)]
                if not alerts:
                    continue
                if sub is not None and sub.quiet_start is not None and len(alerts) > 1:
                    # What waited through quiet hours goes as one digest.
                    sent += await self._send(name, sink, target, alerts, now)
                else:
                    for alert in alerts:
                        sent += await self._send(name, sink, target, [alert], now)
        return sent

    def _forget_backoff(self, name: str, pending: dict[str, list[Alert]]) -> None:
        """Drop the backoff of ``name``'s targets with no row waiting: a target whose rows
        were all sent, abandoned or given up starts afresh next time, and the backoff state
        stays bounded by the outbox page instead of growing with every target that ever
        failed (subscribers come and go)."""
        for key in [k for k in self._retry_at.keys() | self._failures.keys() if k[0] == name]:
            if key[1] not in pending:
                self._retry_at.pop(key, None)
                self._failures.pop(key, None)

    def backoff_held(self) -> int:
        """Targets whose backoff is remembered now."""
        return len(self._retry_at.keys() | self._failures.keys())

    def _drop_stale(
        self,
        name: str,
        target: str,
        alerts: list[Alert],
        queued: dict[tuple[str, str], datetime],
        held: list[datetime | None],
        now: datetime,
    ) -> list[Alert]:
        """The alerts still worth sending; the rest are abandoned, kept and counted.

        Age is wall-clock time since the row was queued, never the alert's message time: a
        replay queues alerts dated years ago and must still deliver them. Checked right
        before every send attempt, so a row that keeps failing is retried until it is too
        old, and one that waited out an outage is sent late rather than dropped. A row held
        through quiet hours on purpose is due from when they ended (``held``).
        """
        max_age = timedelta(seconds=self.config.alert_max_age_s)
        released = max((t for t in held if t is not None), default=None)
        keep: list[Alert] = []
        for alert in alerts:
            due = queued[(alert.key, target)]
            if released is not None:
                due = max(due, released)
            if now - due <= max_age:
                keep.append(alert)
                continue
            log.warning(
                "alert %s to %s on %s abandoned: not delivered within %.0f s of being queued",
                alert.key,
                target,
                name,
                self.config.alert_max_age_s,
            )
            self.store.abandon(alert.key, name, target, now)
        return keep

    def _filter_for_group(
        self,
        name: str,
        target: str,
        alerts: list[Alert],
        group: CommunitySettings,
        now: datetime,
    ) -> list[Alert]:
        keep: list[Alert] = []
        recent = group.cooldown_h and self.store.sent_since(
            name, target, now - timedelta(hours=group.cooldown_h)
        )
        for alert in alerts:
            reason = None
            if not group.alerts:
                reason = "muted by moderators"
            elif not group.wants(alert):
                reason = "below the community's threshold"
            elif recent or (group.cooldown_h and keep):
                reason = "community cooldown"
            if reason is None:
                keep.append(alert)
            else:
                self.store.give_up(alert.key, name, target, reason, now)
        return keep

    async def _send(
        self, name: str, sink: Sink, target: str, alerts: list[Alert], now: datetime
    ) -> int:
        # Alerts about one community name it by its title, not by its id.
        titles = {
            community: self.store.community_title(name, community)
            for community in {a.scope.community for a in alerts} - {"*"}
        }
        reply = (
            render_alert(alerts[0], target, titles)
            if len(alerts) == 1
            else render_digest(alerts, target, titles)
        )
        lease = self.config.outbox_lease_s
        if not all(
            self.store.hold_claim(a.key, name, target, self.worker, now, lease) for a in alerts
        ):
            # The lease ran out while earlier sends were slow and another worker took these
            # rows (or they were sent meanwhile): theirs to send now, not ours.
            log.warning("alerts to %s on %s are claimed by another worker: skipped", target, name)
            return 0
        try:
            await sink.send(reply)
        except RecipientGone as exc:
            log.warning("recipient %s on %s gone (%s): unsubscribing", target, name, exc)
            for alert in alerts:
                self.store.give_up(alert.key, name, target, "gone", now)
            self.store.unsubscribe_target(name, target)
            return 0
        except DeliveryError as exc:
            failures = self._failures.get((name, target), 0) + 1
            self._failures[(name, target)] = failures
            # Exponential backoff (5 s, 10 s, … capped at 15 min), never sooner than the
            # platform's own retry_after (Telegram's and Discord's 429).
            wait = max(exc.retry_after or 0.0, min(900.0, 5.0 * 2 ** (failures - 1)))
            self._retry_at[(name, target)] = now + timedelta(seconds=wait)
            log.warning(
                "delivery to %s on %s failed (%s); next try in %.0f s", target, name, exc, wait
            )
            for alert in alerts:
                self.store.mark_attempt(alert.key, name, target, str(exc))
            return 0
        self._failures.pop((name, target), None)
        # Right after the send: a crash before this line repeats this one message only.
        for alert in alerts:
            self.store.mark_sent(alert.key, name, target, now)
        self.observer.on_delivered(len(alerts))
        return len(alerts)
