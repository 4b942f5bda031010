"""The moderators' dashboard (issue #18): `/dashboard`'s signed links (moderators only, by
DM), their expiry, tampering and revocation, the secret's 0600 file outside the database,
and the page itself: one community's data only, the same mood as `moodring ask "/mood"`."""

from __future__ import annotations

import dataclasses
import json
import re
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from bot.app.cli import main
from bot.app.wiring import dashboard_links
from bot.chat.commands import CommandContext, answer
from bot.chat.links import DashboardLinks, Grant, load_or_create_secret
from bot.settings import load_settings
from bot.store import Store
from bot.web.app import ApiConfig, create_app
from connectors.types import Command
from tests.test_web_api import NEWEST, PRIVATE, WALL, client
from tests.test_web_api import db as db

SECRET = "s" * 43
LINKS = DashboardLinks(SECRET, "https://mood.example.org", 86_400, clock=lambda: WALL)
HERE = ("replay", "test")  # the replayed community
MOD = frozenset({"admin"})


@pytest.fixture(scope="module")
def store(db: Path) -> Iterator[Store]:
    s = Store(db)
    s.set_community_title(PRIVATE.platform, PRIVATE.community, "Hidden Group", NEWEST)
    yield s
    s.close()


def command(platform: str, community: str, user: str = "42", **kw: object) -> Command:
    return Command(platform, community, community, user, "dashboard", **kw)  # type: ignore[arg-type]


def page_client(store: Store, clock_at: object = WALL, **kw: object) -> httpx.Client:
    config = ApiConfig(rate_per_minute=10_000, links=LINKS)
    return client(create_app(store, config, clock=lambda: clock_at, **kw))  # type: ignore[arg-type, return-value]


def token_for(platform: str, community: str, user: str = "42", at: object = WALL) -> str:
    return LINKS.token(platform, community, user, at)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the command


def test_a_moderator_gets_the_link_by_direct_message(store: Store) -> None:
    ctx = CommandContext(store=store, now=WALL, links=LINKS)
    store.note_private_chat("telegram", "42", WALL)
    got = answer(command("telegram", PRIVATE.community, roles=MOD), ctx)
    assert got.ok and got.reply.target == "42"  # the user's DM, not the group
    url = re.search(r"https://mood\.example\.org/dashboard/(\S+)", got.reply.text)
    assert url is not None
    grant = LINKS.check(url.group(1), WALL)
    assert (grant.platform, grant.community, grant.user) == ("telegram", PRIVATE.community, "42")
    on_discord = answer(command("discord", "777", user="9", roles=MOD), ctx)
    assert on_discord.reply.target == "user:9"  # the connector answers it ephemeral


def test_telegram_without_a_private_chat_gets_a_hint_and_no_link(store: Store) -> None:
    ctx = CommandContext(store=store, now=WALL, links=LINKS)
    got = answer(command("telegram", PRIVATE.community, user="55", roles=MOD), ctx)
    assert got.ok and got.reply.target == "" and "private chat" in got.reply.text
    assert "dashboard/" not in got.reply.text


def test_in_a_dm_or_on_the_console_the_reply_carries_the_link(store: Store) -> None:
    ctx = CommandContext(store=store, now=WALL, links=LINKS)
    dm = answer(command("telegram", "42", roles=MOD, is_private=True), ctx)
    assert dm.reply.target == "" and "/dashboard/" in dm.reply.text
    console = answer(command(*HERE, user="cli", roles=MOD), ctx)
    assert console.reply.target == "" and "/dashboard/" in console.reply.text


def test_a_member_is_refused(store: Store) -> None:
    ctx = CommandContext(store=store, now=WALL, links=LINKS)
    got = answer(command("telegram", PRIVATE.community), ctx)
    assert got.problem == "moderators_only" and "dashboard/" not in got.reply.text


# ---------------------------------------------------------------------- the token


def test_tampered_expired_and_foreign_tokens_are_refused(store: Store) -> None:
    token = token_for(*HERE)
    assert page_client(store).get(f"/dashboard/{token}").status_code == 200
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    tampered = page_client(store).get(f"/dashboard/{flipped}")
    assert tampered.status_code == 403 and "Access refused" in tampered.text
    other_secret = DashboardLinks("t" * 43).token(*HERE, "42", WALL)
    assert page_client(store).get(f"/dashboard/{other_secret}").status_code == 403
    late = page_client(store, WALL + timedelta(hours=24, seconds=2)).get(f"/dashboard/{token}")
    assert late.status_code == 401 and "expired" in late.text
    assert late.headers["cache-control"] == "no-store"


def test_revoked_links_are_refused_and_new_ones_work(store: Store) -> None:
    old = token_for(*HERE, user="7", at=WALL - timedelta(hours=1))
    earlier = dataclasses.replace(LINKS, clock=lambda: WALL - timedelta(minutes=30))
    ctx = CommandContext(store=store, now=NEWEST, links=earlier)
    assert answer(command(*HERE, user="7", args=("revoke",), roles=MOD), ctx).ok
    refused = page_client(store).get(f"/dashboard/{old}")
    assert refused.status_code == 403 and "revoked" in refused.text
    assert page_client(store).get(f"/dashboard/{token_for(*HERE, user='7')}").status_code == 200


def test_a_demoted_moderator_is_refused_within_the_role_cache(store: Store) -> None:
    asked: list[Grant] = []
    moderator = {"now": True}
    tick = {"t": 0.0}

    def check(grant: Grant) -> bool | None:
        asked.append(grant)
        return moderator["now"]

    web = page_client(store, moderator_check=check, monotonic=lambda: tick["t"])
    token = token_for(*HERE)
    assert web.get(f"/dashboard/{token}").status_code == 200
    moderator["now"] = False
    assert web.get(f"/dashboard/{token}").status_code == 200  # cached for a minute
    tick["t"] = 61.0
    demoted = web.get(f"/dashboard/{token}")
    assert demoted.status_code == 403 and "no longer a moderator" in demoted.text
    assert len(asked) == 2


def test_one_communitys_link_never_shows_another(store: Store) -> None:
    mine = page_client(store).get(f"/dashboard/{token_for(*HERE)}").text
    for foreign in ("private-1", "public-1", "Hidden Group", PRIVATE.community):
        assert foreign not in mine
    theirs = page_client(store).get(f"/dashboard/{token_for('telegram', PRIVATE.community)}")
    assert "private-1" in theirs.text and "Hidden Group" in theirs.text  # the check can fail


def test_the_secret_file_is_0600_and_never_in_the_database(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    store: Store,
    db: Path,
) -> None:
    config = tmp_path / "conf" / "moodring.toml"
    config.parent.mkdir()
    config.write_text('public_url = "https://mood.example.org"\n')
    monkeypatch.delenv("MOODRING_DASHBOARD_SECRET", raising=False)
    links = dashboard_links(load_settings(config))
    path = config.parent / "dashboard.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert links.secret == path.read_text().strip() and len(links.secret) >= 40
    assert dashboard_links(load_settings(config)).secret == links.secret  # kept, not renewed
    assert load_or_create_secret(path) == links.secret
    store.revoke_dashboard(*HERE, "8", WALL)  # the database holds revocations, not secrets
    for f in db.parent.glob(db.name + "*"):
        assert links.secret.encode() not in f.read_bytes() and SECRET.encode() not in f.read_bytes()


# ---------------------------------------------------------------------- the page


def test_the_page_shows_the_chart_data_and_the_same_mood_as_ask(
    store: Store,
    db: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    got = page_client(store).get(f"/dashboard/{token_for(*HERE)}")
    assert got.status_code == 200 and 'name="viewport"' in got.text
    assert "https://" not in got.text  # nothing from a CDN
    assert "script-src 'self'" in got.headers["content-security-policy"]
    data = json.loads(re.search(r'id="chart-data">(.*?)</script>', got.text).group(1))  # type: ignore[union-attr]
    assert len([v for _, v in data["mood"] if v is not None]) >= 8
    assert len(data["price"]) >= 7 and data["fear_at"] == 25
    assert (
        main(["--db", str(db), "ask", "/mood", "--community", "test", "--platform", "replay"]) == 0
    )
    said = re.search(r"here — [^:]*: (\d+)/100", capsys.readouterr().out)
    shown = re.search(r'id="mood-value">(\d+)<', got.text)
    assert said is not None and shown is not None and said.group(1) == shown.group(1)
    for part in ("Moved most by", "Spam (24h)", "Subscriptions", "Settings", "Status of this"):
        assert part in got.text
    script = page_client(store).get("/static/uPlot.iife.min.js")
    assert script.status_code == 200 and "uPlot" in script.text
    assert page_client(store).get("/static/../app.py").status_code == 404


def test_ask_dashboard_prints_a_link_that_opens(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    store: Store,
    db: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MOODRING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MOODRING_CONFIG", str(tmp_path / "none.toml"))
    assert (
        main(["--db", str(db), "ask", "/dashboard", "--community", "test", "--platform", "replay"])
        == 0
    )
    url = re.search(r"http://127\.0\.0\.1:8080/dashboard/(\S+)", capsys.readouterr().out)
    assert url is not None
    secret = (tmp_path / "cache" / "dashboard.secret").read_text().strip()
    config = ApiConfig(links=DashboardLinks(secret))
    web = client(create_app(store, config))  # the real wall clock
    # ask answers as of the demo's newest message, but issues its link by the wall clock:
    # the page opens now, not "expired years ago"
    opened = web.get(f"/dashboard/{url.group(1)}")
    assert opened.status_code == 200 and 'id="mood-value"' in opened.text


def test_the_openapi_spec_is_unchanged_by_the_dashboard(store: Store) -> None:
    spec = page_client(store).get("/api/v1/openapi.json").json()
    assert not any(p.startswith(("/dashboard", "/static")) for p in spec["paths"])
