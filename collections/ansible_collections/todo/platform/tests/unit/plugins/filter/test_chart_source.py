# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one rule for chart sources: a repository URL goes with a plain chart name only."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.todo.platform.plugins.filter.chart_source import (
    FilterModule,
    chart_is_name,
    chart_repo_url,
)

URL = "https://dapr.github.io/helm-charts"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("dapr", URL),
        ("oci://registry.example.test/charts/dapr", ""),
        ("/srv/charts/dapr-1.18.3.tgz", ""),
        ("dapr-1.18.3.tgz", ""),
        ("mirror/dapr", ""),
        ("./charts/dapr", ""),
    ],
)
def test_the_repository_url_goes_with_a_plain_chart_name_only(ref, expected):
    assert chart_repo_url(ref, URL) == expected
    assert chart_is_name(ref) is (expected == URL)


def test_no_url_for_a_plain_name_stays_empty():
    assert chart_repo_url("dapr", "") == "" and chart_repo_url("dapr", None) == ""


@pytest.mark.parametrize("ref", ["", "  ", None, 3])
def test_a_missing_reference_is_a_clear_error(ref):
    with pytest.raises(AnsibleFilterError, match="chart reference .* expected a non-empty string"):
        chart_repo_url(ref, URL)


def test_the_filters_are_exported():
    assert set(FilterModule().filters()) == {"chart_is_name", "chart_repo_url"}
