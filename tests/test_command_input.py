"""Odd user input to the commands gets the command's usage line, never an exception: digits
that are not ASCII, numbers too long for int(), and time-zone names that are directories or
too long for a file name; checked through the chat's entry point and through `moodring ask`."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from bot.app.cli import main
from bot.chat.commands import COMMANDS, CommandContext, answer, handle, parse_command_text
from bot.store import Store
from bot.userinput import decimal_number, timezone_name, whole_number
from connectors.types import Command, Reply
from tests.test_cli import _small_db

ADMIN = frozenset({"admin"})

#: Input that used to raise (or, for the non-ASCII digits, be taken as a number).
BAD_INPUT = [
    "/quiet 22-7 Europe",  # a directory of the zone database: IsADirectoryError
    "/quiet 22-7 " + "A" * 300,  # too long for a file name: OSError
    "/quiet 22-7 ../../../etc/passwd",
    "/quiet 22-7 Europe/",
    "/quiet ²-7",
    "/quiet ٢٢-٧",  # Arabic-Indic digits, which int() accepts
    "/quiet 2_2-7",  # int() accepts underscores
    "/digest ²",  # str.isdigit accepts '²', int() does not: ValueError
    "/digest " + "9" * 5000,  # past int()'s digit limit: ValueError
    "/digest 24",
    "/digest 8 Europe",
    "/digest 8 " + "A" * 300,
    "/settings extreme ² 80",  # ValueError
    "/settings extreme 20 " + "9" * 5000,
    "/settings quiet 22-7 Europe",
    "/settings cooldown nan",
    "/settings cooldown 1e400",
    "/settings cooldown " + "9" * 5000,
    "/levels BTC add ²",
    "/levels BTC add 1_000",
    "/levels BTC add " + "9" * 5000,
]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _small_db(tmp_path_factory.mktemp("input") / "input.db")


def ask(db: Path, text: str) -> tuple[Command, CommandContext, Store]:
    store = Store(db)
    name, args = parse_command_text(text)
    cmd = Command("replay", "cli", "c", "u", name, args, roles=ADMIN)
    now = store.newest_message_time()
    assert now is not None
    return cmd, CommandContext(store=store, now=now), store


@pytest.mark.parametrize("text", BAD_INPUT, ids=lambda t: t[:40])
def test_bad_input_gets_the_usage_line_without_raising(db: Path, text: str) -> None:
    cmd, ctx, store = ask(db, text)
    try:
        result = answer(cmd, ctx)
        reply = handle(cmd, ctx)  # what the chat platforms call
    finally:
        store.close()
    assert result.problem == "usage"
    assert COMMANDS.usage(cmd.name) in result.reply.text
    assert reply.text == result.reply.text
    assert "A" * 50 not in reply.text  # a long name is cut short in the reply


@pytest.mark.parametrize(
    "text",
    ["/quiet 22-7 Europe", "/digest ²", "/digest " + "9" * 5000, "/settings extreme ² 80"],
    ids=lambda t: t[:40],
)
@pytest.mark.sqlite_only
def test_ask_cli_answers_bad_input_with_the_usage_line_and_no_traceback(
    db: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    # 2 is `moodring ask`'s code for a command it did not understand (as argparse's).
    assert main(["--db", str(db), "ask", text]) == 2
    out, err = capsys.readouterr()
    name, _ = parse_command_text(text)
    assert COMMANDS.usage(name) in err
    assert out == "" and "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/digest 8 europe/berlin", "at 08:00 Europe/Berlin"),
        ("/digest 0", "at 00:00 UTC"),
        ("/settings quiet 22-7 America/Argentina/Buenos_Aires", "22:00–07:00 America/Argent"),
        ("/settings quiet 23-6 Etc/GMT+5", "23:00–06:00 Etc/GMT+5"),
        ("/settings extreme 20 80", "≤ 20 (fear) or ≥ 80 (greed)"),
        ("/settings cooldown 1.5h", "cooldown between alerts: 1.5 h"),
        ("/levels BTC add 1.5k", "level $1,500 added"),
    ],
)
def test_good_input_is_still_understood(db: Path, text: str, expected: str) -> None:
    cmd, ctx, store = ask(db, text)
    try:
        result = answer(cmd, ctx)
    finally:
        store.close()
    assert result.ok, result.reply.text
    assert expected in result.reply.text


@pytest.mark.parametrize("error", [ValueError("bad int"), IsADirectoryError(21, "zone dir")])
def test_dispatcher_turns_a_parser_error_into_the_usage_line(
    db: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    def raises(cmd: Command, ctx: CommandContext) -> Reply:
        raise error

    spec = COMMANDS.get("trending")
    assert spec is not None
    monkeypatch.setitem(COMMANDS._specs, "trending", dataclasses.replace(spec, handler=raises))
    cmd, ctx, store = ask(db, "/trending")
    try:
        with caplog.at_level(logging.WARNING, logger="bot.chat.commands"):
            result = answer(cmd, ctx)
    finally:
        store.close()
    assert result.problem == "usage"
    assert result.reply.text == "I could not read those arguments. Usage: /trending"
    # The operator still sees the parser's bug.
    assert any(r.exc_info and r.exc_info[1] is error for r in caplog.records)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("23", 23),
        ("007", 7),
        ("24", None),
        ("", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1_0", None),
        ("²", None),
        ("٢", None),
        ("9" * 10, None),
        ("9" * 5000, None),
    ],
)
def test_whole_number_takes_only_short_ascii_digits_in_range(
    text: str, expected: int | None
) -> None:
    assert whole_number(text, 0, 23) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6", 6.0),
        ("0.5", 0.5),
        ("168", 168.0),
        ("169", None),
        ("nan", None),
        ("inf", None),
        ("1e2", None),
        ("-1", None),
        (".5", None),
        ("1_0", None),
        ("9" * 5000, None),
    ],
)
def test_decimal_number_takes_only_plain_ascii_decimals_in_range(
    text: str, expected: float | None
) -> None:
    assert decimal_number(text, 0, 168) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("UTC", "UTC"),
        ("Europe/Berlin", "Europe/Berlin"),
        ("europe/berlin", "Europe/Berlin"),
        ("Etc/GMT+5", "Etc/GMT+5"),
        ("Europe", None),
        ("Europe/", None),
        ("/etc/passwd", None),
        ("../zoneinfo/UTC", None),
        ("Mars/Olympus", None),
        ("A" * 300, None),
        ("Europe/Berlin\x00", None),
    ],
)
def test_timezone_name_accepts_only_real_zones(text: str, expected: str | None) -> None:
    assert timezone_name(text) == expected
