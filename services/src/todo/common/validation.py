"""Input checks shared by all services: text PostgreSQL can store, times it can represent."""

from __future__ import annotations

from datetime import UTC, datetime

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
