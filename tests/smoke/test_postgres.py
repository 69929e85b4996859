"""PostgreSQL of the test bed is a real server: SQL round trip and password authentication."""

import uuid

import psycopg
import pytest

pytestmark = pytest.mark.testbed


def test_sql_round_trip(pg):
    dsn = pg.create_database(f"smoke_{uuid.uuid4().hex[:8]}")
    marker = uuid.uuid4().hex
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE note (id serial PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO note (body) VALUES (%s)", (marker,))
        conn.commit()
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT body FROM note").fetchall()
        version = conn.execute("SHOW server_version").fetchone()[0]
    assert rows == [(marker,)]
    assert int(version.split(".")[0]) >= 15


def test_wrong_password_is_rejected(pg):
    bad = f"postgresql://{pg.user}:not-the-password@{pg.host}:{pg.port}/postgres"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=10)
