"""Where the shipped model and demo data are found, in a checkout and in an installed wheel."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

MODEL_NAME = "sentiment"


def model_candidates() -> list[Path]:
    """Places the shipped model may be, most specific first."""
    here = Path(__file__).resolve().parent
    return [
        here.parent / "models" / MODEL_NAME,  # a source checkout or an editable install
        Path(sys.prefix) / "share" / "moodring" / "models" / MODEL_NAME,  # pip install .
    ]


def default_model_dir() -> Path:
    """The first model directory that exists (or the checkout's path, for the error message)."""
    candidates = model_candidates()
    for path in candidates:
        if (path / "model.safetensors").is_file():
            return path
    return candidates[0]


def demo_file(name: str) -> Path:
    """A file of the bundled demo data set (package data of ``bot``)."""
    return Path(str(resources.files("bot") / "demo_data" / name))
