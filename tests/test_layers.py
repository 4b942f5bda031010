"""The layers rule: connectors and nlp never import bot nor each other; bot imports downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"connectors": {"bot", "nlp"}, "nlp": {"bot", "connectors"}}
SDKS = {"torch", "transformers", "onnxruntime", "tokenizers"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upwards_or_sideways(layer: str) -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(imported_roots(p) & FORBIDDEN[layer])
        for p in (ROOT / layer).rglob("*.py")
        if imported_roots(p) & FORBIDDEN[layer]
    }
    assert offenders == {}


@pytest.mark.parametrize("layer", ["bot", "connectors"])
def test_only_nlp_imports_the_model_libraries(layer: str) -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(imported_roots(p) & SDKS)
        for p in (ROOT / layer).rglob("*.py")
        if imported_roots(p) & SDKS
    }
    assert offenders == {}


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(p.relative_to(ROOT))
        for layer in ("bot", "nlp", "connectors")
        for p in (ROOT / layer).rglob("*.py")
        if ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) is None
    ]
    assert missing == []


# --- inside bot/: sub-packages, each a concept, importing only downwards -------------------
#: What each part of bot/ may import from bot/ ("kernel" = the modules directly in bot/:
#: types, errors, settings, paths, render). Anything not listed is forbidden.
BOT_RULES = {
    "kernel": {"kernel"},
    "mood": {"kernel", "mood"},
    "prefs": {"kernel", "prefs"},
    "store": {"kernel", "store", "mood", "prefs"},
    "market": {"kernel", "market", "mood", "store"},
    "track": {"kernel", "track", "market", "mood", "store"},
    "pipeline": {"kernel", "pipeline", "mood", "prefs", "market", "store", "track"},
    "chat": {"kernel", "chat", "mood", "prefs", "market", "store", "pipeline", "track"},
    "web": {"kernel", "web", "mood", "prefs", "market", "store", "pipeline", "chat", "track"},
    "app": {
        "kernel",
        "app",
        "mood",
        "prefs",
        "market",
        "store",
        "pipeline",
        "chat",
        "track",
        "web",
    },
}


def bot_part(module: str) -> str:
    """The part of bot/ a dotted module name belongs to (``bot.mood.index`` → ``mood``)."""
    parts = module.split(".")
    if len(parts) > 1 and (ROOT / "bot" / parts[1]).is_dir():
        return parts[1]
    return "kernel"


def bot_imports(path: Path) -> set[str]:
    """Every ``bot...`` module imported by ``path``, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bot"}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split(".")[0] == "bot"
        ):
            found.add(node.module)
            if node.module == "bot":  # from bot import store
                found |= {f"bot.{a.name}" for a in node.names}
    return found


def test_every_bot_subpackage_has_a_rule() -> None:
    parts = {p.name for p in (ROOT / "bot").iterdir() if (p / "__init__.py").is_file()}
    assert parts | {"kernel"} == set(BOT_RULES)


def test_bot_subpackages_import_only_downwards() -> None:
    offenders = {}
    for path in (ROOT / "bot").rglob("*.py"):
        rel = path.relative_to(ROOT / "bot")
        part = rel.parts[0] if len(rel.parts) > 1 else "kernel"
        bad = sorted(m for m in bot_imports(path) if bot_part(m) not in BOT_RULES[part])
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_the_bot_rules_have_no_cycle() -> None:
    order: list[str] = []
    rules = {k: v - {k} for k, v in BOT_RULES.items()}
    while rules:
        ready = [k for k, deps in rules.items() if deps <= set(order)]
        assert ready, f"a cycle among {sorted(rules)}"
        order += sorted(ready)
        for k in ready:
            del rules[k]
