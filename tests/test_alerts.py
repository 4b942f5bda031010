"""Tests for the alert rules: hysteresis, cooldowns, swings, hype, dedupe keys and evidence."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from bot.mood.alerts import AlertParams, AlertState, evaluate
from bot.mood.index import Point
from bot.types import MoodReading, Scope, band_of

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BTC = Scope(asset="BTC")
NO_COOLDOWN = AlertParams(extreme_cooldown_s=0, swing_cooldown_s=0, hype_cooldown_s=0)


def reading(
    value: float | None,
    at: datetime = NOW,
    *,
    confidence: float = 0.9,
    scope: Scope = BTC,
    window: str = "24h",
    raw: float = 0.0,
) -> MoodReading:
    return MoodReading(
        scope=scope,
        window=window,
        at=at,
        value=value,
        band="collecting" if value is None else band_of(value),
        components={"raw_sentiment": raw},
        sample_size=312,
        confidence=confidence,
    )


def run(values: list[float], params: AlertParams, step=timedelta(minutes=10)):
    """Feed a sequence of readings through ``evaluate``; return the alerts of each step."""
    state = AlertState()
    history: list[MoodReading] = []
    fired = []
    for i, v in enumerate(values):
        now = NOW + i * step
        r = reading(v, now)
        alerts, state = evaluate(r, history, [], state, now, params)
        fired.append([a.kind for a in alerts])
        history.append(r)
    return fired, state


PHRASES = (
    "just bought a bag, this is going up",
    "chart looks amazing today",
    "devs shipped the upgrade, huge news",
    "who else is holding through this",
)


def mentions(n: int, end: datetime, tag: str, polarity: float = 0.5, **kw) -> list[Point]:
    return [
        Point(
            created_at=end - timedelta(seconds=(i + 0.5) * 3600 / n),
            author=f"{tag}{i}",
            polarity=polarity,
            message_key=f"{tag}:{i}",
            text=f"{PHRASES[i % len(PHRASES)]} #{i}",
            **kw,
        )
        for i in range(n)
    ]


# --- extreme bands ---------------------------------------------------------------------------


def test_hysteresis_an_oscillating_reading_fires_once():
    fired, state = run([50, 24, 27, 24, 27, 24, 27], NO_COOLDOWN)
    assert sum(kinds.count("extreme") for kinds in fired) == 1
    assert fired[1] == ["extreme"]
    assert state.extreme == "fear"


def test_leaving_past_the_exit_threshold_rearms_the_rule():
    fired, state = run([50, 24, 34, 24], NO_COOLDOWN, step=timedelta(hours=2))
    assert [kinds.count("extreme") for kinds in fired] == [0, 1, 0, 1]
    fired, state = run([50, 80, 69, 80, 67, 80], NO_COOLDOWN, step=timedelta(hours=2))
    assert [kinds.count("extreme") for kinds in fired] == [0, 1, 0, 0, 0, 1]
    assert state.extreme == "greed"


def test_cooldown_holds_back_a_second_extreme_alert():
    params = AlertParams()
    fired, _ = run([50, 24, 34, 24], params, step=timedelta(hours=2))
    assert [kinds.count("extreme") for kinds in fired] == [0, 1, 0, 0]
    fired, _ = run([50, 24, 34, 24], params, step=timedelta(hours=6))  # 12 h after: cooled down
    assert [kinds.count("extreme") for kinds in fired] == [0, 1, 0, 1]


def test_extreme_alert_explains_the_reading_and_the_change():
    day_ago = reading(39, NOW - timedelta(hours=24))
    alerts, state = evaluate(reading(18.2), [day_ago], [], AlertState(), NOW)
    (alert,) = alerts
    assert alert.kind == "extreme"
    assert alert.title == "BTC social mood entered Extreme Fear: 18/100"
    assert alert.detail == "down 21 points in 24h; 312 messages, confidence 0.90"
    assert alert.value == 18.2 and alert.previous == 39
    assert state.extreme == "fear" and state.fired_at("extreme") == NOW


def test_an_extreme_that_is_ordinary_for_its_scope_raises_no_alert():
    """A scope whose 30-day norm is 74 does not "enter Extreme Greed" at 78: only a reading at
    least ``extreme_min_vs_norm`` (10) points beyond its norm toward the band alerts, and
    then the alert says how far. Without a norm yet, the absolute bands alone decide."""

    def normed(value: float, norm: float | None, at: datetime) -> MoodReading:
        r = reading(value, at)
        if norm is None:
            return r
        return dataclasses.replace(
            r, components={**r.components, "norm_30d": norm, "vs_norm": value - norm}
        )

    def feed(series: list[tuple[float, float | None]]) -> tuple[list[list], AlertState]:
        state, history, out = AlertState(), [], []
        for i, (value, norm) in enumerate(series):
            now = NOW + i * timedelta(minutes=10)
            r = normed(value, norm, now)
            alerts, state = evaluate(r, history, [], state, now, NO_COOLDOWN)
            out.append([a for a in alerts if a.kind == "extreme"])  # swings aside
            history.append(r)
        return out, state

    # Greedy scope: 78 is 4 above its norm (silent), 85 is 11 above (alerts, once).
    out, state = feed([(70, 74), (78, 74), (80, 74), (85, 74), (86, 74), (84, 74)])
    assert [len(a) for a in out] == [0, 0, 0, 1, 0, 0]
    (alert,) = out[3]
    assert alert.title == "BTC social mood entered Extreme Greed: 85/100"
    assert ", 11 above its 30-day norm; 312 messages" in alert.detail
    assert state.extreme == "greed"
    # Fear mirrors it: 22 is only 6 below a norm of 28, 15 is 13 below.
    out, _ = feed([(40, 28), (22, 28), (15, 28)])
    assert [len(a) for a in out] == [0, 0, 1]
    assert "13 below its 30-day norm" in out[2][0].detail
    # A scope with no norm yet (under 7 days of readings): the absolute band as before.
    out, _ = feed([(70, None), (78, None)])
    assert [len(a) for a in out] == [0, 1]
    assert "norm" not in out[1][0].detail


# --- swings ----------------------------------------------------------------------------------


def test_swing_of_at_least_n_points_within_an_hour():
    history = [
        reading(60, NOW - timedelta(minutes=50), window="1h"),
        reading(58, NOW - timedelta(minutes=20), window="1h"),
    ]
    alerts, state = evaluate(reading(44, window="1h"), history, [], AlertState(), NOW)
    (alert,) = alerts
    assert alert.kind == "swing" and alert.previous == 60 and alert.value == 44
    assert alert.title == "BTC mood fell 16 points within 1h: 60 → 44 (Fear)"
    assert alert.key.startswith("swing-down:BTC|*|*:1h:")
    assert state.fired_at("swing") == NOW

    small, _ = evaluate(reading(50, window="1h"), history, [], AlertState(), NOW)
    assert small == []
    old = [reading(80, NOW - timedelta(minutes=70), window="1h")]
    assert evaluate(reading(44, window="1h"), old, [], AlertState(), NOW)[0] == []


def test_swing_cooldown():
    history = [reading(40, NOW - timedelta(minutes=30))]
    first, state = evaluate(reading(60), history, [], AlertState(), NOW)
    assert [a.kind for a in first] == ["swing"]
    later = NOW + timedelta(minutes=30)
    again, state = evaluate(reading(70, later), [*history, reading(60)], [], state, later)
    assert again == []  # up 30 from 40, but the swing waits out its 2 h
    after = NOW + timedelta(hours=2)
    back = [reading(80, after - timedelta(minutes=40))]
    swung, _ = evaluate(reading(60, after), back, [], state, after)
    assert [a.kind for a in swung] == ["swing"]


def test_entering_an_extreme_band_does_not_also_raise_a_swing():
    history = [reading(45, NOW - timedelta(minutes=30))]
    alerts, state = evaluate(reading(20), history, [], AlertState(), NOW)
    assert [a.kind for a in alerts] == ["extreme"]
    # ...and the swing does not fire on the next evaluation either.
    later = NOW + timedelta(minutes=10)
    alerts, _ = evaluate(reading(21, later), [*history, reading(20)], [], state, later)
    assert alerts == []


# --- hype ----------------------------------------------------------------------------------


def test_hype_spike_fires_when_mentions_are_far_above_baseline():
    sol = Scope(asset="SOL")
    baseline = [p for h in range(1, 26) for p in mentions(4, NOW - timedelta(hours=h), f"b{h}-")]
    spike = mentions(60, NOW, "s")
    r = reading(62, scope=sol, window="1h", raw=0.3)
    alerts, state = evaluate(r, [], baseline + spike, AlertState(), NOW)
    (alert,) = alerts
    assert alert.kind == "hype" and alert.key.startswith("hype:SOL|*|*:1h:")
    assert alert.title.startswith("SOL hype spike: ")
    assert alert.detail.startswith("60 mentions in the last 1h; mood 62/100 (Greed)")
    assert len(alert.evidence) == 3
    assert state.fired_at("hype") == NOW

    quiet, _ = evaluate(r, [], baseline + mentions(5, NOW, "q"), AlertState(), NOW)
    assert quiet == []
    everything = dataclasses.replace(r, scope=Scope())
    assert evaluate(everything, [], baseline + spike, AlertState(), NOW)[0] == []
    cooling, _ = evaluate(r, [], baseline + spike, state, NOW + timedelta(hours=1))
    assert cooling == []


def test_hype_needs_a_minimum_number_of_mentions():
    sol = Scope(asset="SOL")
    r = reading(62, scope=sol, window="1h")
    alerts, _ = evaluate(r, [], mentions(15, NOW, "s"), AlertState(), NOW)  # 15 < 20, no baseline
    assert alerts == []


def test_a_newly_tracked_asset_is_not_hype_until_it_has_a_baseline():
    r = reading(62, scope=Scope(asset="NEW"), window="1h")
    spike = mentions(60, NOW, "s")
    assert evaluate(r, [], spike, AlertState(), NOW)[0] == []
    watched = NOW - timedelta(days=2)  # two quiet days watched: now it is a spike
    alerts, _ = evaluate(r, [], spike, AlertState(), NOW, tracked_since=watched)
    assert [a.kind for a in alerts] == ["hype"]


# --- keys, evidence, gating, state ---------------------------------------------------------


def test_dedupe_keys_are_identical_on_replay():
    history = [reading(45, NOW - timedelta(hours=24)), reading(46, NOW - timedelta(minutes=30))]
    points = mentions(30, NOW, "n", polarity=-0.8)
    first = evaluate(reading(20), history, points, AlertState(), NOW)
    replay = evaluate(reading(20), history, points, AlertState(), NOW)
    assert first == replay and first[0]
    # A re-run a little later within the same cooldown bucket keeps the key too.
    later = NOW + timedelta(minutes=5)
    rerun, _ = evaluate(reading(20, later), history, points, AlertState(), later)
    assert [a.key for a in rerun] == [a.key for a in first[0]]
    assert first[0][0].key.startswith("extreme-fear:BTC|*|*:24h:")


def test_evidence_quotes_public_messages_only_and_short():
    long_text = "the market is bleeding " * 20
    points = [
        Point(NOW - timedelta(minutes=5), "p1", -0.95, text="private panic", public=False),
        Point(NOW - timedelta(minutes=5), "p2", -0.9, text=long_text),
        Point(NOW - timedelta(minutes=6), "p3", -0.8, text="I sold everything"),
        Point(NOW - timedelta(minutes=7), "p4", -0.7, text="bear market confirmed"),
        Point(NOW - timedelta(minutes=8), "p5", -0.6, text="a fourth one, not quoted"),
    ]
    (alert,), _ = evaluate(reading(20), [], points, AlertState(), NOW)
    assert len(alert.evidence) == 3
    assert "private panic" not in alert.evidence
    assert alert.evidence[1:] == ("I sold everything", "bear market confirmed")
    quote = alert.evidence[0]
    assert len(quote) == 140 and quote.endswith("…") and quote.startswith("the market is")


def test_no_alert_from_a_collecting_or_unsure_reading():
    state = AlertState(extreme="greed")
    for r in (reading(None), reading(10, confidence=0.2)):
        alerts, after = evaluate(r, [reading(60, NOW - timedelta(minutes=30))], [], state, NOW)
        assert alerts == [] and after == state


def test_later_readings_in_history_are_ignored():
    future = [reading(80, NOW + timedelta(minutes=30))]
    assert evaluate(reading(50), future, [], AlertState(), NOW)[0] == []


def test_state_round_trips_through_json():
    state = AlertState().with_fired("swing", NOW).with_fired("extreme", NOW - timedelta(hours=1))
    state = dataclasses.replace(state, extreme="fear")
    assert [kind for kind, _ in state.last_fired] == ["extreme", "swing"]
    assert AlertState.from_json(state.to_json()) == state
    assert AlertState.from_json("") == AlertState()
    assert AlertState.from_json(AlertState().to_json()) == AlertState()
    with pytest.raises(ValueError):
        AlertState.from_json('{"extreme": "panic"}')
