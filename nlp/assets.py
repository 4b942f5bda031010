"""Asset extraction: which coins a social post talks about, from cashtags and coin names."""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType

#: Bundled table, shipped as package data of ``nlp``.
_DATA_PACKAGE = "nlp"
_DATA_PATH = "data/assets.csv"

# A cashtag is "$" and 2-10 letters, optionally with StockTwits' ".X" crypto suffix. Letters
# only, so "$100" and "$5k" are prices, never assets. "(?<!\w)" keeps "US$ABC" out.
_CASHTAG = r"(?<!\w)\$(?P<tag>[A-Za-z]{2,10})(?:\.[Xx])?(?![A-Za-z0-9_])"
# Social posts are untrusted; long ones are cut before matching so work stays bounded.
_MAX_CHARS = 20_000


@dataclass(frozen=True, slots=True)
class AssetTable:
    """Known coins and the words that name them.

    Build it with :meth:`load` (the bundled table) or :meth:`from_csv`. ``names`` maps a
    symbol to its display name, ``words`` maps a lower-case bare word (or phrase) to its
    symbol; ``cashtags`` maps lower-case tickers and aliases usable as cashtags to symbols.
    """

    names: Mapping[str, str]
    words: Mapping[str, str]
    cashtags: Mapping[str, str]
    _pattern: re.Pattern[str] = field(repr=False, compare=False)

    @classmethod
    def load(cls) -> AssetTable:
        """Return the table bundled with the package (``nlp/data/assets.csv``), read once per
        process: it is immutable, and every command context and index engine asks for it."""
        return _bundled()

    @classmethod
    def from_csv(cls, text: str) -> AssetTable:
        """Build a table from CSV text with columns ``symbol,name,aliases,ticker_word``.

        ``aliases`` are ``|``-separated words or phrases that always name the coin as bare
        words (so list only unambiguous ones). ``ticker_word`` is ``yes`` when the bare ticker
        is itself safe as a word ("btc"), ``no`` when it is an ordinary English word ("link",
        "dot", "near") and only the cashtag ``$LINK`` counts.

        Raises:
            ValueError: a row lacks a symbol or ``ticker_word`` is not yes/no.
        """
        names: dict[str, str] = {}
        words: dict[str, str] = {}
        cashtags: dict[str, str] = {}
        for row in csv.DictReader(io.StringIO(text)):
            symbol = (row.get("symbol") or "").strip().upper()
            ticker_word = (row.get("ticker_word") or "").strip().lower()
            if not symbol or ticker_word not in {"yes", "no"}:
                raise ValueError(f"bad asset row: {row!r}")
            names[symbol] = (row.get("name") or "").strip() or symbol
            cashtags[symbol.lower()] = symbol
            aliases = [a.strip().lower() for a in (row.get("aliases") or "").split("|")]
            for alias in filter(None, aliases):
                alias = " ".join(alias.split())
                words[alias] = symbol
                if alias.isalpha():
                    # "$XBT" or "$MATIC" should land on the row's symbol, not a new one.
                    cashtags.setdefault(alias, symbol)
            if ticker_word == "yes":
                words[symbol.lower()] = symbol
        # Longest first so "bitcoin cash" wins over "bitcoin" at the same position.
        alternatives = sorted(words, key=len, reverse=True)
        word_re = "|".join(r"\s+".join(map(re.escape, w.split())) for w in alternatives)
        # "#bitcoin" counts: "#" is not a word character, so the boundary holds.
        pattern = _CASHTAG + (rf"|(?<![\w$])(?P<word>{word_re})(?!\w)" if word_re else "")
        return cls(
            names=MappingProxyType(names),
            words=MappingProxyType(words),
            cashtags=MappingProxyType(cashtags),
            _pattern=re.compile(pattern, re.IGNORECASE),
        )

    def extract(self, text: str) -> tuple[str, ...]:
        """Return the symbols ``text`` mentions, unique, in order of first appearance.

        Known cashtags and aliases map to their symbol (``$BTC.X``, ``#bitcoin``, ``sats`` →
        ``BTC``); unknown cashtags of 2-10 letters come back upper-cased without ``.X``.

        Args:
            text: a social post, raw or normalised.
        """
        if not text:
            return ()
        found: dict[str, None] = {}
        for match in self._pattern.finditer(text[:_MAX_CHARS]):
            tag = match.group("tag")
            if tag is not None:
                symbol = self.cashtags.get(tag.lower(), tag.upper())
            else:
                symbol = self.words[" ".join(match.group("word").lower().split())]
            found.setdefault(symbol, None)
        return tuple(found)

    def known(self, symbol: str) -> bool:
        """Return whether ``symbol`` (any case) is a coin of this table."""
        return symbol.upper() in self.names

    def name_of(self, symbol: str) -> str | None:
        """Return the display name of ``symbol`` ("BTC" → "Bitcoin"), or ``None`` if unknown."""
        return self.names.get(symbol.upper())


@functools.cache
def _bundled() -> AssetTable:
    text = resources.files(_DATA_PACKAGE).joinpath(_DATA_PATH).read_text(encoding="utf-8")
    return AssetTable.from_csv(text)
