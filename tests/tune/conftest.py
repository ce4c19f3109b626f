"""Fixtures of the tune tests: `postgres_url`, a real PostgreSQL database for Optuna storages."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pgserver import PgUnavailable, start_server

URL_ENV = "TRAINWELL_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL (postgresql+psycopg2://...) of an empty database on a throwaway server
    that this test session starts (pgserver.py) and stops and deletes at its end; shared by the
    session's tests, so use unique study names. $TRAINWELL_TEST_POSTGRES_URL, when set, is used
    instead. Skips the test with the reason when no server can run here."""
    url = os.environ.get(URL_ENV)
    if url:
        yield url
        return
    try:
        server = start_server()
    except PgUnavailable as e:
        pytest.skip(str(e))
    try:
        yield server.url
    finally:
        server.stop()
