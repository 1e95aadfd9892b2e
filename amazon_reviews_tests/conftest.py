"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database and data
folder per test that needs them, and a real Dagster instance stored in that server."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from amazon_reviews.config import Settings, load_settings
from amazon_reviews.io.embedded import EmbeddedServer, ServerInfo

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """The embedded PostgreSQL server, started once for the whole session."""
    root = tmp_path_factory.mktemp("pg")
    server = EmbeddedServer(root)
    info = server.ensure_running()
    yield info
    server.stop(mode="immediate")


def create_database(info: ServerInfo, name: str) -> str:
    conn = psycopg2.connect(info.url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return info.url(name)


@pytest.fixture
def source_url(pg_server: ServerInfo, request: pytest.FixtureRequest) -> str:
    """A fresh, empty source database for this test."""
    name = f"src_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    return create_database(pg_server, name)


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source_url: str, pg_server: ServerInfo
) -> dict[str, str]:
    """Environment pointing the project at a fresh data folder and source database, and at
    the session's instance database."""
    for key in list(os.environ):
        if key.startswith("AMAZON_REVIEWS") or key in (
            "NEON_DB_URL",
            "DAGSTER_PG_URL",
            "ALERT_WEBHOOK_URL",
            "PROMETHEUS_PUSHGATEWAY_URL",
            "DAGSTER_HOME",
        ):
            monkeypatch.delenv(key, raising=False)
    values = {
        "AMAZON_REVIEWS_HOME": str(REPO),
        "AMAZON_REVIEWS__DATA_DIR": str(tmp_path / "data"),
        "NEON_DB_URL": source_url,
        "DAGSTER_PG_URL": pg_server.url("dagster", driver="postgresql+psycopg2"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture
def instance(settings: Settings):
    """The real Dagster instance (PostgreSQL storage on the session server)."""
    from amazon_reviews.runner import get_instance

    inst = get_instance(settings)
    yield inst
    inst.dispose()
