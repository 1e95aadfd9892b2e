"""Security and reliability on the real embedded PostgreSQL: RBAC proved by logging in as each
role, the gold swap seen by a concurrent reader, secrets never written anywhere, retries across
a database that comes up late, and faults that leave every batch whole."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import psycopg2
import pytest

from amazon_reviews import generate
from amazon_reviews.config import Settings, load_settings
from amazon_reviews.io import rbac
from amazon_reviews.io.embedded import EmbeddedServer, ServerInfo
from amazon_reviews.io.lake import Lake
from amazon_reviews.io.postgres import SourceUnavailable, connect, create_source_schema
from amazon_reviews.io.source_load import load_chunks
from amazon_reviews.runner import add_batch, run_layers

PASSWORD = "Sup3r-s3cret-pa55word"


def _load(settings: Settings, n: int) -> None:
    load_chunks(settings, generate.generate(n, seed=11), replace=True, upsert=False)


def _as_user(source_url: str, user: str) -> str:
    return source_url.replace("postgres@", f"{user}@", 1)


@pytest.fixture
def roles(source_url: str, pg_server: ServerInfo) -> dict[str, str]:
    """rbac applied, and one login user per role (member of it), as a person would have."""
    users = {}
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        rbac.apply(cur)
        for role in rbac.ROLES:
            user = f"{role}_user"
            cur.execute(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{user}') "
                f'THEN CREATE ROLE "{user}" LOGIN; END IF; END $$'
            )
            cur.execute(f'GRANT "{role}" TO "{user}"')
            users[role] = _as_user(source_url, user)
    return users


def _can(url: str, sql: str) -> bool:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.rollback()
        return True
    except psycopg2.errors.InsufficientPrivilege:
        return False
    finally:
        conn.close()


OPERATIONS = {
    "read source": "SELECT count(*) FROM amazon.review",
    "write source": "INSERT INTO amazon.customer (customer_id) VALUES ('rbac-probe')",
    "read gold": "SELECT count(*) FROM amazon_gold.fact_reviews",
    "write gold": "DELETE FROM amazon_gold.fact_reviews WHERE review_id = 'none'",
    "create in gold": "CREATE TABLE amazon_gold.rbac_probe (x int)",
    "read batches": "SELECT count(*) FROM amazon_gold.batches",
}
ALLOWED = {
    rbac.ANALYST: {"read gold", "read batches"},
    rbac.SCIENTIST: {"read source", "read gold", "read batches"},
    rbac.ENGINEER: {"read source", "read gold", "write gold", "create in gold", "read batches"},
    rbac.ADMIN: set(OPERATIONS),
}


def test_each_role_can_do_exactly_what_it_should(
    settings: Settings, source_url: str, instance, roles: dict[str, str]
) -> None:
    _load(settings, 300)
    add_batch(instance, "rbac")
    assert run_layers(settings, "rbac", ("bronze", "silver", "gold"), instance=instance).success
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        assert rbac.audit(cur)[1] == []
    for role, url in roles.items():
        done = {op for op, sql in OPERATIONS.items() if _can(url, sql)}
        assert done == ALLOWED[role], role


def test_audit_reports_drift_and_apply_repairs_it(source_url: str, roles: dict) -> None:
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        create_source_schema(cur)
        rbac.apply(cur)
        assert rbac.audit(cur)[1] == []
        cur.execute("GRANT INSERT ON amazon.review TO amazon_analyst")
        cur.execute("REVOKE USAGE ON SCHEMA amazon_gold FROM amazon_scientist")
        _, drifts = rbac.audit(cur)
        assert {str(d) for d in drifts} == {
            "amazon_analyst: INSERT on amazon.review should be not granted, is granted",
            "amazon_scientist: USAGE on schema amazon_gold should be granted, is not granted",
        }
        rbac.apply(cur)
        rbac.apply(cur)  # idempotent
        assert rbac.audit(cur)[1] == []


def test_gold_swap_is_atomic_for_a_concurrent_reader(
    settings: Settings, source_url: str, instance
) -> None:
    from amazon_reviews.io.serving import publish_gold

    _load(settings, 600)
    add_batch(instance, "swap-a")
    assert run_layers(settings, "swap-a", ("bronze", "silver", "gold"), instance=instance).success
    lake = Lake(settings.data_path)
    fact = lake.read("gold", "swap-a", "fact_reviews")
    small = fact.head(100).with_columns(pl.lit("swap-b").alias("batch_id"))
    seen: list[tuple[int, set]] = []
    stop = threading.Event()

    def reader() -> None:
        conn = psycopg2.connect(source_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(
                    "SELECT count(*), array_agg(DISTINCT batch_id) FROM amazon_gold.fact_reviews"
                )
                n, batches = cur.fetchone()
                seen.append((n, set(batches or [])))
        conn.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(3):
            publish_gold(source_url, settings, [small], "swap-b")
            publish_gold(source_url, settings, [fact], "swap-a")
    finally:
        stop.set()
        thread.join()
    assert seen, "the reader never read"
    allowed = {(fact.height, frozenset({"swap-a"})), (100, frozenset({"swap-b"}))}
    assert {(n, frozenset(b)) for n, b in seen} <= allowed
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT batch_id, rows FROM amazon_gold.batches ORDER BY 1")
        assert cur.fetchall() == [("swap-a", fact.height), ("swap-b", 100)]


def test_password_never_appears_in_any_output_or_file(
    pg_server: ServerInfo, source_url: str, env: dict, tmp_path: Path, monkeypatch
) -> None:
    """The whole pipeline with a password-bearing URL; then every output and file is searched."""
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        cur.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'secret_user') "
            f"THEN CREATE ROLE secret_user LOGIN SUPERUSER PASSWORD '{PASSWORD}'; END IF; END $$"
        )
    secret_url = source_url.replace("postgres@", f"secret_user:{PASSWORD}@", 1)
    run_env = {
        **os.environ,
        **env,
        "NEON_DB_URL": secret_url,
        "ALERT_WEBHOOK_URL": f"http://hook:{PASSWORD}@127.0.0.1:1/x",
    }
    cli = [sys.executable, "-m", "amazon_reviews.cli"]
    outputs = []
    for args in (
        ["generate", "--reviews", "300", "--load"],
        ["run", "--batch-id", "secret-run"],
        ["batches", "list"],
        ["doctor"],
        ["env"],
        ["db", "url"],
        ["rbac", "audit"],
    ):
        out = subprocess.run(
            [*cli, *args], env=run_env, capture_output=True, text=True, timeout=300
        )
        outputs.append(out.stdout + out.stderr)
    # a failure path too: a wrong port in the password-bearing URL
    bad_env = {
        **run_env,
        "NEON_DB_URL": secret_url.replace(f":{pg_server.port}/", ":1/"),
        "AMAZON_REVIEWS__SOURCE__CONNECT_ATTEMPTS": "1",
    }
    out = subprocess.run(
        [*cli, "extract", "--batch-id", "secret-fail"],
        env=bad_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outputs.append(out.stdout + out.stderr)
    assert "secret_user:***@" in "".join(outputs)
    for text in outputs:
        assert PASSWORD not in text
    data = Path(env["AMAZON_REVIEWS__DATA_DIR"])
    assert Lake(data).is_complete("gold", "secret-run")
    scanned = 0
    for path in data.rglob("*"):
        if path.is_file() and "postgres" not in path.relative_to(data).parts[:1]:
            assert PASSWORD.encode() not in path.read_bytes(), path
            scanned += 1
    assert scanned > 10
    # and the Dagster event log (metadata, errors) in the instance database
    dagster_url = env["DAGSTER_PG_URL"].replace("+psycopg2", "")
    with psycopg2.connect(dagster_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM event_logs WHERE event LIKE %s", (f"%{PASSWORD}%",))
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM event_logs")
        assert cur.fetchone()[0] > 0


def test_connect_retries_until_a_late_database_is_up(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "late")
    info = server.ensure_running()
    server.stop()
    settings = load_settings(
        {
            "AMAZON_REVIEWS__SOURCE__CONNECT_ATTEMPTS": "8",
            "AMAZON_REVIEWS__SOURCE__BACKOFF_INITIAL_S": "0.5",
            "AMAZON_REVIEWS__SOURCE__BACKOFF_MAX_S": "2",
            "AMAZON_REVIEWS__SOURCE__CONNECT_TIMEOUT_S": "2",
        },
        home=tmp_path,
    )
    starter = threading.Timer(2.0, server.ensure_running)
    starter.start()
    started = time.monotonic()
    try:
        conn = connect(info.url("amazon"), settings)
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        conn.close()
        assert time.monotonic() - started >= 1.5  # it did wait for the server
        server.stop()
        few = load_settings(
            {
                "AMAZON_REVIEWS__SOURCE__CONNECT_ATTEMPTS": "2",
                "AMAZON_REVIEWS__SOURCE__BACKOFF_INITIAL_S": "0.1",
            },
            home=tmp_path,
        )
        with pytest.raises(SourceUnavailable, match=r"after 2 attempt\(s\)"):
            connect(info.url("amazon"), few)
    finally:
        starter.join()
        server.stop()


def test_database_connection_killed_during_extract_is_retried_and_leaves_no_partial_batch(
    settings: Settings, source_url: str, instance
) -> None:
    from dagster import DagsterEventType

    _load(settings, 800)
    batch = "killed-db"
    add_batch(instance, batch)
    lake = Lake(settings.data_path)
    blocker = psycopg2.connect(source_url)
    cur = blocker.cursor()
    cur.execute("LOCK TABLE amazon.review_images IN ACCESS EXCLUSIVE MODE")
    result: list = []
    thread = threading.Thread(
        target=lambda: result.append(run_layers(settings, batch, ("bronze",), instance=instance))
    )
    thread.start()
    killer = psycopg2.connect(source_url)
    killer.autocommit = True
    try:
        deadline = time.monotonic() + 60
        with killer.cursor() as k:
            while True:  # until the extract waits on the lock, four tables already staged
                k.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%review_images%' AND pid <> pg_backend_pid()"
                )
                waiting = [r[0] for r in k.fetchall()]
                if waiting:
                    break
                assert time.monotonic() < deadline, "extract never reached review_images"
                time.sleep(0.05)
            k.execute("SELECT pg_terminate_backend(%s)", (waiting[0],))
        # While the step waits to be retried, the half-written snapshot is nowhere to be seen.
        assert not lake.batch_dir("bronze", batch).exists()
    finally:
        blocker.rollback()
        blocker.close()
        killer.close()
    thread.join(300)
    outcome = result[0]
    # The retry policy re-ran the extract from scratch, on a fresh snapshot.
    assert outcome.success, outcome.error
    retries = instance.all_logs(outcome.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retries) == 1
    error = retries[0].dagster_event.event_specific_data.error
    message = error.cause.message if error.cause else error.message
    assert "extraction from postgresql://postgres@127.0.0.1" in message
    assert "terminating connection due to administrator command" in message
    assert lake.is_complete("bronze", batch)
    assert lake.verify("bronze", batch) == []
    assert not list((settings.data_path / "bronze" / ".staging").glob("*"))


def test_disk_full_during_write_leaves_no_partial_file_and_keeps_the_previous_batch(
    settings: Settings, instance, monkeypatch
) -> None:
    from amazon_reviews.io import lake as lake_module

    _load(settings, 500)
    batch = "disk-full"
    add_batch(instance, batch)
    assert run_layers(settings, batch, ("bronze",), instance=instance).success
    lake = Lake(settings.data_path)
    before = lake.manifest("bronze", batch)
    real_write = lake_module.HashingFile.write
    written = {"n": 0}

    def full_disk(self, data: bytes) -> int:
        written["n"] += len(data)
        if written["n"] > 20_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(lake_module.HashingFile, "write", full_disk)
    outcome = run_layers(settings, batch, ("bronze",), instance=instance)
    assert not outcome.success
    assert "No space left on device" in outcome.error
    assert lake.manifest("bronze", batch) == before
    assert lake.verify("bronze", batch) == []
    assert not list((settings.data_path / "bronze" / ".staging").glob("*"))
    assert not [p for p in lake.batch_dir("bronze", batch).rglob("*.tmp")]
