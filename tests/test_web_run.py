"""`moodring run --serve` (#18): the API and dashboards in the bot's own loop, stopped with it,
and a dashboard link re-checked against the platform's live roles."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bot.app.cli import main
from bot.app.wiring import build_pipeline, live_moderator_check, pipeline_config, serve
from bot.chat.links import DashboardLinks, Grant
from bot.market.candles import load_bundled
from bot.settings import Settings
from bot.store import Store
from connectors.console import ConsoleSink
from connectors.errors import SourceUnavailable
from connectors.types import Command
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The bot's loop, running in a thread, as the web server's pool threads see it."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join(5)
    running.close()


def test_a_link_is_rechecked_with_the_platforms_live_roles(
    loop: asyncio.AbstractEventLoop,
) -> None:
    asked: list[Command] = []

    async def telegram(cmd: Command) -> frozenset[str]:
        asked.append(cmd)
        return frozenset() if cmd.user == "demoted" else frozenset({"admin"})

    async def discord(cmd: Command) -> frozenset[str]:
        raise SourceUnavailable("discord is down")

    check = live_moderator_check({"telegram": telegram, "discord": discord}, loop)
    now = datetime.now(UTC)
    assert check(Grant("telegram", "-100", "mod", now)) is True
    assert check(Grant("telegram", "-100", "demoted", now)) is False
    assert check(Grant("discord", "42", "mod", now)) is None  # cannot tell: not refused
    assert check(Grant("x", "-", "someone", now)) is None  # no lookup for the platform
    assert [(c.platform, c.community, c.user) for c in asked] == [
        ("telegram", "-100", "mod"),
        ("telegram", "-100", "demoted"),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serve_answers_beside_the_bot_and_stops_with_it(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", None)  # no chat, no console: the web server alone
    settings = Settings(db=tmp_path / "run.db", model_dir=tiny_model_dir, price_assets=("BTC",))
    store = Store(settings.db)
    load_bundled(store, ["BTC"])
    port = free_port()

    async def scenario() -> tuple[dict, int]:
        config = pipeline_config(settings, tick_to_clock=False, flush_s=0.1, delivery_s=0.5)
        sinks = {"console": ConsoleSink(open(tmp_path / "out.txt", "w"))}  # noqa: SIM115
        pipeline = build_pipeline(settings, store, sinks, config)
        web = ("127.0.0.1", port)
        serving = asyncio.create_task(serve(settings, store, pipeline, [], sinks, web=web))
        deadline = time.monotonic() + 30  # a bound on waiting, not a timing assertion
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            while True:
                try:
                    health = await client.get("/api/v1/health")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the API never answered"
                    await asyncio.sleep(0.1)
            levels = (await client.get("/api/v1/levels?asset=BTC")).status_code
        pipeline.stop()
        await asyncio.wait_for(serving, 30)
        return health.json(), levels

    try:
        health, levels = asyncio.run(scenario())
    finally:
        store.close()
    assert health["status"] == "ok" and levels == 200
    with socket.socket() as s:  # the port is free again: the server stopped with the bot
        s.bind(("127.0.0.1", port))


def test_run_serve_needs_host_and_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "x.db"
    assert main(["--db", str(db), "run", "--serve", "8080"]) == 2
    assert "is not HOST:PORT" in capsys.readouterr().err
    assert not db.exists()  # refused before anything was opened


def test_serve_alone_rechecks_a_link_with_telegrams_live_admin_list(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    """`moodring serve` runs no chat connector, yet a link's moderator is asked of Telegram
    (``getChatAdministrators`` over HTTP): the admin's link opens, a demoted one's is refused."""
    db = tmp_path / "serve.db"
    Store(db).close()
    fake_telegram.admins[-100123] = [42]
    links = DashboardLinks("s" * 43)
    now = datetime.now(UTC)
    admin = links.token("telegram", "-100123", "42", now)
    demoted = links.token("telegram", "-100123", "7", now)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
    env |= {
        "MOODRING_TELEGRAM_TOKEN": fake_telegram.token,
        "MOODRING_TELEGRAM_API_URL": fake_telegram.base_url,
        "MOODRING_DASHBOARD_SECRET": "s" * 43,
        "MOODRING_CACHE_DIR": str(tmp_path / "cache"),
        "MOODRING_CONFIG": str(tmp_path / "none.toml"),  # never a developer's own file
    }
    command = [sys.executable, "-m", "bot.app.cli", "--db", str(db), "serve", "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60  # a bound on waiting, not a timing assertion
        while True:
            try:
                httpx.get(f"{base}/api/v1/health")
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "serve never answered"
                time.sleep(0.2)
        opened = httpx.get(f"{base}/dashboard/{admin}")
        refused = httpx.get(f"{base}/dashboard/{demoted}")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert opened.status_code == 200, opened.text
    assert refused.status_code == 403
    assert "no longer a moderator" in refused.text
    assert fake_telegram.requests("getMe")  # logged in over HTTP, no getUpdates poll
    assert not fake_telegram.requests("getUpdates")
    asked = fake_telegram.requests("getChatAdministrators")
    assert len(asked) == 1 and asked[0].params["chat_id"] == "-100123"  # the list is cached
    assert fake_telegram.token not in err  # never logged
    assert "re-checked live on console, telegram" in err


def test_serve_comes_up_when_a_platform_login_fails_or_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A chat platform never holds the API back: Telegram that accepts the connection and
    never answers (a timeout) and Discord that hangs up mid-request (an aiohttp error) are
    each left out with one warning; their links are then "unknown", the console's still
    checked."""
    import discord

    from bot.app.wiring import platform_moderator_check

    silent = socket.socket()  # listens, never accepts: a connect succeeds, nothing answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hangup = socket.socket()
    hangup.bind(("127.0.0.1", 0))
    hangup.listen(8)
    stop = threading.Event()

    def hang_up() -> None:
        hangup.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = hangup.accept()
            except TimeoutError:
                continue
            conn.recv(4096)
            conn.close()

    closer = threading.Thread(target=hang_up, daemon=True)
    closer.start()
    port = hangup.getsockname()[1]
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    settings = Settings(
        db=tmp_path / "x.db",
        telegram_token="123:abc",
        telegram_api_url=f"http://127.0.0.1:{silent.getsockname()[1]}/bot",
        discord_token="good",
    )
    now = datetime.now(UTC)
    try:
        with caplog.at_level("WARNING"), platform_moderator_check(settings, 2.0) as check:
            assert check(Grant("telegram", "-100", "42", now)) is None
            assert check(Grant("discord", "7", "42", now)) is None
            assert check(Grant("console", "console", "operator", now)) is True
    finally:
        stop.set()
        closer.join(5)
        silent.close()
        hangup.close()
    warned = [r.getMessage() for r in caplog.records if "cannot be re-checked" in r.getMessage()]
    assert len(warned) == 2
    assert any("telegram" in w and "TimeoutError" in w for w in warned), warned
    assert any("discord" in w for w in warned), warned
    assert not any("123:abc" in r.getMessage() for r in caplog.records)


def test_serve_logs_in_again_to_a_platform_that_was_down_at_start(
    tmp_path: Path, fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    """Telegram down when `serve` starts: its links are "unknown" at first, and once a later
    login gets through, the admin list decides again, without a restart."""
    from bot.app.wiring import platform_moderator_check
    from tests.fake_telegram import SERVER_ERROR

    fake_telegram.admins[-100123] = [42]
    fake_telegram.fail_next(SERVER_ERROR)  # the first getMe
    settings = Settings(
        db=tmp_path / "x.db",
        telegram_token=fake_telegram.token,
        telegram_api_url=fake_telegram.base_url,
    )
    admin = Grant("telegram", "-100123", "42", datetime.now(UTC))
    demoted = Grant("telegram", "-100123", "7", datetime.now(UTC))
    with caplog.at_level("INFO"), platform_moderator_check(settings, 5.0, relogin_s=0.2) as check:
        assert check(admin) is None  # not logged in yet: unknown, not refused
        deadline = time.monotonic() + 30  # a bound on waiting, not a timing assertion
        while (answer := check(admin)) is None:
            assert time.monotonic() < deadline, "the second login never came"
            time.sleep(0.1)
        assert answer is True
        assert check(demoted) is False
    assert len(fake_telegram.requests("getMe")) >= 2
    assert any("re-checked live again" in r.getMessage() for r in caplog.records)
