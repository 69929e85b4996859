"""Input checks shared by all services: text PostgreSQL can store, times it can represent."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

MIN_YEAR = 1900
MAX_YEAR = 9998


def storable_text(value: str) -> str:
    """Reject NUL characters and lone surrogates (PostgreSQL text cannot hold them)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def utc_datetime(value: datetime) -> datetime:
    """A time-zone aware datetime in a sane range, converted to UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a time-zone offset (e.g. 2030-01-31T09:00:00Z)")
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year must be between {MIN_YEAR} and {MAX_YEAR}")
    return value.astimezone(UTC)


#: An RFC 3339 date-time with a time-zone offset and a year this platform stores (1900-9998). The
#: OpenAPI document publishes it as the ``pattern`` of every date-time the API accepts.
DATETIME_PATTERN = (
    r"^(?:19\d\d|[2-8]\d{3}|9[0-8]\d\d|99[0-8]\d|999[0-8])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
_DATETIME = re.compile(DATETIME_PATTERN)
#: Text PostgreSQL stores (storable_text): no NUL. A lone surrogate is refused too; no JSON Schema
#: pattern can name one (they are not characters).
STORABLE_TEXT_PATTERN = r"^[^\x00]*$"


def rfc3339_text(value: Any) -> Any:
    """Before parsing: a date-time given as JSON must be text of DATETIME_PATTERN (pydantic alone would
    also take numbers as Unix times and several other spellings the document does not allow)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATETIME.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 date-time with offset (e.g. 2030-01-31T09:00:00Z), "
            f"years {MIN_YEAR}-{MAX_YEAR}"
        )
    return value


#: A time-zone aware date-time of the API, converted to UTC; documented with its pattern.
ApiDatetime = Annotated[
    datetime,
    BeforeValidator(rfc3339_text),
    AfterValidator(utc_datetime),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN}),
]


def json_integer(value: Any) -> Any:
    """An integer as JSON Schema means it: a number without fraction (5 or 5.0), never true/false or
    "5" (pydantic's lax mode would take both)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value


#: Put after the Field() of an int so that its bounds still reach the JSON schema as minimum/maximum.
JSON_INTEGER = BeforeValidator(json_integer)
