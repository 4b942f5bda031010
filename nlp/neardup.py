"""Near-duplicate detection between texts (MinHash LSH), to keep test cases out of training."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

from datasketch import MinHash, MinHashLSH

from nlp.normalize import emoji_to_words, normalize

#: Jaccard similarity of shingle sets at or above which two texts count as near-duplicates.
THRESHOLD = 0.7
NUM_PERM = 128
_WORD_RE = re.compile(r"\w+")


def shingles(text: str) -> set[str]:
    """Word unigrams and bigrams of the text as the model reads it (emoji spelled out).

    Punctuation is left out, so "Bullish AF!" is "bullish af".
    Unigrams matter for the short chat lines of the suite ("gm", "🚀🚀"): bigrams alone
    would give them no shingles at all. Repeats collapse, so "🚀🚀🚀" matches "🚀🚀".
    """
    words = _WORD_RE.findall(emoji_to_words(normalize(text)).lower())
    return set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}


def _minhash(items: set[str]) -> MinHash:
    m = MinHash(num_perm=NUM_PERM, seed=1)
    m.update_batch([item.encode("utf-8") for item in items])
    return m


class NearDuplicateIndex:
    """An index of protected texts (the suite) that answers "is this text too close to one?"."""

    def __init__(self, protected: Iterable[str], threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._shingles: dict[str, set[str]] = {}
        for i, text in enumerate(protected):
            sh = shingles(text)
            if sh:
                key = str(i)
                self._shingles[key] = sh
                self._lsh.insert(key, _minhash(sh))

    def match(self, text: str) -> str | None:
        """Key of a protected text whose exact Jaccard with ``text`` reaches the threshold.

        LSH proposes candidates; the exact Jaccard of the shingle sets confirms them, so
        the answer does not depend on MinHash's estimation error for a confirmed match.
        """
        sh = shingles(text)
        if not sh:
            return None
        for key in self._lsh.query(_minhash(sh)):
            other = self._shingles[key]
            if len(sh & other) / len(sh | other) >= self.threshold:
                return key
        return None

    def filter(self, rows: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
        """``rows`` (text first) without near-duplicates of a protected text, and how many went."""
        kept, dropped = [], 0
        for row in rows:
            if self.match(row[0]) is None:
                kept.append(row)
            else:
                dropped += 1
        return kept, dropped
