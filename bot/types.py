"""The bot layer's own types: mood readings, bands and alerts."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

#: Platforms whose sources are communities (groups, servers): read only when the operator
#: allow-lists them, and quoted beyond themselves only when the operator calls them public.
#: Other sources (X searches, replayed files) are the operator's own choice, not communities.
CHAT_PLATFORMS = frozenset({"telegram", "discord"})

#: alternative.me's Fear & Greed bands (upper bounds, inclusive).
BANDS: tuple[tuple[int, str], ...] = (
    (25, "Extreme Fear"),
    (46, "Fear"),
    (54, "Neutral"),
    (75, "Greed"),
    (100, "Extreme Greed"),
)


def band_of(value: float) -> str:
    """The band name of a 0–100 value (rounded to the nearest integer first)."""
    v = round(value)
    for upper, name in BANDS:
        if v <= upper:
            return name
    return BANDS[-1][1]


@dataclass(frozen=True, slots=True)
class Scope:
    """What a reading is about. ``"*"`` means "all" for any field."""

    asset: str = "*"  # "BTC", "ETH", or "*" for every asset
    community: str = "*"
    platform: str = "*"

    def key(self) -> str:
        return f"{self.asset}|{self.community}|{self.platform}"

    def covers(self, community: str, platform: str, assets: Collection[str]) -> bool:
        """Whether a message from ``community`` on ``platform`` naming ``assets`` counts in
        this scope's reading."""
        return (
            (self.asset == "*" or self.asset in assets)
            and (self.community == "*" or community == self.community)
            and (self.platform == "*" or platform == self.platform)
        )


@dataclass(frozen=True, slots=True)
class MoodReading:
    """The mood index of one scope over one window, as of ``at``.

    ``value`` is ``None`` while the scope is still "collecting" (too few messages).
    """

    scope: Scope
    window: str  # "1h" | "24h" | "7d"
    at: datetime
    value: float | None
    band: str  # band_of(value), or "collecting"
    components: dict[str, float] = field(default_factory=dict)
    sample_size: int = 0
    confidence: float = 0.0  # 0..1
    spam_count: int = 0
    set_aside: int = 0  # messages excluded for another reason (e.g. not English)
    #: The models that scored the messages counted; more than one means "mixed models".
    models: tuple[str, ...] = ()

    @property
    def collecting(self) -> bool:
        return self.value is None

    @property
    def mixed_models(self) -> bool:
        """The reading counts messages scored by different models (see ``moodring rescore``)."""
        return len(self.models) > 1


@dataclass(frozen=True, slots=True)
class Alert:
    """A raised alert. ``key`` is its dedupe/idempotency key: the same key is raised once."""

    key: str
    kind: str  # "extreme" | "swing" | "hype" | later "levels" | "divergence"
    scope: Scope
    at: datetime
    title: str
    value: float | None = None
    previous: float | None = None
    detail: str = ""
    evidence: tuple[str, ...] = ()  # short quotes of the messages that drove it
