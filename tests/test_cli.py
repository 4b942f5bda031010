"""The CLI as a user meets it: clear one-line errors, settings from env and TOML."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app.cli import RedactTokens, main
from bot.settings import load_settings


def test_missing_model_dir_is_one_clear_line(tmp_path: Path, capsys) -> None:
    tsv = tmp_path / "x.tsv"
    tsv.write_text("label\ttext\npositive\tgood\n")
    code = main(["--model-dir", str(tmp_path / "nope"), "eval", str(tsv)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("moodring: ") and "no model weights" in err
    assert "Traceback" not in err


def test_an_eval_figure_says_what_it_was_measured_with(tmp_path: Path, capsys) -> None:
    """int8 scores depend on the CPU's instruction set, so `moodring eval`'s JSON names the
    model, the backend and (for int8) the CPU beside the figures."""
    import json

    from nlp.onnx_backend import cpu_signature

    tsv = tmp_path / "x.tsv"
    tsv.write_text("label\ttext\npositive\tbullish af, loading more\nnegative\trekt again\n")
    assert main(["eval", str(tsv)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 2 and 0.0 <= result["macro_recall"] <= 1.0
    assert result["model_id"].startswith("moodring-minilm-l6-stance")
    assert result["backend"] == "onnx" and result["cpu"] == cpu_signature()


def test_the_cpu_signature_names_the_kernels_choices() -> None:
    from nlp.onnx_backend import cpu_signature

    vnni = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
    assert cpu_signature(vnni) == "AMD EPYC (avx2 avx512f avx512_vnni)"
    older = "model name\t: Intel(R) Xeon(R) CPU\nflags\t: fpu avx avx2\nmodel name\t: other\n"
    assert cpu_signature(older) == "Intel(R) Xeon(R) CPU (avx2)"
    assert cpu_signature("model name: ARM thing\nFeatures: fp asimd\n") == "ARM thing"
    assert cpu_signature("")  # some name, whatever the platform


def test_missing_eval_file_is_one_clear_line(tmp_path: Path, capsys) -> None:
    assert main(["eval", str(tmp_path / "missing.tsv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_missing_config_file(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "eval", "x"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_settings_from_toml_and_env(tmp_path: Path, monkeypatch) -> None:
    toml = tmp_path / "moodring.toml"
    toml.write_text('db = "from-toml.db"\nbatch_size = 16\ntelegram_token = "123:abc"\n')
    monkeypatch.setenv("MOODRING_BATCH_SIZE", "32")
    monkeypatch.delenv("MOODRING_CONFIG", raising=False)
    settings = load_settings(toml)
    assert settings.db == Path("from-toml.db")
    assert settings.batch_size == 32  # the environment wins
    assert settings.telegram_token is not None
    assert "123:abc" not in repr(settings)


def test_tokens_are_redacted_from_log_lines() -> None:
    import logging

    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "POST https://api.telegram.org/bot%s/getUpdates",
        ("1234567890:AAAbbbCCCdddEEEfffGGGhhhIIIjjjKKKll",),
        None,
    )
    RedactTokens().filter(record)
    assert "AAAbbb" not in record.getMessage() and "<token>" in record.getMessage()


def test_unknown_command_prints_usage() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bot.app.cli", "frobnicate"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "usage: moodring" in proc.stderr


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
def test_help(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bot.app.cli", *args], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "moodring" in proc.stdout


def test_every_cli_command_is_documented_in_the_readme() -> None:
    """Like sqlite-utils' test_docs: a command nobody can find is a command nobody uses."""
    import argparse

    from bot.app.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name in sub.choices if f"moodring {name}" not in readme]
    assert missing == []


def test_run_refuses_a_missing_replay_file(tmp_path: Path, capsys) -> None:
    assert main(["--db", str(tmp_path / "r.db"), "run", "--replay", str(tmp_path / "no.csv")]) == 2
    assert "--replay: no such file" in capsys.readouterr().err


def test_market_weights_are_checked_and_published(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch, capsys
) -> None:
    from bot.market.reads import stored_weights
    from bot.store import Store

    db = tmp_path / "w.db"
    monkeypatch.setenv("MOODRING_MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setenv("MOODRING_MARKET_WEIGHTS", '{"bogus": 1}')
    assert main(["--db", str(db), "run"]) == 2
    assert "unknown bogus" in capsys.readouterr().err
    monkeypatch.setenv("MOODRING_MARKET_WEIGHTS", '{"social": 0.5}')
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # noqa: SIM115
    code = main(["--db", str(db), "run"])
    assert code == 0, capsys.readouterr().err  # no tokens: console only, at end of input
    store = Store(db)
    try:
        assert stored_weights(store).social == 0.5
    finally:
        store.close()


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["demo", "--speed", "0"], {}, "must be above zero"),
        (["demo", "--messages", "posts.txt"], {}, "cannot tell the format of 'posts.txt'"),
        (["status"], {"MOODRING_RETENTION_DAYS": "abc"}, "bad settings: retention_days"),
        (["status"], {"MOODRING_LOG_LEVEL": "NOPE"}, "bad settings: log_level"),
        (["status"], {"MOODRING_ASSETS": "BTC,ETH"}, "lists and tables are JSON"),
        (["prices", "import", "."], {}, "is a folder"),
        (["prices", "import", "bad.csv"], {}, "not UTF-8 text"),
        (["prices", "import", "hourly.csv", "--interval", "1d"], {}, "are 1h bars, not 1d"),
        (["prices", "import", "hourly.csv", "--asset", "B T C"], {}, "not an asset symbol"),
    ],
)
def test_bad_input_is_one_clear_line_not_a_traceback(
    tmp_path: Path, monkeypatch, capsys, argv: list[str], env: dict[str, str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "posts.txt").write_text("x\n")
    (tmp_path / "bad.csv").write_bytes(b"\xff\xfedate,close\n")
    (tmp_path / "hourly.csv").write_text(
        "time,open,high,low,close\n2023-01-01T00:00:00Z,1,2,1,2\n2023-01-01T01:00:00Z,2,3,2,3\n"
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) if "--speed" in argv else contextlib.nullcontext():
        assert main(["--db", str(tmp_path / "e.db"), *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def _small_db(path: Path) -> Path:
    """Three scored posts about BTC in one community: enough to ask, too few for a reading."""
    from datetime import UTC, datetime, timedelta

    from bot.store import Store, StoredMessage
    from connectors.types import Message
    from nlp.types import Score

    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    msgs = [
        Message("replay", "cli", "c", str(i), f"u{i}", "$BTC looks fine", now - timedelta(hours=i))
        for i in range(3)
    ]
    store = Store(path)
    try:
        store.add_messages([StoredMessage(m, m.text, ("BTC",), None, None) for m in msgs], now)
        score = Score(0.2, 0.5, 0.3, "neutral", "test")
        store.save_scores([((m.platform, m.channel, m.message_id), score) for m in msgs], now)
    finally:
        store.close()
    return path


@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        ("/mood BTC", 0, "• all sources — BTC: collecting (3 msgs in 24h)"),
        ("/mood bitcoin 24h", 0, "• all sources — BTC: collecting (3 msgs in 24h)"),
        ("/mood BTC ETH", 2, "one asset at most. Usage: /mood [ASSET] [1h|24h|7d]"),
        ("/price", 2, "name an asset. Usage: /price ASSET"),
        ("/frobnicate", 2, "Unknown command /frobnicate. Try: /help /mood"),
        (
            "/mood NOSUCH",
            2,
            "I don't know NOSUCH: no message has mentioned it and there are no prices for it."
            " Known assets: BTC, GLD, IGV, QQQ, SPY.",
        ),
    ],
)
@pytest.mark.sqlite_only
def test_ask_exits_2_when_the_command_is_not_understood(
    tmp_path: Path, capsys, text: str, code: int, expected: str
) -> None:
    db = _small_db(tmp_path / "ask.db")
    assert main(["--db", str(db), "ask", text]) == code
    out, err = capsys.readouterr()
    # An answer goes to stdout; a usage line or "unknown" goes to stderr, like argparse's.
    assert expected in (out if code == 0 else err)
    assert (err if code == 0 else out) == ""


def test_the_demo_report_shows_duplicate_ids_beside_malformed_rows() -> None:
    from bot.app.cli import replay_line
    from bot.pipeline.observer import Counters
    from connectors.replay import ReplayStats

    stats = Counters(seen=10, added=9, scored=9, alerts=1)
    clean = replay_line(stats, ReplayStats(skipped=2))
    assert clean == (
        "replayed 10 posts: 9 new, 9 scored, 0 could not be scored, 2 malformed rows skipped;"
        " 1 new alerts"
    )
    assert "2 malformed rows skipped, 3 duplicate ids skipped;" in replay_line(
        stats, ReplayStats(skipped=2, duplicates=3)
    )


def test_max_clock_skew_is_a_setting(monkeypatch) -> None:
    monkeypatch.delenv("MOODRING_CONFIG", raising=False)
    assert load_settings().max_clock_skew_s == 600.0
    monkeypatch.setenv("MOODRING_MAX_CLOCK_SKEW_S", "60")
    assert load_settings().max_clock_skew_s == 60.0
