"""Spam marking v0: duplicates, near-duplicates, floods, link-only posts and shill patterns."""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from connectors.types import Message
from nlp import spamtext

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpamConfig:
    """Thresholds of :class:`SpamMarker`.

    Attributes:
        window_s: sliding window, in seconds, of the per-author cap.
        author_cap: messages an author may post within ``window_s``; later ones are marked.
        near_dup_threshold: Jaccard similarity of shingle sets from which a text is a
            near-duplicate of an earlier one.
        dup_window_s: how long, in seconds, a text is remembered for duplicate checks.
        min_dup_words: canonical words a text needs before it can be a duplicate of
            another author's text; "buy the dip" from two people is talk, not spam.
        shingle_k: words per shingle.
        sketch_size: smallest shingle hashes under which a text is indexed for
            near-duplicate candidates.
        max_kept: most texts remembered for duplicate checks, newest kept.
        bucket_cap: most texts kept under one index key, newest kept; bounds the work on
            boilerplate that many posts share.
    """

    window_s: float = 3600.0
    author_cap: int = 8
    near_dup_threshold: float = 0.8
    dup_window_s: float = 6 * 3600.0
    min_dup_words: int = 6
    shingle_k: int = 3
    sketch_size: int = 4
    max_kept: int = 5000
    bucket_cap: int = 64


@dataclass(frozen=True, slots=True)
class _Seen:
    """One remembered text."""

    seq: int
    at: datetime
    fingerprint_key: str
    shingles: frozenset[int]
    sketch: tuple[int, ...]


class SpamMarker:
    """Marks spam in a time-ordered stream of messages, remembering only the recent past.

    :meth:`check` says why a message is spam (or ``None``) and records it. State is bounded
    by time and by :attr:`SpamConfig.max_kept`; the same stream always gives the same marks.
    Texts are compared across every platform and community the marker sees: the same shill
    pasted into five groups is spam in each after the first.
    """

    def __init__(self, config: SpamConfig) -> None:
        """Start with no memory; see :meth:`warm` to rebuild it after a restart."""
        self.config = config
        self._seq = 0
        self._clock: datetime | None = None  # latest message time seen; state never goes back
        self._seen: deque[_Seen] = deque()
        self._by_fingerprint: dict[str, int] = {}  # fingerprint key -> seq of its latest text
        self._entries: dict[int, _Seen] = {}
        self._buckets: dict[int, deque[int]] = {}  # sketch hash -> seqs, oldest first
        # (platform, author) -> times of their recent messages; ordered by last activity
        # so idle authors can be dropped from the front.
        self._authors: OrderedDict[tuple[str, str], deque[datetime]] = OrderedDict()

    def check(self, message: Message, text: str) -> str | None:
        """Return why ``message`` is spam, or ``None``, and remember it.

        Reasons, first match wins: ``"duplicate"`` (same canonical text seen within
        ``dup_window_s``; the first occurrence is not spam), ``"near_duplicate"``,
        ``"author_cap"`` (beyond ``author_cap`` messages within ``window_s``), a shill
        reason of :func:`nlp.spamtext.shill_reason` (it says more than the next), or
        ``"link_only"``.

        Args:
            message: the message; its ``text`` (raw, links intact) feeds the shill check.
            text: the normalised text (see :func:`nlp.normalize.normalize`).
        """
        at = message.created_at
        self._advance(at)
        author_key = (message.platform, message.author)
        words = spamtext.tokens(text)

        reason = self._check_duplicates(author_key, words, at)
        if self._count_author(author_key, at) > self.config.author_cap and reason is None:
            reason = "author_cap"
        if reason is None:
            reason = spamtext.shill_reason(message.text or text)
        if reason is None and spamtext.is_link_only(text):
            reason = "link_only"
        if reason is not None:
            logger.debug("spam %s: %s/%s", reason, message.platform, message.message_id)
        return reason

    def warm(self, messages: Iterable[tuple[Message, str]]) -> None:
        """Rebuild memory from recently stored ``(message, normalised text)`` pairs, in time order.

        Same as calling :meth:`check` on each and discarding the results.
        """
        for message, text in messages:
            self.check(message, text)

    # -- internals -------------------------------------------------------------------------

    def _advance(self, at: datetime) -> None:
        # Streams from several channels interleave slightly out of order; forgetting is
        # driven by the latest time seen so it never runs backwards.
        if self._clock is None or at > self._clock:
            self._clock = at
        clock = self._clock
        while self._seen and (
            len(self._seen) > self.config.max_kept
            or (clock - self._seen[0].at).total_seconds() > self.config.dup_window_s
        ):
            self._forget(self._seen.popleft())
        while self._authors:
            key, times = next(iter(self._authors.items()))
            if (clock - times[-1]).total_seconds() <= self.config.window_s:
                break
            del self._authors[key]

    def _forget(self, seen: _Seen) -> None:
        del self._entries[seen.seq]
        if self._by_fingerprint.get(seen.fingerprint_key) == seen.seq:
            del self._by_fingerprint[seen.fingerprint_key]
        for key in seen.sketch:
            bucket = self._buckets.get(key)
            # Buckets are capped, so this text may already have fallen out of one.
            if bucket and bucket[0] == seen.seq:
                bucket.popleft()
            if bucket is not None and not bucket:
                del self._buckets[key]

    def _check_duplicates(
        self, author_key: tuple[str, str], words: list[str], at: datetime
    ) -> str | None:
        if not words:
            return None
        canonical = " ".join(words)
        long_enough = len(words) >= self.config.min_dup_words
        # A short line is only a duplicate when its own author repeats it.
        scope = "*" if long_enough else "\x1f".join(author_key)
        fingerprint_key = f"{scope}\x1e{spamtext.fingerprint(canonical)}"
        reason: str | None = None
        if fingerprint_key in self._by_fingerprint:
            reason = "duplicate"

        shingles: frozenset[int] = frozenset()
        sketch: tuple[int, ...] = ()
        if long_enough:
            shingles = spamtext.shingles(canonical, k=self.config.shingle_k)
            sketch = spamtext.sketch(shingles, size=self.config.sketch_size)
            if reason is None and self._has_near_duplicate(shingles, sketch):
                reason = "near_duplicate"

        self._remember(fingerprint_key, shingles, sketch, at)
        return reason

    def _has_near_duplicate(self, shingles: frozenset[int], sketch: tuple[int, ...]) -> bool:
        checked: set[int] = set()
        for key in sketch:
            for seq in reversed(self._buckets.get(key, ())):
                if seq in checked:
                    continue
                checked.add(seq)
                other = self._entries[seq].shingles
                if spamtext.jaccard(shingles, other) >= self.config.near_dup_threshold:
                    return True
        return False

    def _remember(
        self,
        fingerprint_key: str,
        shingles: frozenset[int],
        sketch: tuple[int, ...],
        at: datetime,
    ) -> None:
        self._seq += 1
        seen = _Seen(self._seq, at, fingerprint_key, shingles, sketch)
        self._seen.append(seen)
        self._entries[seen.seq] = seen
        self._by_fingerprint[fingerprint_key] = seen.seq
        for key in sketch:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = deque(maxlen=self.config.bucket_cap)
            bucket.append(seen.seq)
        if len(self._seen) > self.config.max_kept:
            self._forget(self._seen.popleft())

    def _count_author(self, author_key: tuple[str, str], at: datetime) -> int:
        """Record one message of the author at ``at``; return their count within the window."""
        times = self._authors.pop(author_key, None)
        if times is None:
            times = deque()
        times.append(at)
        clock = self._clock or at
        while times and (clock - times[0]).total_seconds() > self.config.window_s:
            times.popleft()
        # Only whether the cap is passed matters, so a flood keeps a bounded history.
        while len(times) > self.config.author_cap + 1:
            times.popleft()
        if times:
            self._authors[author_key] = times  # re-inserted at the end: most recently active
        return len(times)
