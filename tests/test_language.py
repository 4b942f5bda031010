"""Tests for nlp.language: py3langid detection and the lenient English check."""

from __future__ import annotations

import pytest

from nlp.language import LanguageDetector, detect_language, is_english


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("El bitcoin va a subir mucho esta semana, estoy muy contento", "es"),
        ("Der Bitcoin Kurs ist heute stark gefallen und ich habe Angst", "de"),
        ("Биткоин сегодня сильно упал, я продал все свои монеты", "ru"),
        ("比特币今天大涨，我买了很多", "zh"),
        ("Bitcoin est en train de monter, c'est génial pour nous tous", "fr"),
    ],
)
def test_foreign_sentences_are_detected_and_set_aside(
    detector: LanguageDetector, text: str, language: str
) -> None:
    code, probability = detect_language(text, detector)
    assert code == language
    assert 0.5 < probability <= 1.0
    assert not is_english(text, detector)


def test_english_sentence(detector: LanguageDetector) -> None:
    code, probability = detector.detect("The market is going down hard today and I am worried")
    assert code == "en" and probability > 0.9


@pytest.mark.parametrize(
    "text",
    [
        "wagmi hodl $BTC to the moon 🚀",
        "longs got rekt lol",
        "ngmi",
        "buy the dip",
        "gm gm fam, lfg",
        "pump it dump it rekt ser wen lambo",
        "hodl hodl hodl hodl",
        "ser this is a casino not a bank",
        "$ETH.X 🚀🚀🚀",
        "",
    ],
)
def test_crypto_slang_stays_english(detector: LanguageDetector, text: str) -> None:
    assert is_english(text, detector)


@pytest.mark.parametrize(
    "text", ["🚀🚀🚀", "$BTC.X $ETH.X", "https://t.co/abc @whale 1200", "", None, "ok"]
)
def test_no_language_without_letters(detector: LanguageDetector, text: str | None) -> None:
    assert detector.detect(text) == (None, 0.0)


def test_detection_is_deterministic(detector: LanguageDetector) -> None:
    text = "Der Bitcoin Kurs ist heute stark gefallen"
    first = detector.detect(text)
    assert all(detector.detect(text) == first for _ in range(3))


def test_noise_does_not_change_the_guess(detector: LanguageDetector) -> None:
    clean = "El bitcoin va a subir mucho esta semana"
    noisy = "@amigo $BTC.X El bitcoin va a subir 🚀 mucho esta semana https://t.co/x 2024"
    assert detector.detect(noisy) == detector.detect(clean)
