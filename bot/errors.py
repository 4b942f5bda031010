"""Errors of the bot layer, and the translation of the lower layers' errors.

BotError
 ├── ConfigError      settings or files the user gave are wrong (one clear line, exit 2)
 ├── ModelUnavailable the scorer could not be loaded (from nlp.ModelLoadError)
 ├── SourceFailed     a message source failed (from connectors.ConnectorError)
 └── StoreError       the database could not be opened or migrated
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error raised by the bot layer."""


class ConfigError(BotError):
    """A setting or a file named by the user is wrong."""


class ModelUnavailable(BotError):
    """The sentiment model could not be loaded."""


class SourceFailed(BotError):
    """A message source failed."""


class StoreError(BotError):
    """The database could not be opened or migrated."""
