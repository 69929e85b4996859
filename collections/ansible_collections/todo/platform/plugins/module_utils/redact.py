# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redaction of secrets in what a support bundle collects (pure logic of support_bundle).

Three nets, because a secret can surface anywhere (a literal env value, a Dapr component's inline
metadata, an event message, a log line):
- known values: every value of the Secrets in the collected namespaces (and any given), also
  base64- and URL-encoded, is replaced wherever it appears;
- names: a field named like a credential (``password``, ``token``, ``secret``, ``key``, ...) keeps
  its name, not its string value, and so does an env entry or metadata item ``{name, value}``;
- shapes: bearer tokens, JWTs, credentials in URLs and ``key=value`` pairs of connection strings.
"""

from __future__ import annotations

import base64
import re
import urllib.parse

REDACTED = "<redacted>"
#: Values shorter than this are not replaced as known values (they would match everywhere).
MIN_KNOWN_LENGTH = 6

_SECRET_NAME = re.compile(
    r"(pass(word|wd)?|pwd|secret|token|credential|connection.?string|private.?key|"
    r"access.?key|api.?key|auth)",
    re.IGNORECASE,
)
# Fields that hold only the name of a Secret (volumes, chart values), never a value.
_REFERENCE_NAME = re.compile(r"(secret.?name|existing.?secret)$", re.IGNORECASE)
_SHAPES = [
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"), REDACTED),
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/@\s\"']+:)[^@/\s\"']+@"), r"\1" + REDACTED + "@"),
    (
        re.compile(
            r"(?i)\b((?:password|passwd|pwd|secret|token|sharedaccesskey|accountkey|apikey)\s*[=:]\s*)"
            r"(?!<redacted>)[^\s;&,\"']+"
        ),
        r"\1" + REDACTED,
    ),
]


def _variants(value):
    out = {value}
    out.add(urllib.parse.quote(value, safe=""))
    out.add(base64.b64encode(value.encode()).decode())
    return {v for v in out if len(v) >= MIN_KNOWN_LENGTH}


class Redactor:
    def __init__(self, known_values=()):
        values = set()
        for value in known_values:
            if isinstance(value, str) and len(value) >= MIN_KNOWN_LENGTH:
                values |= _variants(value)
        # longest first, so that a value containing another is replaced whole
        self.known = sorted(values, key=len, reverse=True)
        self.count = 0

    def text(self, value):
        for known in self.known:
            if known in value:
                self.count += value.count(known)
                value = value.replace(known, REDACTED)
        for pattern, replacement in _SHAPES:
            value, n = pattern.subn(replacement, value)
            self.count += n
        return value

    def _named(self, name):
        return bool(_SECRET_NAME.search(name)) and not _REFERENCE_NAME.search(name)

    def data(self, obj, name=""):
        """A copy of JSON-like ``obj`` with secrets redacted."""
        if isinstance(obj, dict):
            # {name: ..., value: ...}: env entries, Dapr component metadata items
            item_name = obj.get("name") if isinstance(obj.get("name"), str) else None
            out = {}
            for key, value in obj.items():
                if isinstance(value, str) and (
                    self._named(key) or (key == "value" and item_name and self._named(item_name))
                ):
                    self.count += 1
                    out[key] = REDACTED
                else:
                    out[key] = self.data(value, key)
            return out
        if isinstance(obj, list):
            return [self.data(item, name) for item in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj

    def leaks(self, text):
        """The known values still present in ``text`` (a final check: must be empty)."""
        return [k for k in self.known if k in text]
