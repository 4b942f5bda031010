"""Tests for nlp.assets: cashtags, safe aliases and the bundled table."""

from __future__ import annotations

import time

import pytest

from nlp.assets import AssetTable


@pytest.fixture(scope="module")
def table() -> AssetTable:
    return AssetTable.load()


def test_bundled_table_covers_major_coins(table: AssetTable) -> None:
    for symbol in ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "BNB", "SHIB", "LTC", "DOT"):
        assert table.known(symbol)
    for symbol in ("AVAX", "POL", "LINK", "TRX", "TON", "ATOM", "NEAR", "ARB", "OP", "PEPE"):
        assert table.known(symbol)
    assert table.known("usdt") and table.known("USDC") and table.known("UNI")
    assert len(table.names) >= 25
    assert table.name_of("btc") == "Bitcoin"
    assert table.name_of("NOPE") is None
    assert not table.known("SPY")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$BTC to the moon", ("BTC",)),
        ("$btc and $eth", ("BTC", "ETH")),
        ("$ETH.X $BTC.X   They are refusing to make it go above", ("ETH", "BTC")),
        ("#bitcoin is forever, #Ethereum too", ("BTC", "ETH")),
        ("stacking sats, not xbt", ("BTC",)),
        ("Bitcoin Cash is not bitcoin", ("BCH", "BTC")),
        ("shiba  inu and DOGE", ("SHIB", "DOGE")),
        ("$MATIC became polygon", ("POL",)),
        ("$XBT", ("BTC",)),
        ("ETH's merge", ("ETH",)),
    ],
)
def test_extract_known(table: AssetTable, text: str, expected: tuple[str, ...]) -> None:
    assert table.extract(text) == expected


def test_ordinary_words_need_a_cashtag(table: AssetTable) -> None:
    text = "I'll send you the link, one dot near the atom, sol y ada, op uni ton arb pepe"
    assert table.extract(text) == ()
    assert table.extract("$LINK $dot.x $SOL $ADA $NEAR $ATOM $OP") == (
        "LINK",
        "DOT",
        "SOL",
        "ADA",
        "NEAR",
        "ATOM",
        "OP",
    )
    assert table.extract("chainlink and solana and cardano") == ("LINK", "SOL", "ADA")


def test_unknown_cashtags_and_prices(table: AssetTable) -> None:
    assert table.extract("$SPY $QQQ $BTC.X $OGV.X") == ("SPY", "QQQ", "BTC", "OGV")
    assert table.extract("paid $100 for $5k of it, $1.2k now") == ()
    assert table.extract("$A is one letter, $ABCDEFGHIJK is eleven") == ()
    assert table.extract("US$ABC") == ()


def test_unique_in_order_of_first_appearance(table: AssetTable) -> None:
    assert table.extract("eth then $BTC then Ethereum then bitcoin then $SOL") == (
        "ETH",
        "BTC",
        "SOL",
    )


def test_words_need_boundaries(table: AssetTable) -> None:
    assert table.extract("btcusd ethereal bitcoiner") == ()


def test_empty_emoji_and_long_text(table: AssetTable) -> None:
    assert table.extract("") == ()
    assert table.extract("🚀🚀🌕💎🙌") == ()
    long_text = "bitcoin and $ETH and words " * 400  # ~10 kB
    start = time.perf_counter()
    assert table.extract(long_text + "$SOL") == ("BTC", "ETH", "SOL")
    assert time.perf_counter() - start < 0.5
    # Hostile input is cut before matching: a coin named only past 20,000 characters is missed.
    assert table.extract("x " * 20_000 + "$SOL") == ()


def test_from_csv_rejects_bad_rows() -> None:
    with pytest.raises(ValueError):
        AssetTable.from_csv("symbol,name,aliases,ticker_word\nBTC,Bitcoin,bitcoin,maybe\n")
    custom = AssetTable.from_csv("symbol,name,aliases,ticker_word\nFOO,Foo Coin,foo coin,no\n")
    assert custom.extract("foo coin and foo and $FOO") == ("FOO",)
    assert custom.extract("foo") == ()
