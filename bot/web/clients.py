"""Who is asking: the client address (X-Forwarded-For only from trusted proxies) and its limit."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from bot.chat.inbox import RateLimiter
from connectors.types import Command

Network = IPv4Network | IPv6Network


def networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """The trusted proxies as networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The address a request is limited as.

    The peer itself, unless it is a trusted proxy: then X-Forwarded-For is read from the
    right (the hops nearest us), skipping trusted proxies, and the first other address is the
    client. Anything left of an untrusted hop could be forged by the client, so it is never
    read, and a header from an untrusted peer is ignored altogether.
    """
    peer_ip = _address(peer or "")
    if peer_ip is None:
        return peer or "unknown"
    if not forwarded_for or not any(peer_ip in n for n in trusted):
        return str(peer_ip)
    for hop in reversed(forwarded_for.split(",")):
        ip = _address(hop)
        if ip is None:
            break  # a garbled hop: trust nothing further left
        if not any(ip in n for n in trusted):
            return str(ip)
    return str(peer_ip)  # only proxies (or garbage): the nearest proxy stands for the client


@dataclass
class ClientLimiter:
    """Requests per client address per minute: the chat's sliding-window ``RateLimiter``
    (bounded, idle keys forgotten) with the address as both user and chat."""

    per_minute: int
    window_s: float = 60.0

    def __post_init__(self) -> None:
        self._limiter = RateLimiter(
            per_user=self.per_minute, per_chat=self.per_minute, window_s=self.window_s
        )

    def allow(self, ip: str, now: float) -> bool:
        """Whether ``ip`` may make one more request at ``now`` (monotonic seconds)."""
        key = Command(platform="web", community="", channel=ip, user=ip, name="api")
        return self._limiter.allow(key, now)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: at most one window, after which its oldest
        counted request has left it."""
        return max(1, round(self.window_s))

    def __len__(self) -> int:
        return len(self._limiter)
