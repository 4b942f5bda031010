"""The connectors layer's own types: what comes in from a platform and what goes out to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Message:
    """One social post, as any platform connector hands it on.

    ``(platform, channel, message_id)`` identifies it; ``created_at`` is timezone-aware UTC.
    """

    platform: str  # "telegram", "discord", "x", "stocktwits", "replay", ...
    community: str  # a Telegram chat, a Discord server, a StockTwits stream
    channel: str
    message_id: str
    author: str
    text: str
    created_at: datetime
    likes: int = 0
    replies: int = 0
    reposts: int = 0
    language: str | None = None
    public: bool = True  # may be quoted outside its own community
    tag: str | None = None  # the author's own label where a platform has one (StockTwits)
    # What the platform tells us about the author, for spam and weighting (None: not told).
    author_followers: int | None = None
    author_created_at: datetime | None = None  # when the account was made
    author_verified: bool | None = None
    # The community's name as the platform shows it (a group's title, a server's name), so
    # replies can name it; "" where the platform gives none.
    community_title: str = ""

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("Message.created_at must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Command:
    """A chat command addressed to the bot: ``/name arg1 arg2`` by ``user`` in ``channel``."""

    platform: str
    community: str
    channel: str
    user: str
    name: str
    args: tuple[str, ...] = ()
    roles: frozenset[str] = field(default_factory=frozenset)  # e.g. {"admin"}
    is_private: bool = False  # sent in a direct message
    #: Who wrote the message this command answers (a Telegram reply); None when it is none.
    reply_to_author: str | None = None
    community_title: str = ""  # the group's or server's name; "" in a DM or when not given


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bot sends back: text, an optional PNG image, and where it goes."""

    text: str
    target: str = ""  # a channel or user id on the platform; "" means "where it came from"
    image: bytes | None = None
    image_name: str = "chart.png"


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar of ``asset`` (e.g. "BTC") quoted in USD or a USD stablecoin.

    ``ts`` is the bar's *open* time, timezone-aware UTC; ``interval`` is "1h" or "1d". A bar is
    known only once it has closed, at ``ts + interval``.
    """

    asset: str
    interval: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None or self.ts.utcoffset() is None:
            raise ValueError("Candle.ts must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Ticker:
    """An exchange's latest view of ``asset``: price, 24h change and, for perpetual swaps,
    funding and open interest (``None`` where the exchange does not give them)."""

    asset: str
    at: datetime
    last: float
    change_24h_pct: float | None = None
    volume_24h: float | None = None
    funding_rate: float | None = None  # per 8 h (restated if the exchange settles oftener)
    open_interest: float | None = None  # in USD where the exchange says so
    source: str = ""


@dataclass(frozen=True, slots=True)
class SlashParam:
    """One option of a slash command: its name, what to type, and its fixed choices if any."""

    name: str
    description: str
    required: bool = False
    choices: tuple[str, ...] = ()  # empty: free text


@dataclass(frozen=True, slots=True)
class SlashSpec:
    """A slash command as a platform publishes it: name, description and options in the order
    their values become the Command's arguments (required ones first, as Discord wants)."""

    name: str
    description: str
    params: tuple[SlashParam, ...] = ()

    def __post_init__(self) -> None:
        required = [p.required for p in self.params]
        if required != sorted(required, reverse=True):
            raise ValueError(f"/{self.name}: required options must come before optional ones")


@dataclass(frozen=True, slots=True)
class Liquidation:
    """One forced liquidation an exchange published on its public stream.

    ``side`` is the side of the *position* that was liquidated: "long" (the exchange sold to
    close it) or "short" (it bought). ``event_id`` is stable for one event, so a duplicate
    frame or a replay after a reconnect is stored once.
    """

    exchange: str  # the ccxt id: "binanceusdm", "bybit"
    symbol: str  # the exchange's unified symbol, e.g. "BTC/USDT:USDT"
    asset: str  # "BTC"
    side: str  # "long" | "short"
    price: float
    amount: float  # in the asset
    notional_usd: float
    at: datetime
    event_id: str

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("Liquidation.at must be timezone-aware")
        if self.side not in ("long", "short"):
            raise ValueError(f"Liquidation.side must be long or short, not {self.side!r}")


@dataclass(frozen=True, slots=True)
class StreamGap:
    """A stretch when a live stream was not connected: what happened in it was not seen.

    Reported (``moodring status``), never filled in."""

    source: str  # e.g. "liquidations:binanceusdm"
    since: datetime
    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class VolatilityIndex:
    """One bar of an implied-volatility index (Deribit's DVOL), in annualised percent."""

    asset: str
    interval: str  # "1h" | "1d"
    ts: datetime  # the bar's open time
    open: float
    high: float
    low: float
    close: float
    source: str = "deribit"
