"""The layers rule: connectors and nlp never import bot, nor each other."""

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
