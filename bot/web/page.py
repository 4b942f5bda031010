"""The dashboard as server-rendered HTML: every value escaped, the chart's data as JSON for
the vendored uPlot (bot/web/static/), and the 401/403 pages of links that do not open it."""

from __future__ import annotations

import json
from html import escape

from bot.web.dashboard import DashboardView

HEAD = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<meta name="robots" content="noindex">'
    '<link rel="stylesheet" href="/static/uPlot.min.css">'
    '<link rel="stylesheet" href="/static/dashboard.css">'
    "<title>{title}</title></head><body>"
)
#: Sent with every dashboard answer: the token is in the address, so it must not leak in a
#: Referer, a shared cache or a search index; scripts only from this server.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


def chart_data(view: DashboardView) -> dict[str, object]:
    """The chart's series as uPlot reads them (unix seconds), with the bands and alerts."""
    return {
        "mood": [[int(at.timestamp()), v] for at, v in view.timeline],
        "price": [[int(at.timestamp()), p] for at, p in view.prices],
        "fear_at": view.fear_at,
        "greed_at": view.greed_at,
        "alerts": [
            {"t": int(a.at.timestamp()), "title": a.title, "kind": a.kind} for a in view.alerts
        ],
    }


def render(view: DashboardView) -> str:
    """The whole page of ``view``."""
    r = view.reading
    value = "collecting" if r.value is None else f"{r.value:.0f}"
    comps = "".join(
        f"<tr><th>{escape(k.replace('_', ' '))}</th><td>{v:.2f}</td></tr>"
        for k, v in sorted(r.components.items())
    )
    drivers = (
        "".join(
            f"<li>“{escape(d.text)}” <span class=muted>({d.polarity:+.2f})</span></li>"
            for d in view.drivers
        )
        or "<li class=muted>none in the last 24 h</li>"
    )
    share = 100 * view.spam_total / view.messages_total if view.messages_total else 0.0
    reasons = (
        "".join(
            f"<tr><th>{escape(why.replace('_', ' '))}</th><td>{n}</td></tr>"
            for why, n in view.spam_reasons
        )
        or "<tr><td class=muted colspan=2>no spam in the last 24 h</td></tr>"
    )
    alerts = (
        "".join(
            f"<li>{a.at:%Y-%m-%d %H:%M} — {escape(a.title)}</li>" for a in reversed(view.alerts)
        )
        or "<li class=muted>none in these 7 days</li>"
    )
    subs = "".join(f"<li>{escape(s)}</li>" for s in view.subscriptions) or (
        "<li class=muted>none</li>"
    )
    data = json.dumps(chart_data(view)).replace("</", "<\\/")
    title = escape(view.title)
    return (
        HEAD.format(title=f"moodring · {title}")
        + f"<header><h1>{title}</h1><p class=muted>{escape(view.platform)} ·"
        f" as of {view.now:%Y-%m-%d %H:%M} UTC · read-only (changes stay in chat)</p></header>"
        "<main>"
        f'<section class=now><h2>Mood now (24h)</h2><p class=big id="mood-value">{value}</p>'
        f'<p id="mood-line">{escape(view.reading_line)}</p>'
        f"<table class=kv>{comps}</table></section>"
        "<section class=chart><h2>Mood and BTC, 7 days</h2>"
        f'<div id="chart" role="img" aria-label="mood timeline against BTC price"></div>'
        f"<p class=muted>Shaded: extreme fear ≤ {view.fear_at}, extreme greed ≥"
        f" {view.greed_at} (this community's thresholds). Lines: this community's alerts.</p>"
        f'<script type="application/json" id="chart-data">{data}</script></section>'
        f"<section><h2>Moved most by (24h)</h2><ul>{drivers}</ul></section>"
        f"<section><h2>Spam (24h)</h2><p>{view.spam_total} of {view.messages_total}"
        f" messages ({share:.0f}%)</p><table class=kv>{reasons}</table></section>"
        f"<section><h2>Alerts here</h2><ul>{alerts}</ul></section>"
        f"<section><h2>Subscriptions</h2><ul>{subs}</ul>"
        f"<h2>Settings</h2><pre>{escape(view.settings)}</pre></section>"
        f"<section><h2>Health</h2><pre>{escape(view.health)}</pre></section>"
        "</main>"
        '<script src="/static/uPlot.iife.min.js"></script>'
        '<script src="/static/dashboard.js"></script></body></html>'
    )


def refusal(status: int, reason: str) -> str:
    """The page of a link that does not open the dashboard (401 expired, 403 refused)."""
    what = "Link expired" if status == 401 else "Access refused"
    return (
        HEAD.format(title=f"moodring · {what}")
        + f"<main><section><h1>{status} · {what}</h1><p>{escape(reason)}.</p>"
        "<p>Ask for a new link with <code>/dashboard</code> in your community's chat.</p>"
        "</section></main></body></html>"
    )
