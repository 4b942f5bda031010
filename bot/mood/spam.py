"""Spam marking: repeats, coordinated shilling, floods, link-only posts, shill patterns, and
how much an author's word counts."""

from __future__ import annotations

import heapq
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from datasketch import MinHash, MinHashLSH

from connectors.types import Message
from nlp import spamtext

logger = logging.getLogger(__name__)

# (platform, author) of a message; an unknown author ("") gets one key per message.
AuthorKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class SpamConfig:
    """Thresholds of :class:`SpamMarker`.

    Attributes:
        window_s: sliding window, in seconds, of the per-author cap.
        author_cap: messages an author may post within ``window_s``; later ones are marked.
        near_dup_threshold: Jaccard similarity of shingle sets from which two texts are
            near-duplicates.
        dup_window_s: how long, in seconds, a text is remembered: an author repeating
            themselves within it is marked.
        coordinated_authors: distinct authors posting the same or a near-same text within
            ``coordinated_window_s`` that make a campaign; the one who completes it and
            every later one are marked.
        coordinated_window_s: the window, in seconds, of a coordinated campaign.
        min_dup_words: canonical words a text needs before it can be a near-duplicate or part
            of a campaign; "buy the dip" from three people is talk, not spam.
        shingle_k: words per shingle.
        num_perm: MinHash permutations per text.
        lsh_bands: LSH bands (``num_perm // lsh_bands`` rows each). Many short bands find
            near-duplicates at ``near_dup_threshold`` almost surely; the extra candidates
            they bring are discarded by an exact Jaccard check.
        seed: MinHash seed; fixed, so marks are the same in every run.
        max_kept: most messages remembered, newest kept; also bounds the texts indexed and
            the authors counted for the cap.
        bucket_cap: most near-duplicate candidates compared per message, newest first;
            bounds the work on boilerplate that many kept texts share.
    """

    window_s: float = 3600.0
    author_cap: int = 8
    near_dup_threshold: float = 0.8
    dup_window_s: float = 6 * 3600.0
    coordinated_authors: int = 3
    coordinated_window_s: float = 1800.0
    min_dup_words: int = 6
    shingle_k: int = 3
    num_perm: int = 32
    lsh_bands: int = 8
    seed: int = 1
    max_kept: int = 5000
    bucket_cap: int = 64

    def __post_init__(self) -> None:
        if self.coordinated_authors < 2:
            raise ValueError("coordinated_authors must be at least 2")
        if not 0 < self.lsh_bands <= self.num_perm:
            raise ValueError("lsh_bands must be between 1 and num_perm")
        if not 0.0 < self.near_dup_threshold <= 1.0:
            raise ValueError("near_dup_threshold must be in (0, 1]")
        if self.max_kept < 1 or self.bucket_cap < 1:
            raise ValueError("max_kept and bucket_cap must be positive")


@dataclass(frozen=True, slots=True)
class _Seen:
    """One remembered message: which text it carried, by whom and when."""

    seq: int
    at: datetime
    author: AuthorKey
    fingerprint: str


@dataclass(slots=True)
class _Posts:
    """How often one author posted one text among the remembered messages, and when last."""

    count: int
    last_at: datetime


@dataclass(slots=True)
class _Text:
    """One remembered canonical text and who posted it (mutable bookkeeping, never shared)."""

    shingles: frozenset[int]
    minhash: MinHash | None  # None: too short for near-duplicate checks, not indexed
    last_seq: int = 0
    authors: dict[AuthorKey, _Posts] = field(default_factory=dict)


def _low32(value: int) -> int:
    # Shingles are already stable 64-bit hashes; MinHash wants 32-bit ones.
    return value & 0xFFFFFFFF


class SpamMarker:
    """Marks spam in a time-ordered stream of messages, remembering only the recent past.

    :meth:`check` says why a message is spam (or ``None``) and records it. Near-duplicates are
    found with MinHash LSH (``datasketch``) and confirmed by exact shingle Jaccard. State is
    bounded by time and by :attr:`SpamConfig.max_kept`; the same stream always gives the
    same marks. Texts are compared across every platform and community the marker sees: the
    same shill pasted by many accounts into many groups is one campaign.
    """

    def __init__(self, config: SpamConfig) -> None:
        """Start with no memory; see :meth:`warm` to rebuild it after a restart."""
        self.config = config
        self._seq = 0
        self._clock: datetime | None = None  # latest message time seen; state never goes back
        self._seen: deque[_Seen] = deque()
        self._texts: dict[str, _Text] = {}  # canonical fingerprint -> its text
        self._lsh = MinHashLSH(
            num_perm=config.num_perm,
            params=(config.lsh_bands, config.num_perm // config.lsh_bands),
        )
        # Copied for each text: the permutations are drawn once from the fixed seed.
        self._empty_minhash = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=_low32)
        # (platform, author) -> times of their recent messages; ordered by last activity
        # so idle authors can be dropped from the front.
        self._authors: OrderedDict[AuthorKey, deque[datetime]] = OrderedDict()
        # Intake checks messages in a worker thread, one flush at a time; the lock keeps a
        # check whole even if a cancelled flush's thread is still finishing.
        self._lock = threading.Lock()

    def check(self, message: Message, text: str) -> str | None:
        """Return why ``message`` is spam, or ``None``, and remember it.

        Reasons, first match wins:

        - ``"duplicate"``: its author posted the same canonical text within ``dup_window_s``
          (the first time is not spam);
        - ``"near_duplicate"``: its author posted a near-same text within ``dup_window_s``;
        - ``"coordinated"``: with this one, ``coordinated_authors`` distinct authors posted
          the same or a near-same text within ``coordinated_window_s``. The earlier ones
          keep their marks: this is a stream, and stored marks are never rewritten;
        - ``"author_cap"``: beyond ``author_cap`` messages within ``window_s``;
        - a shill reason of :func:`nlp.spamtext.shill_reason` ("airdrop", "referral", ...);
        - ``"link_only"``.

        A message with no author (``""``, e.g. a scraped tweet) counts as its own author:
        it is never its own repeat nor capped, and counts as one more account in a campaign.

        Args:
            message: the message; its ``text`` (raw, links intact) feeds the shill check.
            text: the normalised text (see :func:`nlp.normalize.normalize`).
        """
        at = message.created_at
        words = spamtext.tokens(text)
        with self._lock:
            self._advance(at)
            self._seq += 1
            known = bool(message.author)
            author = (message.platform, message.author if known else f"\x00{self._seq}")
            reason = self._check_repeats(author, words, at)
            if known and self._count_author(author, at) > self.config.author_cap:
                reason = reason or "author_cap"
        if reason is None:
            reason = spamtext.text_reason(message.text, text)
        if reason is not None:
            logger.debug("spam %s: %s/%s", reason, message.platform, message.message_id)
        return reason

    def sizes(self) -> dict[str, int]:
        """What the marker holds now: messages kept, distinct texts, authors counted for the
        cap (each at most ``max_kept``)."""
        with self._lock:
            kept, texts, authors = len(self._seen), len(self._texts), len(self._authors)
        return {"kept": kept, "texts": texts, "authors": authors}

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
            len(self._seen) >= self.config.max_kept
            or (clock - self._seen[0].at).total_seconds() > self.config.dup_window_s
        ):
            self._forget(self._seen.popleft())
        while self._authors:
            key, times = next(iter(self._authors.items()))
            if (
                len(self._authors) < self.config.max_kept  # room for this message's author
                and (clock - times[-1]).total_seconds() <= self.config.window_s
            ):
                break
            del self._authors[key]

    def _forget(self, seen: _Seen) -> None:
        entry = self._texts[seen.fingerprint]
        posts = entry.authors[seen.author]
        posts.count -= 1
        if posts.count == 0:
            del entry.authors[seen.author]
        if not entry.authors:
            del self._texts[seen.fingerprint]
            if entry.minhash is not None:
                self._lsh.remove(seen.fingerprint)

    def _check_repeats(self, author: AuthorKey, words: list[str], at: datetime) -> str | None:
        if not words:
            return None
        fingerprint = spamtext.fingerprint(words)
        entry = self._texts.get(fingerprint)
        if entry is None:
            entry = self._new_text(words)
            fresh = True
        else:
            fresh = False

        reason: str | None = None
        if author in entry.authors:
            reason = "duplicate"
        elif entry.minhash is not None:
            similar = [entry, *self._near(fingerprint, entry)]
            if any(author in other.authors for other in similar):
                reason = "near_duplicate"
            else:
                since = at if self._clock is None else self._clock
                since -= timedelta(seconds=self.config.coordinated_window_s)
                if self._campaign_size(similar, author, since) + 1 >= (
                    self.config.coordinated_authors
                ):
                    reason = "coordinated"

        if fresh:
            self._texts[fingerprint] = entry
            if entry.minhash is not None:
                self._lsh.insert(fingerprint, entry.minhash)
        self._remember(fingerprint, entry, author, at)
        return reason

    def _new_text(self, words: list[str]) -> _Text:
        if len(words) < self.config.min_dup_words:
            return _Text(frozenset(), None)
        shingles = spamtext.shingles(words, k=self.config.shingle_k)
        minhash = self._empty_minhash.copy()
        minhash.update_batch(shingles)
        return _Text(shingles, minhash)

    def _near(self, fingerprint: str, entry: _Text) -> list[_Text]:
        """Kept texts other than ``entry`` that are at least ``near_dup_threshold`` alike."""
        keys = [key for key in self._lsh.query(entry.minhash) if key != fingerprint]
        if len(keys) > self.config.bucket_cap:
            # Newest first, by sequence: the choice must not depend on set iteration order.
            keys = heapq.nlargest(self.config.bucket_cap, keys, key=self._last_seq)
        matches = []
        for key in sorted(keys, key=self._last_seq, reverse=True):
            other = self._texts[key]
            if spamtext.jaccard(entry.shingles, other.shingles) >= self.config.near_dup_threshold:
                matches.append(other)
        return matches

    def _last_seq(self, fingerprint: str) -> int:
        return self._texts[fingerprint].last_seq

    def _campaign_size(self, texts: list[_Text], author: AuthorKey, since: datetime) -> int:
        """Distinct authors of ``texts`` other than ``author`` who posted one since ``since``.

        Counting stops once a campaign is certain: boilerplate may have many authors."""
        others: set[AuthorKey] = set()
        for text in texts:
            for key, posts in text.authors.items():
                if key != author and posts.last_at >= since:
                    others.add(key)
                    if len(others) + 1 >= self.config.coordinated_authors:
                        return len(others)
        return len(others)

    def _remember(self, fingerprint: str, entry: _Text, author: AuthorKey, at: datetime) -> None:
        entry.last_seq = self._seq
        posts = entry.authors.get(author)
        if posts is None:
            entry.authors[author] = _Posts(1, at)
        else:
            posts.count += 1
            posts.last_at = max(posts.last_at, at)
        self._seen.append(_Seen(self._seq, at, author, fingerprint))

    def _count_author(self, author: AuthorKey, at: datetime) -> int:
        """Record one message of the author at ``at``; return their count within the window."""
        times = self._authors.pop(author, None)
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
            self._authors[author] = times  # re-inserted at the end: most recently active
        return len(times)


def author_weight(message: Message) -> float:
    """Return how much ``message`` should count in an index, from what the platform tells
    us about its author: 1.0 when it tells us nothing.

    The weight is the product of an age factor and a followers factor:

    =============================================  =======
    account age when the message was posted        factor
    =============================================  =======
    under 7 days (or created "after" the message)  0.25
    7 to under 30 days                             0.5
    30 days or more, or not told                   1.0
    =============================================  =======

    ===========================  =======
    followers                    factor
    ===========================  =======
    under 10                     0.5
    10 or more, or not told      1.0
    ===========================  =======

    So a day-old account with 3 followers weighs 0.125. Nothing raises a weight above 1.0:
    neither a verified badge (on X it can be bought) nor a large following, so that a few
    loud accounts cannot dominate the index.

    Args:
        message: the message, with ``author_created_at`` (naive means UTC) and
            ``author_followers`` where the platform gives them.
    """
    weight = 1.0
    created = message.author_created_at
    if created is not None:
        if created.tzinfo is None or created.utcoffset() is None:
            created = created.replace(tzinfo=UTC)  # platforms give UTC; a naive time is UTC
        age = message.created_at - created
        if age < timedelta(days=7):
            weight *= 0.25
        elif age < timedelta(days=30):
            weight *= 0.5
    if message.author_followers is not None and message.author_followers < 10:
        weight *= 0.5
    return weight
