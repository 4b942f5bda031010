"""The dashboard in a real browser (issue #18): Debian's chromium driven by Playwright opens
a link against `moodring serve`'s app on 127.0.0.1, and sees the chart drawn, the same mood
as `moodring ask "/mood"`, and a tampered link refused; a screenshot is kept."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from bot.app.cli import main
from bot.chat.links import DashboardLinks
from bot.store import Store
from bot.web.app import ApiConfig, create_app
from tests.test_web_api import db as db

CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
if shutil.which(CHROMIUM) is None:
    pytest.skip(
        "no chromium: run `apt-get install -y --no-install-recommends chromium`",
        allow_module_level=True,
    )

LINKS = DashboardLinks("b" * 43)  # the real wall clock, as `moodring serve` has


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[str]:
    """The app under uvicorn on 127.0.0.1, an ephemeral port; its base URL."""
    store = Store(db)
    app = create_app(store, ApiConfig(links=LINKS))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:  # waits for the bind, however long it takes (no timed assertion)
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join()
    store.close()


def test_the_dashboard_in_chromium(
    server: str, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = LINKS.token("replay", "test", "42", LINKS.clock())
    assert (
        main(["--db", str(db), "ask", "/mood", "--community", "test", "--platform", "replay"]) == 0
    )
    said = re.search(r"here — [^:]*: (\d+)/100", capsys.readouterr().out)
    assert said is not None
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            response = page.goto(f"{server}/dashboard/{token}")
            assert response is not None and response.status == 200
            page.wait_for_selector("#chart canvas")
            assert errors == []
            drawn = page.evaluate(
                "() => { const c = moodringChart; return {"
                " mood: c.data[1].filter(v => v !== null).length,"
                " price: c.data[2].filter(v => v !== null).length,"
                " inked: (() => { const cv = document.querySelector('#chart canvas');"
                "   const px = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;"
                "   let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) n++;"
                "   return n; })() }; }"
            )
            assert drawn["mood"] >= 8 and drawn["price"] >= 7 and drawn["inked"] > 1000
            assert page.inner_text("#mood-value") == said.group(1)
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            refused = page.goto(f"{server}/dashboard/{token[:-4]}AAAA")
            assert refused is not None and refused.status == 403
            assert "Access refused" in page.inner_text("body")
        finally:
            browser.close()
