"""alternative.me's `/fng/` shapes: the JSON document and its CSV layout, every value a string."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: alternative.me's ``date_format`` values and the dates they give (their default: world).
DATE_FORMATS = {"world": "%d-%m-%Y", "us": "%m-%d-%Y", "cn": "%Y-%m-%d", "kr": "%Y-%m-%d"}


@dataclass(frozen=True, slots=True)
class FngDay:
    """One day of the composite: its value (0-100), band and the day's midnight (UTC)."""

    day: datetime
    value: float
    band: str


def fng_document(
    name: str, days: Sequence[FngDay], until_update: int | None, error: str | None = None
) -> dict[str, Any]:
    """The JSON ``/fng/`` answers, newest day first.

    As alternative.me does, only the newest entry carries ``time_until_update`` (seconds to
    the next daily value, as a string); ``until_update`` None (a database that is not live)
    makes it "".
    """
    data: list[dict[str, str]] = []
    for i, d in enumerate(days):
        entry = {
            "value": str(round(d.value)),
            "value_classification": d.band,
            "timestamp": str(int(d.day.timestamp())),
        }
        if i == 0:
            entry["time_until_update"] = "" if until_update is None else str(until_update)
        data.append(entry)
    return {"name": name, "data": data, "metadata": {"error": error}}


def fng_csv(name: str, days: Sequence[FngDay], date_format: str, error: str | None = None) -> str:
    """``format=csv`` as alternative.me sends it: the CSV lines (``date,fng_value,
    fng_classification``, newest first) inside the JSON envelope's brackets, which the scripts
    written against it cut out between ``[`` and ``]``."""
    pattern = DATE_FORMATS[date_format]
    lines = ["date,fng_value,fng_classification"]
    lines += [f"{d.day.astimezone(UTC).strftime(pattern)},{round(d.value)},{d.band}" for d in days]
    body = "\n".join("\t\t" + line for line in lines)
    shown_error = "null" if error is None else '"' + error.replace('"', "'") + '"'
    return (
        "{\n"
        f'\t"name": "{name}",\n'
        '\t"data": [\n'
        f"{body}\n"
        "\t],\n"
        '\t"metadata": {\n'
        f'\t\t"error": {shown_error}\n'
        "\t}\n"
        "}\n"
    )
