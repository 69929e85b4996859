# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Chart sources: when a chart repository URL applies to a chart reference.

One rule for every role that installs a chart (and for the capacity preflight that renders them):
a repository URL goes with a plain chart name only. An ``oci://`` reference, a ``repo/chart``
name of a repository helm already knows, a chart archive (``.tgz``) or a chart directory carry
their own source, and helm refuses or misreads a ``--repo`` beside them.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text


def _ref(ref):
    if ref is None or not isinstance(ref, str) or not ref.strip():
        raise AnsibleFilterError(
            f"chart reference {ref!r}: expected a non-empty string "
            "(a chart name, repo/chart, oci://..., a .tgz archive or a chart directory)"
        )
    return to_text(ref).strip()


def chart_is_name(ref):
    """True for a plain chart name (served by a chart repository URL), False otherwise."""
    ref = _ref(ref)
    return "/" not in ref and not ref.endswith(".tgz")


def chart_repo_url(ref, url):
    """``url`` when ``ref`` is a plain chart name, else an empty string (``| default(omit, true)``
    or ``or omit`` then leaves the option out)."""
    if url is not None and not isinstance(url, str):
        raise AnsibleFilterError(f"chart repository URL {url!r}: expected a string")
    return (url or "") if chart_is_name(ref) else ""


class FilterModule:
    def filters(self):
        return {"chart_is_name": chart_is_name, "chart_repo_url": chart_repo_url}
