"""Operations on the real stack: the schedule, sensors and the alerts they deliver to a real HTTP
server, checks catching tampered files, retention, the doctor, the restore drill and metrics.

Everything runs against the session's embedded PostgreSQL, real Parquet files and a real
Dagster instance; nothing is mocked.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from amazon_reviews import checks, contract, generate
from amazon_reviews.assets.bronze import BRONZE_KEYS
from amazon_reviews.assets.gold import FACT_REVIEWS_KEY
from amazon_reviews.assets.silver import SILVER_KEYS
from amazon_reviews.cli import main as cli_main
from amazon_reviews.config import ScheduleSettings, Settings, load_settings
from amazon_reviews.definitions import defs
from amazon_reviews.io.alerts import read_alerts
from amazon_reviews.io.embedded import EmbeddedServer, ServerInfo
from amazon_reviews.io.lake import LAYERS, Lake
from amazon_reviews.io.restore import restore_drill
from amazon_reviews.io.source_load import load_chunks
from amazon_reviews.metrics import PROM_FILE, publish
from amazon_reviews.partitions import BATCH_PARTITIONS_NAME
from amazon_reviews.resources import AlertsResource
from amazon_reviews.retention import BatchAge, plan_cleanup
from amazon_reviews.runner import add_batch, get_instance, run_layers
from amazon_reviews.sensors import (
    build_gold_missing_sensor,
    expected_batch,
    run_failure_alert_sensor,
    source_db_health_sensor,
)

REPO = Path(__file__).resolve().parents[1]
REVIEWS = 200
DASHBOARD = REPO / "deploy" / "grafana" / "amazon_reviews.json"
# Daily at midnight with a one-minute deadline: the expected batch is today's and stays the same
# for the whole test (it changes only at 00:01 UTC).
PAST_DEADLINE = ScheduleSettings(cron="0 0 * * *", timezone="UTC", gold_deadline_minutes=1)


# --- helpers ----------------------------------------------------------------------------------


def _load(settings: Settings, n: int = REVIEWS) -> None:
    load_chunks(settings, generate.generate(n, seed=7), replace=True, upsert=False)


def _materialise(settings: Settings, instance, batch: str, layers=LAYERS) -> None:
    add_batch(instance, batch)
    outcome = run_layers(settings, batch, layers, instance=instance)
    assert outcome.success, outcome.error or outcome.failed_checks


def _drop_rows(path: Path, n: int) -> int:
    """Rewrite a Parquet file without its last `n` rows; return the rows kept."""
    frame = pl.read_parquet(path)
    kept = frame.head(frame.height - n)
    kept.write_parquet(path)
    return kept.height


def _alerts(settings: Settings) -> list[dict]:
    return read_alerts(settings.data_path / "alerts")


def _sensor_context(instance, cursor: str | None = None) -> dg.SensorEvaluationContext:
    return dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"alerts": AlertsResource()}
    )


def _run_checks(
    instance, batch: str, keys: set[dg.AssetCheckKey]
) -> dict[dg.AssetCheckKey, dg.AssetCheckEvaluation]:
    """Execute only these checks, for one partition, as a recorded run (no asset is rebuilt)."""
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection=keys
    )
    result = job.execute_in_process(instance=instance, partition_key=batch, raise_on_error=False)
    evaluations = {e.asset_check_key: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == keys
    assert all(e.partition == batch for e in evaluations.values())
    return evaluations


def _meta(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {k: v.value for k, v in evaluation.metadata.items()}


def _fresh_instance(pg_server: ServerInfo, monkeypatch: pytest.MonkeyPatch, name: str):
    """A Dagster instance in its own database: runs and partitions of other tests are absent."""
    conn = psycopg2.connect(pg_server.url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "dagster_{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "dagster_{name}"')
    conn.close()
    url = pg_server.url(f"dagster_{name}")
    monkeypatch.setenv("DAGSTER_PG_URL", url.replace("postgresql://", "postgresql+psycopg2://"))
    return get_instance(load_settings())


# --- a real webhook receiver ------------------------------------------------------------------


@dataclass
class Webhook:
    url: str
    status: int
    received: list[dict] = field(default_factory=list)


class _WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        hook: Webhook = self.server.hook  # type: ignore[attr-defined]
        hook.received.append(
            {
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "json": json.loads(body),
            }
        )
        self.send_response(hook.status)
        self.end_headers()
        self.wfile.write(b"ok" if hook.status < 300 else b"error")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[Callable[[int], Webhook]]:
    """Starts local HTTP servers answering POSTs with a given status; all stopped afterwards."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int = 200) -> Webhook:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookHandler)
        hook = Webhook(f"http://127.0.0.1:{server.server_port}/services/T0/B0/s3cr3t", status)
        server.hook = hook  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return hook

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- 1. schedule ------------------------------------------------------------------------------


def test_daily_schedule_adds_the_batch_partition_and_requests_one_deduplicated_run(
    instance,
) -> None:
    batch = "20260304T030000Z"
    if instance.has_dynamic_partition(BATCH_PARTITIONS_NAME, batch):
        instance.delete_dynamic_partition(BATCH_PARTITIONS_NAME, batch)
    schedule = defs.resolve_schedule_def("daily_batch_schedule")
    repository = defs.get_repository_def()  # resolves the run request's partition
    tick = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)

    first = schedule.evaluate_tick(
        dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=repository
        )
    )
    assert instance.has_dynamic_partition(BATCH_PARTITIONS_NAME, batch)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key == request.partition_key == batch
    assert request.tags["batch_id"] == batch
    assert schedule.job_name == "daily_batch_job"

    # The daemon drops a run request whose run key was already launched: same tick, same key.
    again = schedule.evaluate_tick(
        dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=repository
        )
    )
    assert [r.run_key for r in again.run_requests] == [batch]
    assert instance.get_dynamic_partitions(BATCH_PARTITIONS_NAME).count(batch) == 1


# --- 2. sensors and alerts --------------------------------------------------------------------


def test_gold_missing_sensor_alerts_once_per_batch_and_fails_gold_present(
    settings: Settings, instance, webhook_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = webhook_server(200)
    monkeypatch.setenv("ALERT_WEBHOOK_URL", hook.url)
    sensor = build_gold_missing_sensor(PAST_DEADLINE)
    expected = expected_batch(PAST_DEADLINE, datetime.now(UTC))
    assert expected is not None
    batch, tick = expected

    result = sensor(_sensor_context(instance))
    assert isinstance(result, dg.SensorResult)
    assert result.cursor == batch
    assert instance.has_dynamic_partition(BATCH_PARTITIONS_NAME, batch)

    (alert,) = _alerts(settings)
    assert alert["kind"] == "gold_missing"
    assert alert["batch_id"] == batch
    assert alert["webhook"] == "sent"
    assert f"amazon-reviews run --batch-id {batch}" in alert["message"]
    assert alert["details"]["deadline"] == (tick + timedelta(minutes=1)).isoformat()
    assert (alert["details"]["bronze"], alert["details"]["silver"]) == (False, False)

    (post,) = hook.received
    assert post["path"] == "/services/T0/B0/s3cr3t"
    assert post["content_type"] == "application/json"
    assert f"Gold missing for batch {batch}" in post["json"]["text"]
    assert f"batch: `{batch}`" in post["json"]["text"]

    (evaluation,) = result.asset_events
    assert isinstance(evaluation, dg.AssetCheckEvaluation)
    assert evaluation.asset_key == FACT_REVIEWS_KEY
    assert evaluation.check_name == checks.GOLD_PRESENT
    assert evaluation.passed is False
    assert evaluation.partition == batch

    # The cursor remembers the batch: the next evaluations stay silent.
    again = sensor(_sensor_context(instance, cursor=result.cursor))
    assert isinstance(again, dg.SkipReason)
    assert again.skip_message == f"already alerted for {batch}"
    assert len(_alerts(settings)) == 1
    assert len(hook.received) == 1

    # Once gold is complete for the batch, the sensor skips even without a cursor.
    _load(settings)
    _materialise(settings, instance, batch)
    done = sensor(_sensor_context(instance))
    assert isinstance(done, dg.SkipReason)
    assert done.skip_message == f"gold present for {batch}"
    assert len(_alerts(settings)) == 1
    assert len(hook.received) == 1


def test_source_db_health_sensor_alerts_on_state_changes_only(
    settings: Settings, source_url: str, instance, webhook_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = webhook_server(200)
    monkeypatch.setenv("ALERT_WEBHOOK_URL", hook.url)
    monkeypatch.setenv("AMAZON_REVIEWS__SOURCE__CONNECT_TIMEOUT_S", "2")

    up = source_db_health_sensor(_sensor_context(instance))
    assert json.loads(up.cursor)["state"] == "up"
    assert _alerts(settings) == []

    monkeypatch.setenv("NEON_DB_URL", "postgresql://reader:hunter2@127.0.0.1:1/amazon")
    down = source_db_health_sensor(_sensor_context(instance, cursor=up.cursor))
    assert json.loads(down.cursor)["state"] == "down"
    (alert,) = _alerts(settings)
    assert alert["kind"] == "source_db_unreachable"
    assert "127.0.0.1:1" in alert["message"]
    assert "hunter2" not in json.dumps(alert) + json.dumps(hook.received)

    # Still down: the state did not change, so nothing is sent again.
    still = source_db_health_sensor(_sensor_context(instance, cursor=down.cursor))
    assert json.loads(still.cursor) == json.loads(down.cursor)
    assert len(_alerts(settings)) == 1

    monkeypatch.setenv("NEON_DB_URL", source_url)
    back = source_db_health_sensor(_sensor_context(instance, cursor=still.cursor))
    assert json.loads(back.cursor)["state"] == "up"
    kinds = [a["kind"] for a in _alerts(settings)]
    assert kinds == ["source_db_unreachable", "source_db_recovered"]
    recovered = _alerts(settings)[1]
    assert recovered["severity"] == "info"
    assert json.loads(down.cursor)["since"] in recovered["message"]
    assert [p["json"]["text"].splitlines()[0] for p in hook.received] == [
        ":red_circle: *Source database unreachable*",
        ":large_green_circle: *Source database reachable again*",
    ]


def test_run_failure_sensor_names_job_batch_and_missing_table(
    settings: Settings, source_url: str, instance, webhook_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = webhook_server(200)
    monkeypatch.setenv("ALERT_WEBHOOK_URL", hook.url)
    _load(settings)
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE amazon.buyer")
    batch = "ops-run-failure"
    add_batch(instance, batch)
    outcome = run_layers(settings, batch, ("bronze",), instance=instance)
    assert not outcome.success

    run = instance.get_run_by_id(outcome.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    (failure,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
        resources={"alerts": AlertsResource()},
    ).for_run_failure()
    run_failure_alert_sensor(context)

    (alert,) = _alerts(settings)
    assert alert["kind"] == "run_failure"
    assert alert["title"] == f"Run of bronze_job failed (batch {batch})"
    assert alert["batch_id"] == batch
    assert alert["run_id"] == run.run_id
    assert "bronze_snapshot" in alert["message"]
    assert "amazon.buyer" in alert["message"]
    assert "amazon-reviews init-db" in alert["message"]
    (post,) = hook.received
    assert "amazon.buyer" in post["json"]["text"]
    assert f"run: `{run.run_id}`" in post["json"]["text"]


def test_failing_webhook_never_breaks_the_sensor_and_is_recorded(
    settings: Settings, instance, webhook_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    sensor = build_gold_missing_sensor(PAST_DEADLINE)
    broken = webhook_server(500)
    monkeypatch.setenv("ALERT_WEBHOOK_URL", broken.url)
    result = sensor(_sensor_context(instance))
    assert isinstance(result, dg.SensorResult)
    (alert,) = _alerts(settings)
    assert alert["webhook"] == "failed: HTTP 500"
    assert len(broken.received) == settings.alerts.webhook_attempts == 3

    # Nothing listens on port 1: connection refused on every attempt, still no exception.
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "http://127.0.0.1:1/services/T0/B0/s3cr3t")
    result = sensor(_sensor_context(instance))
    assert isinstance(result, dg.SensorResult)
    closed = _alerts(settings)[1]
    assert closed["kind"] == "gold_missing"
    assert closed["webhook"].startswith("failed: ")
    assert "refused" in closed["webhook"].lower()


# --- 3. checks on tampered files --------------------------------------------------------------


def _bronze_check_keys(table: str) -> set[dg.AssetCheckKey]:
    names = (checks.ROWS_MATCH_SOURCE, checks.SCHEMA_MATCHES_CONTRACT, checks.FILES_MATCH_MANIFEST)
    return {dg.AssetCheckKey(BRONZE_KEYS[table], n) for n in names}


def test_bronze_rows_deleted_fail_checks_and_block_silver(settings: Settings, instance) -> None:
    _load(settings)
    batch = "ops-tamper-bronze-rows"
    _materialise(settings, instance, batch)
    lake = Lake(settings.data_path)
    source_rows = lake.manifest("bronze", batch)["source"]["rows"]["review"]
    kept = _drop_rows(lake.table_path("bronze", batch, "review"), 7)
    assert kept == source_rows - 7

    found = _run_checks(instance, batch, _bronze_check_keys("review") | _bronze_check_keys("buyer"))
    rows = found[dg.AssetCheckKey(BRONZE_KEYS["review"], checks.ROWS_MATCH_SOURCE)]
    assert rows.passed is False
    assert _meta(rows) | {"snapshot_at": None} == {
        "bronze_rows": kept,
        "source_rows": source_rows,
        "difference": -7,
        "snapshot_at": None,
    }
    files = found[dg.AssetCheckKey(BRONZE_KEYS["review"], checks.FILES_MATCH_MANIFEST)]
    assert files.passed is False
    problems = _meta(files)["problems"]
    assert "bronze/review: " in problems and "sha256" in problems and "bytes on disk" in problems
    # The schema is intact, and the untouched table passes every check.
    assert found[dg.AssetCheckKey(BRONZE_KEYS["review"], checks.SCHEMA_MATCHES_CONTRACT)].passed
    assert all(found[k].passed for k in _bronze_check_keys("buyer"))

    # The integrity gate: silver refuses a bronze batch that no longer matches its manifest.
    outcome = run_layers(settings, batch, ("silver",), instance=instance)
    assert not outcome.success
    assert outcome.failed_steps == ["silver_tables"]
    assert "LakeIntegrityError" in outcome.error
    assert "does not match its manifest" in outcome.error
    assert f"holds {kept} rows, manifest says {source_rows}" in outcome.error


def test_bronze_column_dropped_fails_schema_contract_naming_it(
    settings: Settings, instance
) -> None:
    _load(settings)
    batch = "ops-tamper-bronze-schema"
    _materialise(settings, instance, batch, ("bronze",))
    lake = Lake(settings.data_path)
    path = lake.table_path("bronze", batch, "product")
    pl.read_parquet(path).drop("store").write_parquet(path)

    found = _run_checks(instance, batch, _bronze_check_keys("product"))
    schema = found[dg.AssetCheckKey(BRONZE_KEYS["product"], checks.SCHEMA_MATCHES_CONTRACT)]
    assert schema.passed is False
    assert _meta(schema) == {
        "drift": "column store missing (expected string)",
        "columns": len(contract.table("product").columns) - 1,
    }
    # Same rows, so the count check passes; the file itself differs from the manifest.
    assert found[dg.AssetCheckKey(BRONZE_KEYS["product"], checks.ROWS_MATCH_SOURCE)].passed
    assert not found[dg.AssetCheckKey(BRONZE_KEYS["product"], checks.FILES_MATCH_MANIFEST)].passed


def test_silver_rows_deleted_fail_reconciliation_and_block_gold(
    settings: Settings, instance
) -> None:
    _load(settings)
    batch = "ops-tamper-silver"
    _materialise(settings, instance, batch, ("bronze",))
    _materialise(settings, instance, batch, ("silver",))
    lake = Lake(settings.data_path)
    bronze_rows = lake.manifest("bronze", batch)["rows"]["review"]
    rejected = lake.manifest("silver", batch)["rows"]["rejected/review"]
    kept = _drop_rows(lake.table_path("silver", batch, "review"), 5)

    key = dg.AssetCheckKey(SILVER_KEYS["review"], checks.ROWS_RECONCILE_WITH_BRONZE)
    (evaluation,) = _run_checks(instance, batch, {key}).values()
    assert evaluation.passed is False
    assert _meta(evaluation) == {
        "bronze_rows": bronze_rows,
        "silver_rows": kept,
        "rejected_rows": rejected,
        "difference": -5,
    }

    outcome = run_layers(settings, batch, ("gold",), instance=instance)
    assert not outcome.success
    assert outcome.failed_steps == ["fact_reviews"]
    assert "silver batch 'ops-tamper-silver' does not match its manifest" in outcome.error
    assert "gold refuses it" in outcome.error
    assert not lake.batch_dir("gold", batch).exists()
