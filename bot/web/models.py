"""The API's response shapes (pydantic), from which FastAPI writes the OpenAPI spec."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ScopeOut(BaseModel):
    asset: str
    community: str
    platform: str


class MoodOut(BaseModel):
    """One mood reading: ``value`` is null while the scope is still collecting."""

    scope: ScopeOut
    window: str
    at: datetime
    value: float | None
    band: str
    components: dict[str, float]
    sample_size: int
    confidence: float
    spam_count: int
    set_aside: int
    model_id: str | None
    models: list[str]


class HistoryPoint(BaseModel):
    at: datetime
    value: float | None
    band: str
    sample_size: int
    confidence: float


class HistoryOut(BaseModel):
    scope: ScopeOut
    window: str
    step: str
    points: list[HistoryPoint]


class FngEntry(BaseModel):
    value: str
    value_classification: str
    timestamp: str
    time_until_update: str | None = None


class FngMetadata(BaseModel):
    error: str | None


class FngOut(BaseModel):
    """alternative.me's ``/fng/`` shape."""

    name: str
    data: list[FngEntry]
    metadata: FngMetadata


class LevelOut(BaseModel):
    price: float
    kind: str
    distance_pct: float
    strength: float
    source: str
    touches: int
    note: str


class LevelsOut(BaseModel):
    asset: str
    at: datetime
    price: float
    supports: list[LevelOut]
    resistances: list[LevelOut]


class AlertOut(BaseModel):
    key: str
    kind: str
    scope: ScopeOut
    at: datetime
    title: str
    detail: str
    value: float | None
    previous: float | None
    evidence: list[str]


class AlertsOut(BaseModel):
    alerts: list[AlertOut]


class HealthOut(BaseModel):
    status: str
    live: bool
    as_of: datetime
    newest_message: datetime | None


class ErrorOut(BaseModel):
    error: str
