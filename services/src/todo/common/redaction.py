"""Removing secrets from log events, by key name and by value pattern."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

# Keys whose values are secret whatever they hold.
_SECRET_KEY = re.compile(
    r"pass(word|wd)?|pwd|secret|token|authori[sz]ation|api[_-]?key|cookie|credential|private[_-]?key"
    r"|dsn|database[_-]?url|connection[_-]?string|conn[_-]?str",
    re.IGNORECASE,
)
# Keys that look secret by the pattern above but only name or count things.
_HARMLESS_KEYS = frozenset({"token_type", "password_changed"})

_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization header values.
    (re.compile(r"\b(Bearer|Basic|Digest)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE), r"\1 " + REDACTED),
    # JSON Web Tokens anywhere in a string.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # user:password@ in URLs and connection strings.
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+@"), r"\1" + REDACTED + "@"),
    # key=value pairs (query strings, libpq/ODBC connection strings, Kafka SASL configs).
    (
        re.compile(
            r"\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|sharedaccesskey)"
            r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&;,\"']+)",
            re.IGNORECASE,
        ),
        r"\1\2" + REDACTED,
    ),
)


# Every value pattern above needs one of these words in the text. One search for them is far
# cheaper than four substitutions, and almost every logged string has none of them. The search runs
# on the lower-cased text: a case-insensitive alternation is about five times slower.
_MAY_HOLD_SECRET = re.compile(r"bearer|basic|digest|eyj|://|pass|pwd|secret|token|key")


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    return key.lower() not in _HARMLESS_KEYS and _SECRET_KEY.search(key) is not None


def redact_text(text: str) -> str:
    """Replace secret-looking parts of a string."""
    if _MAY_HOLD_SECRET.search(text.lower()) is None:
        return text
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, depth: int = 0) -> Any:
    """Redact strings, and recurse into mappings and sequences (bounded depth)."""
    if isinstance(value, str):
        return redact_text(value)
    if depth > 8:
        return value
    if isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and is_secret_key(k) and v is not None
                else redact_value(v, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v, depth + 1) for v in value]
    return value


def redact_field(key: str, value: Any) -> Any:
    """One field of a log line: all of it if the key names a secret, else its secret-looking parts."""
    if is_secret_key(key) and value is not None:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping | list | tuple):
        return redact_value(value)
    return value
