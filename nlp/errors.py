"""Errors of the nlp layer.

NlpError
 └── ModelLoadError  the model directory is missing, unreadable or fails its sha256 check
"""

from __future__ import annotations


class NlpError(Exception):
    """Base of every error raised by the nlp layer."""


class ModelLoadError(NlpError):
    """The model could not be loaded."""
