"""The nlp layer's own types."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Score:
    """Calibrated class probabilities for one text, and the model that gave them."""

    p_neg: float
    p_neu: float
    p_pos: float
    label: str  # "negative" | "neutral" | "positive"
    model_id: str

    @property
    def polarity(self) -> float:
        """P(pos) − P(neg), in [-1, 1]."""
        return self.p_pos - self.p_neg
