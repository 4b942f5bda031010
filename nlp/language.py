"""Language identification for social posts, with py3langid's bundled model."""

from __future__ import annotations

import re

from py3langid.langid import MODEL_FILE, LanguageIdentifier

# What carries no language: links (raw or normalised to "http"), mentions, cashtags,
# hashtag marks, numbers. Emoji and punctuation fall out because only letters are kept.
_NOISE_RE = re.compile(
    r"(?:https?://|www\.)\S+|\bhttps?\b|(?<![\w$])@\w+|(?<!\w)\$[A-Za-z]{1,10}(?:\.[Xx])?\b",
    re.IGNORECASE,
)
_WORD_RE = re.compile(r"[^\W\d_]+")
# Han, kana and Hangul write words without spaces: count their characters, not runs.
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
# Latin letters, accented ones included (up to Latin Extended-B).
_LATIN_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")

#: Fewest letters a text needs before any language is guessed for it.
MIN_LETTERS = 3
#: Longest text, in characters, that is looked at; the language shows well before that.
MAX_CHARS = 2000


def _letters_only(text: str) -> str:
    return " ".join(_WORD_RE.findall(_NOISE_RE.sub(" ", text[:MAX_CHARS])))


def _word_count(letters: str) -> int:
    cjk = len(_CJK_RE.findall(letters))
    if cjk:
        # Roughly two characters a word in Chinese or Japanese.
        return len(_CJK_RE.sub(" ", letters).split()) + (cjk + 1) // 2
    return len(letters.split())


class LanguageDetector:
    """Guesses the language of a text with py3langid's model over all its languages.

    Loading the model takes a moment; build one detector and share it. Results are
    deterministic: the same text always gives the same answer.
    """

    def __init__(self) -> None:
        """Load py3langid's bundled model, with probabilities normalised to sum to one."""
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def detect(self, text: str | None) -> tuple[str | None, float]:
        """Return the ISO 639-1 code of the language of ``text`` and its probability.

        Links, mentions, cashtags, numbers and emoji are stripped first. A text left with
        fewer than :data:`MIN_LETTERS` letters gives ``(None, 0.0)``.
        """
        letters = _letters_only(text or "")
        if sum(len(w) for w in letters.split()) < MIN_LETTERS:
            return None, 0.0
        language, probability = self._identifier.classify(letters)
        return str(language), float(probability)


def detect_language(text: str | None, detector: LanguageDetector) -> tuple[str | None, float]:
    """Return ``detector``'s guess for ``text``: an ISO 639-1 code (or ``None``) and probability.

    See :meth:`LanguageDetector.detect`.
    """
    return detector.detect(text)


def is_english(
    text: str | None,
    detector: LanguageDetector,
    min_probability: float = 0.9,
    min_words: int = 4,
) -> bool:
    """Return whether ``text`` should be treated as English; lenient by design.

    Crypto slang ("wagmi", "ngmi", "rekt") and short posts confuse any language model, so
    only a confident non-English guess sets a text aside: probability at least
    ``min_probability`` over at least ``min_words`` words of letters. A text of that many
    words written mostly outside the Latin script (Cyrillic, Han, Arabic, ...) is set
    aside whatever the probability: English is not written that way. Everything else,
    including empty and emoji-only text, counts as English.
    """
    letters = _letters_only(text or "")
    if _word_count(letters) < min_words:
        return True
    letter_count = len(letters.replace(" ", ""))
    if len(_LATIN_RE.findall(letters)) * 2 < letter_count:
        return False
    language, probability = detector.detect(letters)
    return language in (None, "en") or probability < min_probability
