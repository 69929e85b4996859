"""Schemathesis against the OpenAPI, in-process (ASGI) on the real database: no input gives a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from backend_support import APP_TOKEN, make_settings, register_user
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from todo.backend.app import create_app
from todo.common.db import Database

pytestmark = pytest.mark.testbed

# A separate app instance: schemathesis runs ASGI apps on its own event loop thread. The schema is
# loaded at import (it needs no database); the fixture below points the app at the test database.
# (schemathesis' lazy `from_fixture` loader does not work with pytest 9.)
_app = create_app(make_settings("postgresql://unused@127.0.0.1:9/unused", dapr_ready_check=False))
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@pytest.fixture(scope="module")
async def fuzz_headers(client, backend_dsn):
    _app.state.db = Database(backend_dsn, pool_size=2, max_overflow=2, application_name="fuzz")
    u = await register_user(client)
    return {**u.headers, "dapr-api-token": APP_TOKEN}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_gives_a_server_error(case, fuzz_headers):
    case.call_and_validate(headers=fuzz_headers, checks=[not_a_server_error])
