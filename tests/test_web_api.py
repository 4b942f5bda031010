"""The public JSON API (`moodring serve`, issue #18) on a small replayed database: each
endpoint, alternative.me's `/fng/` shape, caching headers, rate limits behind trusted
proxies, public sources only, and schemathesis over the OpenAPI spec."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from bot.market.candles import load_bundled
from bot.store import Store
from bot.types import Alert, Scope
from bot.web.app import ApiConfig, create_app
from bot.web.clients import client_ip, networks
from connectors.replay import ReplaySource
from nlp.types import Score
from tests.conftest import NEGATIVE, POSITIVE
from tests.doubles import RecordingSink
from tests.test_pipeline_e2e import START, make_pipeline, write_stream

NEWEST = START + timedelta(days=3)  # the stream's end (its last post is a little before)
WALL = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)  # the "real" clock: years after the data
PRIVATE = Scope(asset="BTC", community="-100111", platform="telegram")
PUBLIC = Scope(asset="BTC", community="-100222", platform="telegram")


class KeywordScorer:
    """The scoring seam without a model: the conftest's sentiment words decide."""

    def score(self, texts: Sequence[str]) -> list[Score]:
        out = []
        for text in texts:
            words = set(text.lower().split())
            pos, neg = len(words & set(POSITIVE)), len(words & set(NEGATIVE))
            if pos > neg:
                out.append(Score(0.1, 0.2, 0.7, "positive", "keyword-test"))
            elif neg > pos:
                out.append(Score(0.7, 0.2, 0.1, "negative", "keyword-test"))
            else:
                out.append(Score(0.2, 0.6, 0.2, "neutral", "keyword-test"))
        return out


def alert(scope: Scope, key: str, quote: str) -> Alert:
    return Alert(
        key=key,
        kind="extreme",
        scope=scope,
        at=NEWEST - timedelta(hours=2),
        title=f"{key} entered Extreme Fear",
        value=20.0,
        evidence=(quote,),
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three replayed days (calm, calm, panic) scored by keywords through the real pipeline,
    the bundled BTC prices, and two alerts about Telegram groups: one public, one not."""
    folder = tmp_path_factory.mktemp("web")
    stream = folder / "posts.jsonl"
    write_stream(stream)
    path = folder / "web.db"
    store = Store(path)
    try:
        pipeline = make_pipeline(
            store, KeywordScorer(), {"chat": RecordingSink()}, sinks_targets=(("chat", "g"),)
        )
        source = ReplaySource(stream, platform="replay", community="test")
        asyncio.run(pipeline.run([source]))
        load_bundled(store, ["BTC"])
        store.save_tick(
            [],
            [alert(PRIVATE, "private-1", "secret words"), alert(PUBLIC, "public-1", "open words")],
            {},
            lambda a: [],
            ("web-test", "1"),
            NEWEST,
        )
    finally:
        store.close()
    return path


@pytest.fixture(scope="module")
def store(db: Path) -> Iterator[Store]:
    s = Store(db)
    yield s
    s.close()


def client(app: FastAPI, peer: str = "127.0.0.1") -> httpx.Client:
    """A synchronous client on the ASGI app (no socket): ``peer`` is the connection's
    address the app sees."""
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))  # type: ignore[arg-type]
    return httpx.Client(transport=_Sync(transport), base_url="http://testserver")


class _Sync(httpx.BaseTransport):
    """httpx's ASGI transport is async only; each request runs it on its own event loop."""

    def __init__(self, inner: httpx.ASGITransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def go() -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return asyncio.run(go())


@pytest.fixture(scope="module")
def api(store: Store) -> httpx.Client:
    config = ApiConfig(public_sources=("telegram:-100222",), rate_per_minute=10_000)
    return client(create_app(store, config, clock=lambda: WALL))


# ---------------------------------------------------------------------- endpoints


def test_mood_is_the_reading_as_of_the_newest_message(api: httpx.Client) -> None:
    r = api.get("/api/v1/mood", params={"asset": "BTC", "window": "24h"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["scope"] == {"asset": "BTC", "community": "*", "platform": "*"}
    assert datetime.fromisoformat(doc["at"]) <= NEWEST  # not live: as of the data
    assert doc["value"] is not None and doc["value"] < 40  # the panic day
    assert doc["band"] in ("Fear", "Extreme Fear")
    assert doc["sample_size"] > 100 and 0 < doc["confidence"] <= 1
    assert "sentiment" in doc["components"] and doc["model_id"] == "keyword-test"
    calm = api.get("/api/v1/mood", params={"at": (START + timedelta(days=2)).isoformat()})
    assert calm.status_code == 200 and 30 < calm.json()["value"] < 70


def test_mood_of_a_community_and_bad_input(api: httpx.Client) -> None:
    ok = api.get("/api/v1/mood", params={"community": "test", "platform": "replay"})
    assert ok.status_code == 200 and ok.json()["sample_size"] > 0
    for params, status in [
        ({"window": "2h"}, 400),
        ({"asset": "not an asset!"}, 400),
        ({"asset": "NOSUCHCOIN"}, 404),
        ({"at": "yesterday"}, 400),
        ({"at": "2030-01-01T00:00:00Z"}, 400),  # after the data's now
        ({"at": "0001-01-01T00:00:00+05:00"}, 400),
        ({"community": "-100111", "platform": "telegram"}, 404),  # a private group
    ]:
        r = api.get("/api/v1/mood", params=params)
        assert r.status_code == status, (params, r.text)
        assert set(r.json()) == {"error"} and r.json()["error"]


def test_history_json_and_csv(api: httpx.Client) -> None:
    r = api.get("/api/v1/history", params={"asset": "BTC", "step": "1h", "limit": 5})
    assert r.status_code == 200
    points = r.json()["points"]
    assert len(points) == 5
    times = [datetime.fromisoformat(p["at"]) for p in points]
    assert times == sorted(times) and times[1] - times[0] == timedelta(hours=1)
    days = api.get("/api/v1/history", params={"step": "1d", "since": START.isoformat()}).json()
    midnights = [datetime.fromisoformat(p["at"]) for p in days["points"]]
    assert len(midnights) >= 2 and all(t.hour == 0 for t in midnights)
    assert midnights[1] - midnights[0] == timedelta(days=1)
    csv = api.get("/api/v1/history", params={"limit": 3, "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().split("\n")
    assert lines[0] == "at,value,band,sample_size,confidence" and len(lines) == 4


def test_fng_is_shaped_as_alternative_me(api: httpx.Client) -> None:
    r = api.get("/api/v1/fng", params={"limit": 3})
    assert r.status_code == 200
    doc = r.json()
    assert set(doc) == {"name", "data", "metadata"} and doc["metadata"] == {"error": None}
    assert "BTC" in doc["name"] and "market-v2" in doc["name"]
    assert r.headers["x-moodring-method"].startswith("market-v2")
    assert len(doc["data"]) == 3
    first, *rest = doc["data"]
    assert set(first) == {"value", "value_classification", "timestamp", "time_until_update"}
    assert all(set(d) == {"value", "value_classification", "timestamp"} for d in rest)
    assert all(isinstance(v, str) for d in doc["data"] for v in d.values())
    stamps = [int(d["timestamp"]) for d in doc["data"]]
    assert stamps == sorted(stamps, reverse=True) and stamps[0] - stamps[1] == 86_400
    assert all(0 <= int(d["value"]) <= 100 for d in doc["data"])
    assert first["time_until_update"] == ""  # not live: the data are from 2022
    default = api.get("/api/v1/fng").json()
    assert len(default["data"]) == 1 and default["data"][0] == first
    assert len(api.get("/api/v1/fng", params={"limit": 0}).json()["data"]) > 2000


def test_fng_csv_is_alternative_mes_layout(api: httpx.Client) -> None:
    r = api.get("/api/v1/fng", params={"limit": 2, "format": "csv"})
    text = r.text
    assert text.startswith('{\n\t"name": "Fear and Greed Index')
    body = text[text.index("[") + 1 : text.index("]")].split()
    assert body[0] == "date,fng_value,fng_classification"
    day = datetime.fromtimestamp(int(api.get("/api/v1/fng").json()["data"][0]["timestamp"]), UTC)
    assert body[1].startswith(day.strftime("%d-%m-%Y") + ",") and len(body) == 3
    assert text.rstrip().endswith('"error": null\n\t}\n}')
    kr = api.get("/api/v1/fng", params={"limit": 1, "format": "csv", "date_format": "kr"})
    assert day.strftime("%Y-%m-%d") in kr.text


def test_live_database_counts_down_to_the_next_value(store: Store) -> None:
    wall = NEWEST + timedelta(hours=3)  # within a day of the newest message: live
    live = client(create_app(store, clock=lambda: wall))
    [entry] = live.get("/api/v1/fng").json()["data"]
    assert entry["time_until_update"] == str(21 * 3600)
    assert live.get("/api/v1/health").json()["live"] is True


def test_levels_health_and_alerts(api: httpx.Client) -> None:
    levels = api.get("/api/v1/levels", params={"asset": "BTC"}).json()
    assert levels["supports"] and levels["resistances"]
    price = levels["price"]
    assert all(s["price"] <= price for s in levels["supports"])
    assert all(r["price"] > price for r in levels["resistances"])
    health = api.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["live"] is False
    assert datetime.fromisoformat(health["as_of"]) <= NEWEST
    body = api.get("/api/v1/alerts", params={"limit": 500}).text
    keys = [a["key"] for a in json.loads(body)["alerts"]]
    assert "public-1" in keys and "open words" in body
    assert "private-1" not in keys and "secret words" not in body  # never a private group's
    assert any(a["scope"]["community"] == "*" for a in json.loads(body)["alerts"])


# ---------------------------------------------------------------------- HTTP behaviour


def test_etag_and_304(api: httpx.Client) -> None:
    first = api.get("/api/v1/fng", params={"limit": 2})
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["cache-control"] == "public, max-age=60"
    again = api.get("/api/v1/fng", params={"limit": 2}, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = api.get("/api/v1/fng", params={"limit": 3}, headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag


def test_rate_limit_per_client_behind_trusted_proxies(store: Store) -> None:
    config = ApiConfig(trusted_proxies=("10.0.0.0/8",), rate_per_minute=2)
    app = create_app(store, config, clock=lambda: WALL, monotonic=lambda: 100.0)
    proxy = client(app, peer="10.1.2.3")
    for user in ("203.0.113.5", "203.0.113.6"):  # each user behind the proxy: their own limit
        headers = {"X-Forwarded-For": user}
        assert [proxy.get("/api/v1/health", headers=headers).status_code for _ in range(2)] == [
            200,
            200,
        ]
        refused = proxy.get("/api/v1/health", headers=headers)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "error" in refused.json()
    # From an untrusted peer the header is ignored: it cannot pick a fresh address.
    direct = client(app, peer="198.51.100.9")
    codes = [
        direct.get("/api/v1/health", headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]


def test_client_ip_reads_forwarded_for_only_from_trusted_hops() -> None:
    trusted = networks(("10.0.0.0/8", "::1"))
    assert client_ip("10.0.0.1", "1.2.3.4, 10.0.0.7", trusted) == "1.2.3.4"
    assert client_ip("10.0.0.1", "6.6.6.6, 1.2.3.4", trusted) == "1.2.3.4"  # left is forged
    assert client_ip("5.5.5.5", "1.2.3.4", trusted) == "5.5.5.5"
    assert client_ip("10.0.0.1", "garbage", trusted) == "10.0.0.1"
    assert client_ip("::1", "2001:db8::1", trusted) == "2001:db8::1"


# ---------------------------------------------------------------------- generated input


def test_no_server_error_for_generated_input(store: Store) -> None:
    import hypothesis
    import schemathesis
    from schemathesis.checks import not_a_server_error

    app = create_app(store, ApiConfig(rate_per_minute=1_000_000), clock=lambda: WALL)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    statuses: list[int] = []
    for operation in schema.get_all_operations():
        op = operation.ok()

        @hypothesis.settings(
            max_examples=25,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=op.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call()
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query}")
            case.validate_response(response, checks=(not_a_server_error,))

        check()
    assert not failures
    # It did ask: every operation, with input both good and bad.
    assert len(statuses) >= 6 * 20 and {200, 400} <= set(statuses)


def test_serve_needs_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.app.cli import main

    assert main(["--db", str(tmp_path / "none.db"), "serve", "--port", "0"]) == 2
    assert "no database" in capsys.readouterr().err


def test_an_answer_is_computed_once_per_minute_of_data(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many clients asking the same thing cost one reading: answers are kept by what decides
    them (endpoint, arguments, the data's "now") for at most a minute."""
    from bot.web import reads

    calls: list[str] = []
    real = reads.mood

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("mood")
        return real(*args, **kwargs)

    monkeypatch.setattr(reads, "mood", counted)
    app = create_app(store, clock=lambda: NEWEST + timedelta(days=30))
    with client(app) as c:
        first = c.get("/api/v1/mood?asset=BTC")
        assert c.get("/api/v1/mood?asset=BTC").json() == first.json()
        assert len(calls) == 1
        assert c.get("/api/v1/mood?asset=BTC&window=1h").status_code == 200
        assert len(calls) == 2  # other arguments: another answer


@pytest.mark.sqlite_only  # it copies the SQLite file itself
def test_the_api_answers_the_same_on_postgresql(db: Path, store: Store, pg_url: str) -> None:
    """`moodring serve` on PostgreSQL: the same database moved with `moodring migrate`'s copy
    answers every endpoint word for word as the SQLite one does (and ETags match too, since
    they are made from the answer)."""
    from bot.store.moving import copy_to_postgres

    copies = copy_to_postgres(db, pg_url)
    assert all(c.source == c.copied for c in copies)
    config = ApiConfig(public_sources=("telegram:-100222",), rate_per_minute=10_000)
    on_sqlite = client(create_app(store, config, clock=lambda: WALL))
    pg = Store(pg_url)
    try:
        on_pg = client(create_app(pg, config, clock=lambda: WALL))
        for url in [
            "/api/v1/mood?asset=BTC&window=24h",
            f"/api/v1/mood?at={(START + timedelta(days=2)).isoformat().replace('+', '%2B')}",
            "/api/v1/mood?community=test&platform=replay",
            "/api/v1/history?asset=BTC&step=1h&limit=24",
            "/api/v1/history?step=1d&format=csv",
            "/api/v1/fng?limit=3",
            "/api/v1/fng?limit=3&format=csv",
            "/api/v1/levels?asset=BTC",
            "/api/v1/alerts",
            "/api/v1/health",
            "/api/v1/mood?asset=NOSUCHCOIN",
        ]:
            a, b = on_sqlite.get(url), on_pg.get(url)
            assert a.status_code == (404 if "NOSUCHCOIN" in url else 200), (url, a.text)
            assert (a.status_code, a.text) == (b.status_code, b.text), url
            assert a.headers.get("etag") == b.headers.get("etag"), url
    finally:
        pg.close()
