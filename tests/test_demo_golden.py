"""The demo's printed report against its golden file (tests/golden/demo.txt).

The file was committed at the start of the bot/ redesign (#12): a refactor must not move the
timeline or the alerts. Only a model commit may regenerate it, in a commit of its own:
`python -m tests.test_demo_golden` rewrites it from a fresh demo run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bot.app.cli import main

GOLDEN = Path(__file__).parent / "golden" / "demo.txt"


def normalise(text: str) -> str:
    """The demo's output without what depends on the machine (database and model paths)."""
    first, _, rest = text.partition("\n")
    first = re.sub(r" → \S+ \(", " → <db> (", first)
    first = re.sub(r"model: [^)]+\)", "model: <model>)", first)
    return first + "\n" + rest


def run_demo(db: Path, capsys) -> str:
    assert main(["--db", str(db), "demo", "--no-progress"]) == 0
    return normalise(capsys.readouterr().out)


def sections(text: str) -> tuple[str, str]:
    """(alerts as they were sent, the report printed after the replay)."""
    live, marker, report = text.partition("\nreplayed ")
    assert marker, "the demo printed no report"
    return live, "replayed " + report


def test_the_demo_prints_its_golden_report(tmp_path: Path, capsys) -> None:
    got_live, got_report = sections(run_demo(tmp_path / "demo.db", capsys))
    want_live, want_report = sections(GOLDEN.read_text(encoding="utf-8"))
    assert got_report.splitlines() == want_report.splitlines()
    assert got_live.splitlines() == want_live.splitlines()


if __name__ == "__main__":  # regenerate: only in a model commit of its own
    import contextlib
    import io
    import tempfile

    buf = io.StringIO()
    with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(buf):
        code = main(["--db", str(Path(d) / "demo.db"), "demo", "--no-progress"])
    if code != 0:
        sys.exit(code)
    GOLDEN.write_text(normalise(buf.getvalue()), encoding="utf-8")
