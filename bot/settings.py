"""One Settings object, built once at start-up from MOODRING_* variables and a TOML file."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.errors import ConfigError
from bot.paths import default_model_dir

#: One entry of ``Settings.operators``: a platform and a user id on it, e.g. "telegram:12345".
OPERATOR_RE = re.compile(r"(telegram|discord):[0-9]{1,20}")

#: One chat source: a platform and a community id on it (or the platform alone, where allowed).
SOURCE_RE = re.compile(r"(telegram|discord)(:-?[0-9]{1,20})?")

#: How much of a bad value an error repeats: enough to find the line, too little to give away
#: a secret pasted into the wrong setting (bot tokens and API keys are 30 characters and more).
SHOWN_CHARS = 12

#: The longest span a duration setting may have (a longer one is no ``timedelta``, or no use).
CENTURY_DAYS = 36_500
CENTURY_S = CENTURY_DAYS * 86_400
#: The shortest wait between polls: shorter ones spin the loop and hammer an API.
MIN_POLL_S = 0.1


def shown(value: str) -> str:
    """A bad value as an error names it: quoted, whole if short, else only its start."""
    return repr(value if len(value) <= SHOWN_CHARS else value[: SHOWN_CHARS - 4] + "…")


def shown_key(key: str) -> str:
    """A table key as an error names it: plain if a short name (``social``), else ``shown``."""
    return key if key.isidentifier() and len(key) <= SHOWN_CHARS else shown(key)


class Settings(BaseSettings):
    """Everything configurable. Environment variables win over the TOML file.

    Secrets are ``SecretStr`` so they never show in a repr or a log line. Numbers are bounded
    where nonsense would break a run rather than be refused at start: a tick of 0 s never
    advances, an infinite age is no ``timedelta``, a poll every 0 s spends the X plan.
    """

    model_config = SettingsConfigDict(env_prefix="MOODRING_", extra="ignore")

    #: A SQLite file (the default), or a PostgreSQL URL (``postgresql://user@host/db``).
    db: Path | str = Path("moodring.db")
    #: PostgreSQL: how long the live bot's store waits for an unreachable server (a restart,
    #: a failover) before the run stops with an error for the service manager to restart.
    db_retry_s: float = Field(default=120.0, gt=0, le=86_400)
    model_dir: Path = Field(default_factory=default_model_dir)
    device: str = "cpu"
    #: Small batches pad less after length sorting (measured in nlp/bench).
    batch_size: int = Field(default=32, ge=1)
    log_level: str = "INFO"
    #: Purge message texts older than this many days; None keeps them (the default).
    retention_days: int | None = Field(default=None, ge=1, le=CENTURY_DAYS)
    #: Clear a raw chat update (the inbox payload: text, username, first name) this many days
    #: after it was processed (checked hourly). The row stays, so it is never handled twice.
    inbox_retention_days: float = Field(default=2.0, ge=0, le=CENTURY_DAYS)
    #: How often (seconds of message time) the index and alert rules run.
    tick_s: int = Field(default=3600, ge=1, le=86_400)  # 0 would never advance
    #: Most scored messages the index holds in memory (about 0.4 KB each past the alert
    #: window; they are held for 36 days, the 7d reading and its baseline). Beyond it the
    #: oldest are let go and baselines count only the windows still held whole.
    max_held_rows: int = Field(default=1_000_000, ge=1000)
    #: Chat commands reuse a reading computed for the same question within this many seconds
    #: (a busy group asking every second must not starve the pipeline); 0 computes each ask.
    command_memo_s: float = Field(default=15.0, ge=0, le=300)
    #: Assets given their own readings even before they trend.
    assets: tuple[str, ...] = ("BTC", "ETH")
    #: Readings for other assets appear once they have this many mentions in 7 days.
    min_asset_mentions: int = 50
    #: Queue bound between stages: intake waits when scoring falls this far behind.
    queue_size: int = Field(default=2048, ge=1)
    #: Messages per scoring chunk (one scorer call): cut by stream position at intake.
    score_chunk: int = Field(default=1024, ge=1, le=65_536)
    #: Stage workers (`moodring worker ROLE`): the Redis Streams between the stages,
    #: ``redis://host:port/db`` (or ``rediss://``, ``unix://``). None: `moodring run` keeps
    #: its in-process queues (the default).
    queue: str | None = None
    #: The prefix of every Redis key moodring makes (two bots may share one Redis).
    queue_prefix: str = Field(default="moodring:", min_length=1, max_length=100)
    #: Seconds an item may stay unacked on a worker before another takes it over as a dead
    #: worker's: above the longest a stage takes over one item (a chunk's scoring).
    queue_claim_idle_s: float = Field(default=120.0, ge=1, le=86_400)
    #: How often unsent alerts are retried (a deliverer's round; the live bot's loop).
    delivery_s: float = Field(default=30.0, ge=MIN_POLL_S, le=86_400)
    #: Seconds a deliverer's claim on an outbox row lasts (renewed before each send): a dead
    #: deliverer's rows go to another this long after it claimed them. Above a send's worst
    #: retries, or a slow send is taken over and may be sent twice.
    outbox_lease_s: float = Field(default=300.0, ge=1, le=86_400)
    #: Seconds a post may be dated ahead of this machine's clock; a replayed row dated later
    #: (or before 2009) is skipped as malformed.
    max_clock_skew_s: float = Field(default=600.0, ge=0, le=CENTURY_S)
    #: Seconds an alert may wait to be delivered (a chat platform down, say) before it is
    #: abandoned as stale; failed sends are retried with backoff until then.
    alert_max_age_s: float = Field(default=6 * 3600.0, ge=1, le=CENTURY_S)
    #: The chat communities the bot reads, "platform:id" (a Telegram group's chat id, a
    #: Discord server id), e.g. ("telegram:-1001234567890", "discord:4567"). Empty: no group
    #: is read, and the bot answers in one with a line naming this setting. X searches and
    #: replays are not communities. Direct messages always work.
    communities: tuple[str, ...] = ()
    #: Chat sources whose posts alerts may quote anywhere: a platform ("telegram") or one
    #: community ("telegram:-1001234567890"). X searches and replays are public already;
    #: other groups' posts are quoted only to that group itself.
    public_sources: tuple[str, ...] = ()
    #: Reverse proxies in front of ``moodring serve`` (IPs or CIDRs, e.g. "10.0.0.0/8"): only
    #: from these is X-Forwarded-For believed, so users behind the proxy each get their own
    #: rate limit while nobody else can pick the address they are limited as.
    trusted_proxies: tuple[str, ...] = ()
    #: Requests one client address may make to the public API per minute (then 429).
    api_rate_per_minute: int = Field(default=120, ge=1, le=1_000_000)
    #: Where users reach ``moodring serve`` (it binds to 127.0.0.1): the start of the links
    #: ``/dashboard`` hands out, e.g. "https://mood.example.org".
    public_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://\S{1,200}$")
    #: Seconds a dashboard link stays valid.
    dashboard_ttl_s: float = Field(default=86_400.0, ge=60, le=CENTURY_S)
    #: The key dashboard links are signed with. None: one is generated into a 0600 file
    #: beside the config file (or in the cache folder), never into the database.
    dashboard_secret: SecretStr | None = None
    #: Assets alerts may be about besides the coin table, ``assets`` and priced assets
    #: (a busy unknown cashtag gets readings but never alerts).
    alert_assets: tuple[str, ...] = ()
    #: Effective authors an all-sources extreme or hype alert needs when several communities
    #: are read (no community may supply more than half of it either).
    alert_min_authors: int = Field(default=10, ge=1)
    telegram_token: SecretStr | None = None
    #: A self-hosted Bot API server (or a test peer), ``http://host:port`` or the same ending in
    #: ``/bot`` (both work: the connector appends ``/bot`` when missing); None = Telegram's own.
    telegram_api_url: str | None = None
    discord_token: SecretStr | None = None
    #: Discord channels to listen to (empty: every text channel the bot can read).
    discord_channel_ids: tuple[int, ...] = ()
    #: Discord role names that count as moderators, besides Manage Server.
    discord_admin_roles: tuple[str, ...] = ()
    #: Discord gateway sharding: None (one connection), a shard count, or "auto" (the count
    #: Discord recommends; required from 2,500 servers on), with ``AutoShardedClient``.
    discord_shards: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] | None = None
    #: Who gets the operator's /status (every connector, X spend and cap, global counts) in a
    #: direct message with the bot: "platform:user_id" entries, the platform's numeric user id,
    #: e.g. ("telegram:12345", "discord:678"). Group admins get their community's part only;
    #: the console and `moodring ask` are the operator anyway.
    operators: tuple[str, ...] = ()
    #: X (Twitter) API v2 app bearer token; X is optional and off without it.
    x_bearer_token: SecretStr | None = None
    #: X recent-search queries, e.g. ("$BTC lang:en -is:retweet", "from:somebody").
    x_queries: tuple[str, ...] = ("($BTC OR #bitcoin) lang:en -is:retweet",)
    #: Seconds between X polls of each query (each poll costs reads).
    x_poll_s: float = Field(default=300.0, ge=MIN_POLL_S, le=CENTURY_S)
    #: Most result pages per poll (up to 100 posts a page).
    x_max_pages: int = Field(default=3, ge=1)
    #: Posts you may read a month on your X plan; polling pauses when it is spent.
    x_monthly_read_cap: int = Field(default=10_000, ge=0)
    #: What X charges per post read, in USD, for the cost meter (set your plan's price).
    x_price_per_read_usd: float = Field(default=0.005, ge=0, allow_inf_nan=False)
    #: ccxt exchange id for prices (e.g. "binance", "kraken"); None leaves prices off.
    price_exchange: str | None = None
    #: Point the exchange client at another base URL (a proxy, or a test peer).
    price_api_url: str | None = None
    #: Assets whose candles are polled, quoted in ``price_quote``.
    price_assets: tuple[str, ...] = ("BTC", "ETH")
    price_quote: str = "USDT"
    #: Seconds between price polls.
    price_poll_s: float = Field(default=60.0, ge=MIN_POLL_S, le=CENTURY_S)
    #: Stooq API key for the reference assets' daily closes (IGV, QQQ, GLD, SPY); without
    #: one, /corr and the backtest use the bundled files (to 2026-07-22).
    quotes_api_key: SecretStr | None = None
    quotes_url: str = "https://stooq.com"
    quotes_symbols: tuple[str, ...] = ("IGV", "QQQ", "GLD", "SPY")
    #: Exchanges whose public liquidation streams are sampled for ``price_assets`` (ccxt ids:
    #: "binanceusdm", "bybit"); empty leaves liquidations off.
    liquidation_exchanges: tuple[Literal["binanceusdm", "bybit"], ...] = ()
    #: Point the liquidation streams at another websocket / REST base (a proxy, a test peer).
    liquidation_ws_url: str | None = None
    liquidation_api_url: str | None = None
    #: Read Deribit's DVOL implied-volatility index for BTC and ETH (public, no key).
    implied_vol: bool = False
    #: Point the Deribit client at another base URL (a proxy, or a test peer).
    deribit_api_url: str | None = None
    #: Seconds between DVOL reads (its hourly bars).
    implied_vol_poll_s: float = Field(default=600.0, ge=MIN_POLL_S, le=CENTURY_S)
    #: The composite's weights by component (volatility, momentum, volume, drawdown, funding,
    #: social); unset ones keep the published defaults (docs/INDEX.md).
    market_weights: dict[str, float] = {}

    #: The TOML file ``load_settings`` was given (a subclass sets it; no process-wide state).
    toml_file: ClassVar[Path | None] = None

    @field_validator("db", mode="before")
    @classmethod
    def _database(cls, value: Any) -> Path | str:
        """A path stays a path; a URL must be PostgreSQL's (anything else is a usage
        error, not a file oddly named "mysql:/host/db")."""
        text = str(value)
        if text.startswith(("postgresql://", "postgres://")):
            return text
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
            scheme = text.split("://", 1)[0]
            raise ValueError(
                f"{scheme}:// is not a database moodring runs on: give a SQLite file path or "
                "a postgresql:// URL"
            )
        return Path(text)

    @field_validator("queue")
    @classmethod
    def _queue_url(cls, value: str | None) -> str | None:
        """A Redis URL; anything else is a usage error (named by its scheme only: the rest
        may hold a password)."""
        if value is None or value.startswith(("redis://", "rediss://", "unix://")):
            return value
        scheme = value.split("://", 1)[0] if "://" in value else ""
        raise ValueError(
            f"{shown(scheme) + ':// is not' if scheme else 'not'} a Redis URL: give"
            " redis://host:6379/0"
        )

    @field_validator("operators")
    @classmethod
    def _operator_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each entry is ``telegram:<digits>`` or ``discord:<digits>`` (user ids, so a
        Telegram channel or group, whose ids are negative, can never be an operator)."""
        for entry in value:
            if not OPERATOR_RE.fullmatch(entry):
                raise ValueError(f"{shown(entry)} is not platform:user_id, e.g. telegram:12345")
        return value

    @field_validator("communities", "public_sources")
    @classmethod
    def _chat_sources(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        """``telegram:<id>`` or ``discord:<id>`` (public_sources may name a whole platform)."""
        for entry in value:
            match = SOURCE_RE.fullmatch(entry)
            if match is None or (info.field_name == "communities" and not match.group(2)):
                raise ValueError(f"{shown(entry)} is not platform:id, e.g. telegram:-1001234567890")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each entry is an IP address or a CIDR network (IPv4 or IPv6)."""
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{shown(entry)} is not an IP or CIDR, e.g. 10.0.0.0/8") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        """A level name logging knows, upper-cased. The value is not echoed: a secret pasted
        into the wrong line must not end up on the terminal."""
        level = value.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError("not a log level: use DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("alert_assets")
    @classmethod
    def _asset_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not re.fullmatch(r"[A-Z0-9]{1,12}", entry):
                raise ValueError(f"{shown(entry)} is not an asset symbol, e.g. BTC")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = cls.toml_file or Path(os.environ.get("MOODRING_CONFIG", "moodring.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if Path(toml_path).is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build the Settings from ``config`` (TOML, default ./moodring.toml), env and overrides.

    Raises:
        FileNotFoundError: ``config`` is not a file.
        ConfigError: the TOML file cannot be read or is not UTF-8 text.
        pydantic.ValidationError, pydantic_settings.SettingsError, tomllib.TOMLDecodeError:
            a setting, or the file, is malformed.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if config is None:
        return _read(Settings, given)
    if not config.is_file():
        raise FileNotFoundError(f"config file not found: {config}")

    class FromFile(Settings):
        """Settings read from ``config``."""

        toml_file: ClassVar[Path | None] = config

    return _read(FromFile, given)


def _read(cls: type[Settings], given: dict[str, Any]) -> Settings:
    """``cls(**given)``, with a settings file that cannot be read as text as a ConfigError
    (tomllib decodes the bytes itself and lets UnicodeDecodeError through)."""
    try:
        return cls(**given)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the TOML settings file is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:  # unreadable: permissions, a folder, a device
        raise ConfigError(f"cannot read the TOML settings file: {exc.strerror}") from None


def config_file(settings: Settings) -> Path | None:
    """The TOML file ``settings`` were read from, or None when there was none."""
    toml = type(settings).toml_file or Path(os.environ.get("MOODRING_CONFIG", "moodring.toml"))
    return toml if toml.is_file() else None
