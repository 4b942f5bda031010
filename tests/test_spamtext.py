"""Tests for nlp.spamtext: canonical form, fingerprints, shingles and shill patterns."""

from __future__ import annotations

import pytest

from nlp.normalize import normalize
from nlp.spamtext import (
    canonical,
    fingerprint,
    is_link_only,
    jaccard,
    shill_reason,
    shingles,
    tokens,
)


def test_canonical_drops_noise_and_keeps_cashtags() -> None:
    text = "GM @satoshi!! $BTC.X to 100k 🚀🚀 https://t.co/abc #HODL"
    assert canonical(text) == "gm $btc to k hodl"
    assert canonical("  Привет,   мир! ") == "привет мир"
    assert canonical("") == "" and canonical(None) == ""
    assert tokens("$ETH.X pump") == ["$eth", "pump"]


def test_canonical_is_the_same_for_raw_and_normalised_text() -> None:
    raw = "@whale_alert Big move on $ETH https://t.co/xyz 🐳"
    assert canonical(raw) == canonical(normalize(raw)) == "big move on $eth"


def test_fingerprint_groups_trivial_variants() -> None:
    a = "Hey I joined a network called SurveyJ and earned $1,850 today! https://t.co/a"
    b = "hey i joined a network called surveyj and earned $2,384 today https://t.co/b"
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint("a different post entirely")
    assert len(fingerprint(a)) == 16
    # Stable across processes: blake2b, not Python's salted hash().
    assert fingerprint("gm") == "0fcc254cdabedd1f"
    assert fingerprint("gm") == fingerprint("GM!!")


def test_shingles_and_jaccard() -> None:
    a = shingles("this project is too perfect to be true, a very cool and innovative project")
    b = shingles("this project is too perfect to be true, a very cool and innovative team")
    c = shingles("longs got rekt again, funding was way too high")
    assert len(a) == 12
    assert 0.8 < jaccard(a, b) < 1.0
    assert jaccard(a, c) == 0.0
    assert jaccard(a, a) == 1.0
    assert jaccard(frozenset(), frozenset()) == 0.0
    assert shingles("") == frozenset()
    assert len(shingles("buy the dip")) == 1
    assert shingles("same words here ok", k=2) == shingles("Same, words: here OK!", k=2)
    with pytest.raises(ValueError):
        shingles("x", k=0)


def test_fingerprint_and_shingles_take_tokens_too() -> None:
    text = "GM @satoshi!! $BTC.X to 100k 🚀🚀 https://t.co/abc #HODL and more words"
    words = tokens(text)
    assert fingerprint(words) == fingerprint(text)
    assert shingles(words, k=2) == shingles(text, k=2)


@pytest.mark.parametrize(
    "text",
    [
        "$ETH.X",
        "$BTC.X $ETH.X $DOGE.X ..",
        "https://t.me/webofliesentry 🕷",
        "@user @user http",
        "$ETH.X 🚀🚀 1200",
    ],
)
def test_link_only(text: str) -> None:
    assert is_link_only(text)


@pytest.mark.parametrize("text", ["", "   ", "$ETH.X pump", "gm", "🚀 to the moon", "#bitcoin"])
def test_not_link_only(text: str) -> None:
    assert not is_link_only(text)


# Real posts (trimmed) from the 2021 crypto tweets and the 2022 StockTwits streams.
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "@litecoinmini This is definitely going to be GREAT!\n@alam151986\n@Hridoy62871267\n"
            "#airdrop #bsc #binance #ethereum #bitcoin",
            "airdrop",
        ),
        (
            "@inheritcoin Very good project, Thank you for holding this airdrop event\n\n"
            "@FaraLestari36 @EliciaFaren @tuhanseven",
            "airdrop",
        ),
        (
            "Giving away a Bitcoin instead of a Turkey for Thanks Giving. To Win a #Bitcoin hit "
            "the button below. Winner will be chosen at the end.",
            "giveaway",
        ),
        (
            "It is a cool annual giveaway !\n1oooooooo DOGE 5ooo BTC will be distributed among "
            "everyone who takes part",
            "giveaway",
        ),
        (
            "$BTC.X $ETH.X $SHIB.X get some welcome bonus https://www.huobi.ug/en-us/v/register/"
            "double-invite/?invite_code=3suy2223&inviter_id=11345710",
            "referral",
        ),
        ("$ETH.X oh weeee…referral code for moomoo RANH6TAM", "referral"),
        ("$ETH.X https://link.cashandgo.co/u/chevy1820 Use my link get cash $$", "referral"),
        (
            "$ETH.X $1800 into $54k in the last 30 days. If you really want to make huge profits "
            "on trading then, Join this winning chat: stock-alerts.66ghz.com",
            "pump_group",
        ),
        (
            "Join us and buy the coin before it gets pumped. Coin will be announced on telegram. "
            "#cryptopump #btc",
            "pump_group",
        ),
        ("#SPOT #BTC #Binance Join Our VIP SIGNALS channel NOW, PM ME!", "pump_group"),
        ("$ETH.X Join his telegram, WILL NOT REGRET 100X Gems t.me/Hussicles", "invite_link"),
        (
            "RoI 10-30% daily (E.g invest $1k earn 30% which $300 daily)\nDm me for more details",
            "dm_me",
        ),
        (
            "$OGN.X Airdrop is coming for $OGN Get free $OGV if you have 1000 $OGN",
            "free_crypto",
        ),
        ("Free Bitcoin $200 & Betting & Casino, Lottery, Daily Interest. #bitcoin", "free_crypto"),
        ("Presale is live now! Contract address for FeeLess Trade", "presale"),
        # v1 patterns, each from crypto_tweets_2021.
        (
            "Christmas came early! 🎄🎁❄️☃️\n\nThe Restore Token airdrop is live!\nThe next "
            "generation of passive issuance that is on… https://t.co/oakyDrS3Vj",
            "airdrop",
        ),
        (
            "@GemBitesCom @ZHOU79031149 @fanfan3333 @shuilanhua186 \nGreat project! Hope it's "
            "awesome!\n#cryptocurrency #bitcoin #btc #crypto #bounty  #ethereum #ICO #eth",
            "airdrop",
        ),
        (
            "@CryptoTownEU Very good project🚀🚀🌙\n\n@pitbull696bkru1 \n@DatinZehra_ \n"
            "@qingshen99 \n\n#spaceDEX #BTC #Crypto",
            "airdrop",
        ),
        (
            "I found #bitcoin in a User vault at this location! Join me playing #coinhuntworld, "
            "It's awesome! https://t.co/7wIWmxSpFP #cryptocurrency #20734",
            "referral",
        ),
        (
            "Join Honey share your bandwidth securely and earn crypto! $5 FREE WITH THIS LINK - "
            "https://t.co/H2Sm3Wg6pQ #Honey #BTC #STEEM #honey",
            "referral",
        ),
        (
            "#linkedin #twitter #facebook #makemoney #affiliatemarketing Check my #website "
            "#makemoney #earnmoney #crypto #shopping #travel #business #bitcoin",
            "referral",
        ),
        (
            "Start investing in crypto with Voyager. Download the app and trade $100 to get $25 "
            "of free #Bitcoin. #BTC $BTC… https://t.co/Jef3BEgClY",
            "free_crypto",
        ),
        (
            "SIGN UP FOR #FREEMINING !!\n\n- Claim daily #bitcoin !\n- Daily freespins !",
            "free_crypto",
        ),
        (
            "#EARN #cryptocurrencies #Bitcoin #btc #BitcoinCash #Ethereum #Litecoin claim every 5 "
            "minutes https://t.co/SU8NujcAeo",
            "claim",
        ),
        (
            "Are you a big fan of @PancakeSwap?\n\nGive us a chance to stake Pancake on our ∞ "
            "Vaults \nand claim your #BTC with high APY 🚀",
            "claim",
        ),
        (
            "Saving is good but investing is great. . .Invest In yourself by trading Forex today\n"
            "It’s definitely the best way to earn more, DM now for more info\n#binary #bitcoin",
            "dm_me",
        ),
        (
            "Goodnews\n Join $2,000 challenge to $8,000 target in the next ,1 weeks+. Send me a "
            "📲DM if you want to be a part of this, & for more information",
            "dm_me",
        ),
        # Wallet drainers (the phrasing of the phishing replies under exchange posts).
        ("Sorry for the trouble, connect your wallet here to rectify the issue", "wallet_connect"),
        ("Support: validate your Trust wallet to unlock the withdrawal", "wallet_connect"),
        ("To receive the refund, enter your seed phrase on the form", "wallet_connect"),
    ],
)
def test_shill_reason_on_real_spam(text: str, reason: str) -> None:
    assert shill_reason(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "I'm giving up on ETH",
        "$BTC.X in free fall, longs got rekt",
        "ARB airdrop dumped hard lol",
        "What is a crypto airdrop and how does it work? "
        "https://www.billionaireclubcollc.com/what-is-a-crypto-airdrop-and-how-does-it-work/",
        "$ETH.X next pump is imminent",
        "$ETH.X pump & dump",
        "$ETH.X why it pump?",
        "Bexplus Exchange Announces $5,000 Giveaway for New Users https://x.com/a",
        "Gnox (GNOX) Presale Phase 2 Sold Out",
        "I'll message you later about the chart",
        "free market capitalism is why I hold $BTC",
        "buy the dip",
        "",
        # Real users asking about airdrops, claims and wallets are not shilling.
        "Is the airdrop real?",
        "How do I claim the ARB airdrop? The site keeps timing out",
        "Did anyone actually claim their airdrop yet or is it all bots",
        "Never enter your seed phrase anywhere, support will not DM you first",
        "I've created a wallet on metamask. Now what. Lol",
        "Looking forward to discussing @GryphonMining's role in building a 100%-carbon free "
        "#bitcoin mining world. https://t.co/Tw2TIN88Fp",
        "Crypto exchange CoinFlex claims Roger Ver is behind $47 million debt",
        "Great project, but the team sold the top. @anna @ben what do you think",
    ],
)
def test_shill_reason_leaves_ordinary_talk(text: str) -> None:
    assert shill_reason(text) is None


def test_shill_reason_on_normalised_text_misses_only_link_signs() -> None:
    raw = "$ETH.X https://t.me/shibshiberc. 💎💎"
    assert shill_reason(raw) == "invite_link"
    assert shill_reason(normalize(raw)) is None
    assert shill_reason(normalize("#airdrop claim now https://t.co/x")) == "airdrop"
