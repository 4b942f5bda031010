"""One Settings object, built once at start-up from MOODRING_* variables and a TOML file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.paths import default_model_dir


class Settings(BaseSettings):
    """Everything configurable. Environment variables win over the TOML file.

    Secrets are ``SecretStr`` so they never show in a repr or a log line.
    """

    model_config = SettingsConfigDict(env_prefix="MOODRING_", extra="ignore")

    db: Path = Path("moodring.db")
    model_dir: Path = Field(default_factory=default_model_dir)
    device: str = "cpu"
    batch_size: int = 32  # small batches pad less after length sorting (measured in nlp/bench)
    log_level: str = "INFO"
    #: Purge message texts older than this many days; None keeps them (the default).
    retention_days: int | None = None
    #: How often (seconds of message time) the index and alert rules run.
    tick_s: int = 3600
    #: Assets given their own readings even before they trend.
    assets: tuple[str, ...] = ("BTC", "ETH")
    #: Readings for other assets appear once they have this many mentions in 7 days.
    min_asset_mentions: int = 50
    #: Queue bound between stages: intake waits when scoring falls this far behind.
    queue_size: int = 2048
    #: Seconds a post may be dated ahead of this machine's clock; a replayed row dated later
    #: (or before 2009) is skipped as malformed.
    max_clock_skew_s: float = Field(default=600.0, ge=0)
    #: Seconds an alert may wait to be delivered (a chat platform down, say) before it is
    #: abandoned as stale; failed sends are retried with backoff until then.
    alert_max_age_s: float = Field(default=6 * 3600.0, gt=0)
    telegram_token: SecretStr | None = None
    #: A self-hosted Bot API server (or a test peer), ``http://host:port`` or the same ending in
    #: ``/bot`` (both work: the connector appends ``/bot`` when missing); None = Telegram's own.
    telegram_api_url: str | None = None
    discord_token: SecretStr | None = None
    #: Discord channels to listen to (empty: every text channel the bot can read).
    discord_channel_ids: tuple[int, ...] = ()
    #: Discord role names that count as moderators, besides Manage Server.
    discord_admin_roles: tuple[str, ...] = ()
    #: X (Twitter) API v2 app bearer token; X is optional and off without it.
    x_bearer_token: SecretStr | None = None
    #: X recent-search queries, e.g. ("$BTC lang:en -is:retweet", "from:somebody").
    x_queries: tuple[str, ...] = ("($BTC OR #bitcoin) lang:en -is:retweet",)
    #: Seconds between X polls of each query (each poll costs reads).
    x_poll_s: float = 300.0
    #: Most result pages per poll (up to 100 posts a page).
    x_max_pages: int = 3
    #: Posts you may read a month on your X plan; polling pauses when it is spent.
    x_monthly_read_cap: int = 10_000
    #: What X charges per post read, in USD, for the cost meter (set your plan's price).
    x_price_per_read_usd: float = 0.005
    #: ccxt exchange id for prices (e.g. "binance", "kraken"); None leaves prices off.
    price_exchange: str | None = None
    #: Point the exchange client at another base URL (a proxy, or a test peer).
    price_api_url: str | None = None
    #: Assets whose candles are polled, quoted in ``price_quote``.
    price_assets: tuple[str, ...] = ("BTC", "ETH")
    price_quote: str = "USDT"
    #: Seconds between price polls.
    price_poll_s: float = 60.0
    #: Stooq API key for the reference assets' daily closes (IGV, QQQ, GLD, SPY); without
    #: one, /corr and the backtest use the bundled files (to 2026-07-22).
    quotes_api_key: SecretStr | None = None
    quotes_url: str = "https://stooq.com"
    quotes_symbols: tuple[str, ...] = ("IGV", "QQQ", "GLD", "SPY")
    #: The composite's weights by component (volatility, momentum, volume, drawdown, funding,
    #: social); unset ones keep the published defaults (docs/INDEX.md).
    market_weights: dict[str, float] = {}

    #: The TOML file ``load_settings`` was given (a subclass sets it; no process-wide state).
    toml_file: ClassVar[Path | None] = None

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
    """Build the Settings from ``config`` (TOML, default ./moodring.toml), env and overrides."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if config is None:
        return Settings(**given)
    if not config.is_file():
        raise FileNotFoundError(f"config file not found: {config}")

    class FromFile(Settings):
        """Settings read from ``config``."""

        toml_file: ClassVar[Path | None] = config

    return FromFile(**given)
