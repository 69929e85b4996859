"""Removing secrets from log events, by key name and by value pattern."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
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

#: Longest text scanned; the rest of a longer string is dropped from the log line. The server caps a
#: request line at 8 KiB (todo.common.http), so a request path is never cut.
MAX_SCANNED_CHARS = 32 * 1024
_TRUNCATED = "…[truncated]"

# user:password@ in URLs and connection strings: "scheme://user:" found by a pattern, the password
# runs to the next "@" (redacted) unless whitespace or the end comes first (left alone). A pattern
# for the whole of it fails at every "scheme://user:" not followed by an "@" after scanning to the
# end, quadratic in a string of many such prefixes; here each stretch is scanned once.
_URL_USER = re.compile(r"(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]{0,31}+://[^:/@\s]*+:")
_PASSWORD_END = re.compile(r"[@\s]")


def _mask_url_passwords(text: str) -> str:
    if "://" not in text:
        return text
    parts: list[str] = []
    copied = 0  # text[:copied] is in parts
    position = 0
    while (prefix := _URL_USER.search(text, position)) is not None:
        start = prefix.end()
        stop = _PASSWORD_END.search(text, start)
        if stop is None:  # no "@" and no whitespace after here: nothing more to mask
            break
        end = stop.start()
        if text[end] == "@" and end > start:
            parts += (text[copied:start], REDACTED)
            copied = position = end
        else:
            # Every prefix that starts before this whitespace reaches the same whitespace.
            position = end + 1
    if not parts:
        return text
    parts.append(text[copied:])
    return "".join(parts)


_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization header values.
    (re.compile(r"\b(Bearer|Basic|Digest)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE), r"\1 " + REDACTED),
    # JSON Web Tokens anywhere in a string. A token starts where a run of token characters starts
    # (the look-behind) and each segment is taken whole (possessive): one attempt per run, not one
    # per character, so a long run of "eyJ-" costs linear time, not quadratic.
    (re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]*+"), REDACTED),
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


#: The substitutions in the order they run (the URL rule third, where its pattern used to be).
_REDACTIONS: tuple[Callable[[str], str], ...] = (
    *(partial(pattern.sub, replacement) for pattern, replacement in _VALUE_PATTERNS[:2]),
    _mask_url_passwords,
    *(partial(pattern.sub, replacement) for pattern, replacement in _VALUE_PATTERNS[2:]),
)

# Every value pattern above needs one of these words in the text. One search for them is far
# cheaper than four substitutions, and almost every logged string has none of them. The search runs
# on the lower-cased text: a case-insensitive alternation is about five times slower.
_MAY_HOLD_SECRET = re.compile(r"bearer|basic|digest|eyj|://|pass|pwd|secret|token|key")


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    return key.lower() not in _HARMLESS_KEYS and _SECRET_KEY.search(key) is not None


def redact_text(text: str) -> str:
    """Replace secret-looking parts of a string (linear time; at most MAX_SCANNED_CHARS are kept)."""
    truncated = len(text) > MAX_SCANNED_CHARS
    if truncated:
        text = _cut(text)
    if _MAY_HOLD_SECRET.search(text.lower()) is not None:
        for substitute in _REDACTIONS:
            text = substitute(text)
    return text + _TRUNCATED if truncated else text


def _cut(text: str) -> str:
    """The first MAX_SCANNED_CHARS of ``text``, without a final word that may be the head of a
    secret cut in two (a URL password before its "@" would no longer be recognised)."""
    head = text[:MAX_SCANNED_CHARS]
    tail_start = max(head.rfind(" "), head.rfind("\n"), MAX_SCANNED_CHARS - 1024)
    tail = head[tail_start:]
    if _MAY_HOLD_SECRET.search(tail.lower()) is not None or "@" in tail:
        return head[:tail_start]
    return head


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


_SCALARS = frozenset({int, float, bool, type(None)})


def redact_field(key: str, value: Any) -> Any:
    """One field of a log line: all of it if the key names a secret, else its secret-looking parts."""
    if is_secret_key(key) and value is not None:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if type(value) in _SCALARS:  # most fields: spares the Mapping check, a slow ABC look-up
        return value
    if isinstance(value, Mapping | list | tuple):
        return redact_value(value)
    return value
