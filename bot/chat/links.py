"""The dashboard's signed links: tokens bound to a platform, community and user, and the
secret they are signed with (from settings, or a 0600 file beside the config)."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from bot.errors import ConfigError

log = logging.getLogger(__name__)

#: Separates these tokens from anything else the same secret might ever sign.
SALT = "moodring-dashboard-v1"
SECRET_FILE = "dashboard.secret"
DAY_S = 86_400.0


class LinkError(Exception):
    """A dashboard token that does not open the dashboard; ``status`` is the HTTP answer."""

    status = 403


class LinkExpired(LinkError):
    """Signed by us, but older than the links' lifetime: ask for a new one."""

    status = 401


class LinkRefused(LinkError):
    """Tampered with, signed with another secret, revoked, or its user is no moderator now."""


@dataclass(frozen=True, slots=True)
class Grant:
    """Who a valid token lets in, to which community, and when it was issued."""

    platform: str
    community: str
    user: str
    issued: datetime


@dataclass(frozen=True, slots=True)
class DashboardLinks:
    """Makes and checks the dashboard's links. ``secret`` never leaves this process: the
    database holds only revocation times, so a stolen database forges nothing."""

    secret: str
    public_url: str = "http://127.0.0.1:8080"
    ttl_s: float = DAY_S
    #: The wall clock links are issued and revoked by: not the data's "now", which on a
    #: database that is not live (the demo's) is its newest message, years ago.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def _serializer(self, now: datetime) -> URLSafeTimedSerializer:
        # itsdangerous reads the time itself; the clock is injected so tests can expire links.
        at = int(now.timestamp())

        class _At(TimestampSigner):
            def get_timestamp(self) -> int:
                return at

        return URLSafeTimedSerializer(self.secret, salt=SALT, signer=_At)

    def token(self, platform: str, community: str, user: str, now: datetime) -> str:
        """A token for ``user``'s view of ``community`` on ``platform``, issued ``now``."""
        return str(self._serializer(now).dumps([platform, community, user]))

    def url(self, token: str) -> str:
        """Where the dashboard of ``token`` is."""
        return f"{self.public_url.rstrip('/')}/dashboard/{token}"

    def check(self, token: str, now: datetime) -> Grant:
        """The grant ``token`` carries, if signed by us and younger than ``ttl_s``.

        Raises:
            LinkExpired: a genuine token past its lifetime.
            LinkRefused: anything else that is not a genuine token.
        """
        try:
            payload, issued = self._serializer(now).loads(
                token, max_age=int(self.ttl_s), return_timestamp=True
            )
        except SignatureExpired:
            raise LinkExpired("this dashboard link has expired") from None
        except BadSignature:
            raise LinkRefused("this is not a valid dashboard link") from None
        if (
            not isinstance(payload, list)
            or len(payload) != 3
            or not all(isinstance(p, str) for p in payload)
        ):
            raise LinkRefused("this is not a valid dashboard link")
        return Grant(payload[0], payload[1], payload[2], issued.astimezone(UTC))


def secret_file(config: Path | None, cache_dir: Path) -> Path:
    """Where a generated secret is kept: beside the TOML config, else in the cache folder
    (one place for ``moodring ask`` and ``moodring serve`` whatever folder they run in)."""
    return (config.resolve().parent if config is not None else cache_dir) / SECRET_FILE


def load_or_create_secret(path: Path) -> str:
    """The secret in ``path``; a new random one written there (mode 0600) if there is none.

    Never the database: whoever copies the database must not be able to forge links.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s is readable by others (mode %o): chmod 600 it", path, mode)
        return _read_secret(path)
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    log.warning(
        "no dashboard_secret set: generated one in %s (keep it; deleting it voids every link)",
        path,
    )
    return value


def _read_secret(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip()
    if len(text) < 32:
        raise ConfigError(f"{path}: the dashboard secret is too short (delete the file)")
    return text
