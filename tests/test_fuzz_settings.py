"""Fuzzing the settings: generated TOML files (valid documents with random keys and values of
random types for the Settings fields, random bytes, broken documents) and MOODRING_*
environment values, through ``moodring status`` (#14). Properties, whatever the settings:

1. the CLI exits 0 (the settings were good) or 2 (they were not), never with a traceback;
2. when it exits 2, it says why in one line on stderr, starting ``moodring: ``;
3. a secret put where it does not belong (a bot token as a number, a list entry, a table key,
   a log level) is never echoed: not in stderr, not in stdout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import math
import string
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_settings import SettingsError

from bot.app.cli import main
from bot.app.wiring import market_weights, pipeline_config
from bot.errors import ConfigError
from bot.settings import Settings, load_settings
from bot.store import Store
from tests.fuzz_checks import fuzz

FIELDS = sorted(Settings.model_fields)
#: Variables that would steer the run away from the files under test.
NOT_FUZZED = {"db", "model_dir"}
FUZZ = fuzz(250)


# ---------------------------------------------------------------------- TOML, written by hand


def toml_string(text: str) -> str:
    """A TOML basic string (control characters escaped; TOML allows no raw ones)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (inline tables and arrays for nested ones)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(values: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in values.items())


# ---------------------------------------------------------------------- generated settings

# Any character TOML can hold (no lone surrogates: they are not UTF-8).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    text,
    st.sampled_from(["BTC", "telegram:12345", "discord:-1", "cpu", "DEBUG", "60k", "1e3", ""]),
    st.dates(),
    st.datetimes(timezones=st.just(dt.UTC)),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
keys = st.one_of(st.sampled_from([f for f in FIELDS if f not in NOT_FUZZED]), text)


def typed(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of about the field's own type, edges included (0, negatives, 2**63 - 1, nan,
    inf, empty lists), so that most documents load and their values are what gets tested."""
    kind = str(annotation)
    if "SecretStr" in kind:
        return st.one_of(tokens, text)
    if "dict" in kind:
        names = st.sampled_from(["social", "volume", "volatility", "momentum", "drawdown"])
        return st.dictionaries(names | text, st.floats() | st.integers(-5, 5), max_size=3)
    if "tuple[int" in kind:
        return st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3)
    if "tuple[str" in kind:
        return st.lists(text | st.sampled_from(["BTC", "telegram:1", "discord:-5"]), max_size=3)
    if "int" in kind:
        return st.integers(-(2**63), 2**63 - 1)
    if "float" in kind:
        return st.floats() | st.integers(-(2**63), 2**63 - 1)
    return text


@st.composite
def typed_documents(draw: st.DrawFn) -> str:
    """A document setting a few fields, each to a value of about its type."""
    names = draw(st.lists(st.sampled_from(sorted(set(FIELDS) - NOT_FUZZED)), max_size=4))
    doc = {n: draw(typed(Settings.model_fields[n].annotation)) for n in names}
    return toml_document({k: v for k, v in doc.items() if v is not None})


documents = st.one_of(
    typed_documents(), st.dictionaries(keys, values, max_size=6).map(toml_document)
)
#: A bot token as Telegram issues them: the bot's id, a colon, 35 secret characters.
tokens = st.builds(
    "{}:{}".format,
    st.integers(10**8, 10**10),
    st.text(string.ascii_letters + string.digits + "_-", min_size=35, max_size=35),
)
#: Fields that do not take a token, and the shapes a misplaced one takes there.
MISPLACED = ["batch_size", "tick_s", "log_level", "operators", "communities", "public_sources",
             "alert_assets", "discord_channel_ids", "market_weights", "inbox_retention_days",
             "x_price_per_read_usd", "retention_days", "alert_min_authors"]  # fmt: skip
#: The longest piece of a secret that may show (a shorter one could be anything).
SHOWN = 12
SHAPES = [
    lambda t: t,
    lambda t: [t],
    lambda t: {t: 1.0},
    lambda t: {t: "x"},  # a bad table entry is named by its key
    lambda t: {"social": t},
]

env_values = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40
) | st.sampled_from(['["BTC"]', "[]", "{}", '{"social": 2}', "nan", "-1", "0", "true", "1e999"])
envs = st.dictionaries(
    st.sampled_from([f for f in FIELDS if f not in NOT_FUZZED]).map(lambda f: f"MOODRING_{f}"),
    env_values,
    max_size=3,
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database for ``moodring status`` to report on."""
    path = tmp_path_factory.mktemp("fuzz-settings") / "moodring.db"
    Store(path).close()
    return path


def run_status(config: bytes, env: dict[str, str], db: Path, where: Path) -> tuple[int, str, str]:
    """``moodring --config FILE --db DB status`` with ``env`` set: its exit code, stdout
    and stderr."""
    path = where / "moodring.toml"
    path.write_bytes(config)
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(path), "--db", str(db), "status"])
    return code, out.getvalue(), err.getvalue()


def check_exit(code: int, err: str) -> None:
    """Properties 1 and 2."""
    assert code in (0, 2)
    assert "Traceback" not in err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("moodring: ")


# ---------------------------------------------------------------------- the properties


@FUZZ
@given(config=documents, env=envs)
def test_any_toml_document_and_env_give_settings_or_one_line_and_exit_2(
    db: Path, tmp_path_factory: pytest.TempPathFactory, config: str, env: dict[str, str]
) -> None:
    where = tmp_path_factory.mktemp("toml", numbered=True)
    code, _, err = run_status(config.encode(), env, db, where)
    check_exit(code, err)


@FUZZ
@given(
    config=st.one_of(
        st.binary(max_size=200),
        # A valid document broken by one byte: a cut, or a byte put in.
        st.builds(
            lambda doc, at, byte: doc[:at] + byte + doc[at + 1 :],
            documents.map(str.encode),
            st.integers(0, 200),
            st.sampled_from([b"", b"\xff", b"\x00", b"[", b'"', b"=", b"\n", b"\xc3", b"\r"]),
        ),
    )
)
@example(config=b"\xff\xfe")  # not UTF-8
@example(config=b'assets = ["BTC"]\n[assets]\n')  # a key defined twice
def test_any_bytes_as_the_settings_file_give_one_line_and_exit_2_or_settings(
    db: Path, tmp_path_factory: pytest.TempPathFactory, config: bytes
) -> None:
    where = tmp_path_factory.mktemp("bytes", numbered=True)
    code, _, err = run_status(config, {}, db, where)
    check_exit(code, err)


#: Errors that say the settings are wrong (the CLI turns each into one line and exit 2).
REFUSED = (ValidationError, SettingsError, tomllib.TOMLDecodeError, ConfigError)


@FUZZ
@given(config=documents, env=envs)
@example(config="tick_s = 0\n", env={})  # no tick ever follows the last: the index stalls
@example(config="alert_max_age_s = inf\n", env={})  # timedelta(seconds=inf) raises in `run`
@example(config="inbox_retention_days = 1e300\n", env={})
@example(config="alert_max_age_s = 8e-148\n", env={})  # found: 0 as a timedelta
@example(config="x_poll_s = 1e-9\n", env={"MOODRING_PRICE_POLL_S": "0"})  # polls that spin
@example(config="x_max_pages = 0\n", env={})
@example(config="retention_days = -1\n", env={})
@example(config="x_price_per_read_usd = nan\n", env={})
@example(
    config='market_weights = {"1234567890:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" = 1.0}\n', env={}
)
def test_settings_that_load_are_settings_the_bot_can_run_with(
    tmp_path_factory: pytest.TempPathFactory, config: str, env: dict[str, str]
) -> None:
    """What ``load_settings`` accepts, ``moodring run`` can use: every interval is positive
    and finite (a tick of 0 s never advances; an infinite age is no timedelta), every count
    at least 1, and the market weights are weights or a clear ConfigError naming no secret."""
    path = tmp_path_factory.mktemp("usable", numbered=True) / "moodring.toml"
    path.write_text(config)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        try:
            loaded = load_settings(path)
        except REFUSED:
            return
    pipeline_config(loaded)
    for seconds in (loaded.tick_s, loaded.alert_max_age_s, loaded.x_poll_s, loaded.price_poll_s):
        assert timedelta(seconds=seconds) > timedelta(0)
    assert timedelta(seconds=loaded.max_clock_skew_s) >= timedelta(0)
    assert timedelta(days=loaded.inbox_retention_days) >= timedelta(0)
    if loaded.retention_days is not None:
        assert timedelta(days=loaded.retention_days) > timedelta(0)
    assert loaded.batch_size >= 1 and loaded.x_max_pages >= 1 and loaded.queue_size >= 1
    assert loaded.x_monthly_read_cap >= 0
    assert math.isfinite(loaded.x_price_per_read_usd) and loaded.x_price_per_read_usd >= 0
    try:
        market_weights(loaded)
    except ConfigError as exc:
        assert len(str(exc).splitlines()) == 1
        assert "AAAAAAAAAAAA" not in str(exc)


@FUZZ
@given(
    token=tokens,
    field=st.sampled_from(MISPLACED),
    shape=st.sampled_from(SHAPES),
    in_env=st.booleans(),
)
def test_a_misplaced_token_is_never_echoed(
    db: Path,
    tmp_path_factory: pytest.TempPathFactory,
    token: str,
    field: str,
    shape: Any,
    in_env: bool,
) -> None:
    where = tmp_path_factory.mktemp("token", numbered=True)
    value = shape(token)
    if in_env:
        env_value = value if isinstance(value, str) else __import__("json").dumps(value)
        code, out, err = run_status(b"", {f"MOODRING_{field}": env_value}, db, where)
    else:
        code, out, err = run_status(toml_document({field: value}).encode(), {}, db, where)
    check_exit(code, err)
    secret = token.split(":", 1)[1].lower()
    shown = (out + err).lower()
    # Not even a part of it: twelve characters of 35 are a third of the secret.
    for i in range(len(secret) - SHOWN + 1):
        assert secret[i : i + SHOWN] not in shown, err
