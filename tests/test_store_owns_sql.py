"""The Store owns its SQL: no SQL text and no raw queries on a store in bot/ outside bot/store/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Upper-case keywords only, so prose ("select an asset from the list") is not taken for SQL.
SQL = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER)\b.*\b(FROM|INTO|SET|TABLE|WHERE)\b",
    re.DOTALL,
)
#: A call ``<x>.query(...)`` or ``<x>.execute(...)`` whose receiver's last name is one of these
#: is raw SQL against the database (``self._lsh.query`` in bot/mood/spam.py is not).
RAW_CALLS = {"query", "execute", "executemany", "executescript"}
DB_RECEIVER = re.compile(r"(store|db|conn|connection|cursor|cur)$")

#: Files allowed to hold SQL outside bot/store/: none.
KNOWN: set[str] = set()


def _receiver_name(node: ast.expr) -> str:
    """The last name of a call's receiver: ``ctx.store`` → ``store``, ``self.db`` → ``db``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def sql_uses(path: Path) -> list[str]:
    """Where ``path`` holds SQL text or runs a raw query on the database, as ``line: what``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL.search(node.value):
                found.append((node.lineno, f"SQL text {node.value[:60]!r}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in RAW_CALLS
            and DB_RECEIVER.search(_receiver_name(node.func.value))
        ):
            found.append((node.lineno, f"{ast.unparse(node.func)}(...)"))
    return [f"{line}: {what}" for line, what in sorted(found)]


def offenders() -> dict[str, list[str]]:
    store = ROOT / "bot" / "store"
    return {
        path.relative_to(ROOT).as_posix(): uses
        for path in sorted((ROOT / "bot").rglob("*.py"))
        if store not in path.parents and (uses := sql_uses(path))
    }


def test_sql_lives_only_in_bot_store() -> None:
    found = {name: uses for name, uses in offenders().items() if name not in KNOWN}
    assert found == {}, "move these into named Store methods (bot/store/)"


def test_the_check_sees_sql_and_raw_queries(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(store, ctx, lsh):\n"
        '    store.query("SELECT 1")\n'
        "    ctx.store.db.execute(sql)\n"
        '    sql = "DELETE FROM outbox" " WHERE sent_at IS NULL"\n'
        "    lsh.query(x)\n"
        '    return "Select an asset from the list, then update where you set it."\n',
        encoding="utf-8",
    )
    assert [use.split(":")[0] for use in sql_uses(sample)] == ["2", "3", "4"]
