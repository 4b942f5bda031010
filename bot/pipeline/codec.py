"""JSON codecs for the queue items (``ScoreChunk``, ``ScoredChunk``): exact round trips.

A payload is one JSON object, ``{"type": "ScoreChunk", "v": 1, "item": {...}}``, whose item
follows the dataclasses' own type hints: nested dataclasses are objects, tuples are lists,
datetimes are ISO text with their full offset and microseconds, ``None`` is ``null``. Decoding
an item and comparing it with the original gives equality, whatever the text holds: strings
are written as UTF-8 with ``surrogatepass``, so a lone surrogate (which a ``str`` can hold, e.g.
half an emoji cut by a platform) comes back as itself, and two lone halves written apart are
not merged into one character as JSON's ``\\ud83d\\ude00`` escapes would be. (A datetime's
``fold`` is not carried: equality ignores it, and the offset written says which time it was.)

``decode`` raises ``CodecError`` for anything that is not exactly such an item (bad bytes,
bad JSON, a missing or unknown field, a wrong type), so a queue can set the entry aside
instead of crashing its consumer.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from bot.pipeline.work import ScoreChunk, ScoredChunk

T = TypeVar("T")

#: The payload format's version: a reader refuses others rather than guessing.
VERSION = 1
_ENCODING = "utf-8"
# A str may hold lone surrogates; strict UTF-8 cannot encode them, surrogatepass can (and
# never pairs two lone halves into one character on the way back).
_ERRORS = "surrogatepass"


class CodecError(ValueError):
    """A payload that is not an item of the codec's type."""


class Codec(Protocol[T]):
    """Turns one queue item type into bytes and back."""

    @property
    def name(self) -> str: ...

    def encode(self, item: T) -> bytes: ...

    def decode(self, data: bytes) -> T: ...


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of dataclass ``cls`` (its module uses postponed annotations)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _optional_arm(hint: Any) -> Any | None:
    """``X`` for ``X | None``; None for any other hint."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(arms) == 1 and len(typing.get_args(hint)) == 2:
            return arms[0]
        raise TypeError(f"unsupported union {hint!r}: only X | None")
    return None


def _check_schema(hint: Any, seen: set[type]) -> None:
    """Fail at import, not on the first message, if a field has a type we cannot carry."""
    arm = _optional_arm(hint)
    if arm is not None:
        _check_schema(arm, seen)
    elif typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported tuple {hint!r}: only tuple[X, ...]")
        _check_schema(args[0], seen)
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if hint not in seen:
            seen.add(hint)
            for field_hint in _hints(hint).values():
                _check_schema(field_hint, seen)
    elif hint not in (str, int, float, bool, datetime):
        raise TypeError(f"unsupported field type {hint!r}")


def _to_json(value: Any, hint: Any) -> Any:
    arm = _optional_arm(hint)
    if arm is not None:
        return None if value is None else _to_json(value, arm)
    if typing.get_origin(hint) is tuple:
        (inner, _) = typing.get_args(hint)
        return [_to_json(v, inner) for v in value]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return {name: _to_json(getattr(value, name), h) for name, h in _hints(hint).items()}
    if hint is datetime:
        # isoformat keeps microseconds and the whole offset; iso() in the store would not.
        return value.isoformat()
    return value


def _from_json(data: Any, hint: Any, where: str) -> Any:
    arm = _optional_arm(hint)
    if arm is not None:
        return None if data is None else _from_json(data, arm, where)
    if typing.get_origin(hint) is tuple:
        (inner, _) = typing.get_args(hint)
        if not isinstance(data, list):
            raise CodecError(f"{where}: expected a list, got {type(data).__name__}")
        return tuple(_from_json(v, inner, f"{where}[{i}]") for i, v in enumerate(data))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(data, dict):
            raise CodecError(f"{where}: expected an object, got {type(data).__name__}")
        hints = _hints(hint)
        unknown = sorted(set(data) - set(hints))
        if unknown:
            raise CodecError(f"{where}: unknown fields {unknown}")
        missing = sorted(set(hints) - set(data))
        if missing:
            raise CodecError(f"{where}: missing fields {missing}")
        values = {name: _from_json(data[name], h, f"{where}.{name}") for name, h in hints.items()}
        try:
            return hint(**values)
        except (TypeError, ValueError) as exc:  # the type's own checks (aware datetimes)
            raise CodecError(f"{where}: {exc}") from None
    if hint is datetime:
        if not isinstance(data, str):
            raise CodecError(f"{where}: expected ISO text, got {type(data).__name__}")
        try:
            return datetime.fromisoformat(data)
        except ValueError as exc:
            raise CodecError(f"{where}: {exc}") from None
    if hint is float:
        # JSON writes 2.0 as 2.0 but a float field given an int writes an int: both are fine.
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise CodecError(f"{where}: expected a number, got {type(data).__name__}")
        try:
            return float(data)
        except OverflowError as exc:
            raise CodecError(f"{where}: {exc}") from None
    if hint is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise CodecError(f"{where}: expected an integer, got {type(data).__name__}")
        return data
    if type(data) is not hint:  # str, bool
        raise CodecError(f"{where}: expected {hint.__name__}, got {type(data).__name__}")
    return data


@dataclasses.dataclass(frozen=True, slots=True)
class JsonCodec(Generic[T]):
    """The JSON codec of one frozen dataclass type (its fields as described above)."""

    cls: type[T]

    def __post_init__(self) -> None:
        _check_schema(self.cls, set())

    @property
    def name(self) -> str:
        return self.cls.__name__

    def encode(self, item: T) -> bytes:
        if not isinstance(item, self.cls):
            raise TypeError(f"{self.name} codec given a {type(item).__name__}")
        envelope = {"type": self.name, "v": VERSION, "item": _to_json(item, self.cls)}
        # ensure_ascii=False: characters travel as themselves (no \\u pairs to be merged).
        text = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
        return text.encode(_ENCODING, _ERRORS)

    def decode(self, data: bytes) -> T:
        try:
            envelope = json.loads(data.decode(_ENCODING, _ERRORS))
        except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
            raise CodecError(f"not a JSON payload: {exc}") from None
        if not isinstance(envelope, dict) or set(envelope) != {"type", "v", "item"}:
            raise CodecError("not a queue item envelope")
        if envelope["type"] != self.name:
            raise CodecError(f"expected a {self.name}, got {envelope['type']!r}")
        if envelope["v"] != VERSION or isinstance(envelope["v"], bool):
            raise CodecError(f"unsupported payload version {envelope['v']!r}")
        item: T = _from_json(envelope["item"], self.cls, self.name)
        return item


#: The codecs of the two queues between the stages.
SCORE_CHUNKS: JsonCodec[ScoreChunk] = JsonCodec(ScoreChunk)
SCORED_CHUNKS: JsonCodec[ScoredChunk] = JsonCodec(ScoredChunk)
