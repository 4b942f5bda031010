"""The nlp layer's own types."""

from __future__ import annotations

from dataclasses import dataclass

#: The model's classes, in logit order: bearish, neutral, bullish.
LABELS = ("negative", "neutral", "positive")


@dataclass(frozen=True, slots=True)
class Score:
    """Calibrated class probabilities for one text, and the model that gave them.

    With the market-stance model (``moodring-minilm-l6-stance-v2`` on), the three classes are
    **bearish / neutral / bullish**, the fear or greed a trader reads in the message
    (``models/LABELLING.md``); the names stay ``neg/neu/pos`` so stored scores and older
    models read the same way.
    """

    p_neg: float
    p_neu: float
    p_pos: float
    label: str  # "negative" | "neutral" | "positive" (bearish | neutral | bullish)
    model_id: str

    @property
    def polarity(self) -> float:
        """P(pos) − P(neg), in [-1, 1]."""
        return self.p_pos - self.p_neg
