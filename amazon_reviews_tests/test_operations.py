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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import psycopg2
import pyarrow.parquet as pq
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


def _materialise(
    settings: Settings,
    instance: dg.DagsterInstance,
    batch: str,
    layers: tuple[str, ...] = LAYERS,
) -> None:
    add_batch(instance, batch)
    outcome = run_layers(settings, batch, layers, instance=instance)
    assert outcome.success, outcome.error or outcome.failed_checks


def _drop_rows(path: Path, n: int) -> int:
    """Rewrite a Parquet file without its last `n` rows, schema unchanged; return the rows kept."""
    table = pq.read_table(path)
    kept = table.slice(0, table.num_rows - n)
    pq.write_table(kept, path)
    return kept.num_rows


def _alerts(settings: Settings) -> list[dict]:
    return read_alerts(settings.data_path / "alerts")


def _sensor_context(
    instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorEvaluationContext:
    return dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"alerts": AlertsResource()}
    )


def _run_checks(
    instance: dg.DagsterInstance, batch: str, keys: set[dg.AssetCheckKey]
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


@pytest.fixture
def own_instance(
    settings: Settings, pg_server: ServerInfo, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance in a database of its own: no run or partition of another test."""
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(pg_server.url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    monkeypatch.setenv("DAGSTER_PG_URL", pg_server.url(name, driver="postgresql+psycopg2"))
    inst = get_instance(load_settings())
    yield inst
    inst.dispose()


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
    instance: dg.DagsterInstance,
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
    settings: Settings,
    instance: dg.DagsterInstance,
    webhook_server: Callable[[int], Webhook],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = webhook_server(200)
    monkeypatch.setenv("ALERT_WEBHOOK_URL", hook.url)
    sensor = build_gold_missing_sensor(PAST_DEADLINE)
    expected = expected_batch(PAST_DEADLINE, datetime.now(UTC))
    assert expected is not None
    batch, tick = expected

    # A sensor that starts watching now leaves ticks from before alone: no false alarm on a
    # new instance for a batch it never scheduled.
    fresh = sensor(_sensor_context(instance))
    assert fresh.skip_reason.skip_message.startswith(f"tick {tick.isoformat()} precedes")
    assert _alerts(settings) == []

    watching = json.dumps({"watch_from": (tick - timedelta(days=1)).isoformat()})
    result = sensor(_sensor_context(instance, cursor=watching))
    assert isinstance(result, dg.SensorResult)
    assert json.loads(result.cursor)["alerted"] == batch
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
    assert again.skip_reason.skip_message == f"already alerted for {batch}"
    assert len(_alerts(settings)) == 1
    assert len(hook.received) == 1

    # Once gold is complete for the batch, the sensor skips even without a cursor.
    _load(settings)
    _materialise(settings, instance, batch)
    done = sensor(_sensor_context(instance, cursor=watching))
    assert done.skip_reason.skip_message == f"gold present for {batch}"
    assert len(_alerts(settings)) == 1
    assert len(hook.received) == 1


def test_source_db_health_sensor_alerts_on_state_changes_only(
    settings: Settings,
    source_url: str,
    instance: dg.DagsterInstance,
    webhook_server: Callable[[int], Webhook],
    monkeypatch: pytest.MonkeyPatch,
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
    settings: Settings,
    source_url: str,
    instance: dg.DagsterInstance,
    webhook_server: Callable[[int], Webhook],
    monkeypatch: pytest.MonkeyPatch,
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
    settings: Settings,
    instance: dg.DagsterInstance,
    webhook_server: Callable[[int], Webhook],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="amazon_reviews.alerts")
    sensor = build_gold_missing_sensor(PAST_DEADLINE)
    broken = webhook_server(500)
    monkeypatch.setenv("ALERT_WEBHOOK_URL", broken.url)
    watching = json.dumps({"watch_from": "2000-01-01T00:00:00+00:00"})
    result = sensor(_sensor_context(instance, cursor=watching))
    assert isinstance(result, dg.SensorResult)
    (alert,) = _alerts(settings)
    assert alert["webhook"] == "failed: HTTP 500"
    assert len(broken.received) == settings.alerts.webhook_attempts == 3

    # Nothing listens on port 1: connection refused on every attempt, still no exception.
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "http://127.0.0.1:1/services/T0/B0/s3cr3t")
    result = sensor(_sensor_context(instance, cursor=watching))
    assert isinstance(result, dg.SensorResult)
    closed = _alerts(settings)[1]
    assert closed["kind"] == "gold_missing"
    assert closed["webhook"].startswith("failed: ")
    assert "refused" in closed["webhook"].lower()
    # A webhook's path is its secret: never in the alert file nor in the log.
    assert "webhook http://127.0.0.1/*** failed (attempt 3/3): HTTP 500" in caplog.text
    alerts_file = settings.data_path / "alerts" / "alerts.jsonl"
    assert "s3cr3t" not in alerts_file.read_text() + caplog.text


# --- 3. checks on tampered files --------------------------------------------------------------


def _bronze_check_keys(table: str) -> set[dg.AssetCheckKey]:
    names = (checks.ROWS_MATCH_SOURCE, checks.SCHEMA_MATCHES_CONTRACT, checks.FILES_MATCH_MANIFEST)
    return {dg.AssetCheckKey(BRONZE_KEYS[table], n) for n in names}


def test_bronze_rows_deleted_fail_checks_and_block_silver(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
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
    assert (
        _meta(rows).items()
        >= {
            "bronze_rows": kept,
            "source_rows": source_rows,
            "difference": -7,
            "snapshot_at": lake.manifest("bronze", batch)["source"]["snapshot_at"],
        }.items()
    )
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
    assert re.search(r"review\.parquet is \d+ bytes, manifest says \d+", outcome.error)


def test_bronze_column_dropped_fails_schema_contract_naming_it(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    _load(settings)
    batch = "ops-tamper-bronze-schema"
    _materialise(settings, instance, batch, ("bronze",))
    lake = Lake(settings.data_path)
    path = lake.table_path("bronze", batch, "product")
    pq.write_table(pq.read_table(path).drop_columns(["store"]), path)

    found = _run_checks(instance, batch, _bronze_check_keys("product"))
    schema = found[dg.AssetCheckKey(BRONZE_KEYS["product"], checks.SCHEMA_MATCHES_CONTRACT)]
    assert schema.passed is False
    assert (
        _meta(schema).items()
        >= {
            "drift": "column store missing (expected string)",
            "columns": len(contract.table("product").columns) - 1,
        }.items()
    )
    # Same rows, so the count check passes; the file itself differs from the manifest.
    assert found[dg.AssetCheckKey(BRONZE_KEYS["product"], checks.ROWS_MATCH_SOURCE)].passed
    assert not found[dg.AssetCheckKey(BRONZE_KEYS["product"], checks.FILES_MATCH_MANIFEST)].passed


def test_silver_rows_deleted_fail_reconciliation_and_block_gold(
    settings: Settings, instance: dg.DagsterInstance
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
    assert (
        _meta(evaluation).items()
        >= {
            "bronze_rows": bronze_rows,
            "silver_rows": kept,
            "rejected_rows": rejected,
            "difference": -5,
        }.items()
    )

    outcome = run_layers(settings, batch, ("gold",), instance=instance)
    assert not outcome.success
    assert outcome.failed_steps == ["gold__fact_reviews"]
    assert "silver batch 'ops-tamper-silver' does not match its manifest" in outcome.error
    assert "gold refuses it" in outcome.error
    assert not lake.batch_dir("gold", batch).exists()


# --- 4. retention -----------------------------------------------------------------------------

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def _age(batch: str, days: float, gold: bool = True) -> BatchAge:
    return BatchAge(batch, NOW - timedelta(days=days), gold)


@pytest.mark.parametrize(
    ("batches", "older_than_days", "keep_last", "delete", "keep"),
    [
        pytest.param(
            [_age("a", 40), _age("b", 35), _age("c", 10), _age("d", 1)],
            30,
            1,
            ["b", "a"],
            {
                "d": "latest batch with complete gold",
                "c": "younger than 30 days",
            },
            id="old-batches-go-young-stay",
        ),
        pytest.param(
            [_age("a", 40), _age("b", 35), _age("c", 1, gold=False)],
            30,
            1,
            ["a"],
            {"c": "among the 1 newest", "b": "latest batch with complete gold"},
            id="latest-complete-gold-survives-its-age",
        ),
        pytest.param(
            [_age("a", 50, gold=False), _age("b", 45, gold=False), _age("c", 40, gold=False)],
            30,
            2,
            ["a"],
            {"c": "among the 2 newest", "b": "among the 2 newest"},
            id="no-gold-keep-last-only",
        ),
        pytest.param(
            [_age("a", 3), _age("b", 2), _age("c", 1)],
            0,
            1,
            ["b", "a"],
            {"c": "latest batch with complete gold"},
            id="zero-days-keeps-only-the-protected",
        ),
        pytest.param([], 30, 3, [], {}, id="empty-lake"),
    ],
)
def test_plan_cleanup(
    batches: list[BatchAge],
    older_than_days: int,
    keep_last: int,
    delete: list[str],
    keep: dict[str, str],
) -> None:
    plan = plan_cleanup(batches, older_than_days=older_than_days, keep_last=keep_last, now=NOW)
    assert plan.delete == delete
    assert plan.keep == keep


def test_plan_cleanup_breaks_created_at_ties_by_batch_id() -> None:
    same = NOW - timedelta(days=60)
    batches = [BatchAge("x1", same, True), BatchAge("x2", same, True), BatchAge("x0", same, False)]
    plan = plan_cleanup(batches, older_than_days=30, keep_last=1, now=NOW)
    assert plan.keep == {"x2": "latest batch with complete gold"}
    assert plan.delete == ["x1", "x0"]


def _set_created_at(lake: Lake, batch: str, days_ago: int) -> None:
    """Age a batch: rewrite `created_at` in each layer's manifest (the files are untouched)."""
    created = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    for layer in LAYERS:
        path = lake.batch_dir(layer, batch) / "manifest.json"
        if path.exists():
            manifest = json.loads(path.read_text())
            manifest["created_at"] = created
            path.write_text(json.dumps(manifest, indent=2))


def test_cleanup_command_deletes_old_batches_everywhere_but_the_latest_gold(
    settings: Settings, own_instance: dg.DagsterInstance, capsys: pytest.CaptureFixture
) -> None:
    # Its own instance: cleanup considers every registered partition, other tests' included.
    instance = own_instance
    _load(settings)
    lake = Lake(settings.data_path)
    old, latest_gold, recent = "ops-retention-40d", "ops-retention-35d", "ops-retention-1d"
    _materialise(settings, instance, old)
    _materialise(settings, instance, latest_gold)
    _materialise(settings, instance, recent, ("bronze",))  # recent, but gold never made
    for batch, days in ((old, 40), (latest_gold, 35), (recent, 1)):
        _set_created_at(lake, batch, days)
    before = {layer: lake.batches(layer) for layer in LAYERS}
    partitions = sorted(instance.get_dynamic_partitions(BATCH_PARTITIONS_NAME))
    assert partitions == sorted([old, latest_gold, recent])

    args = ["cleanup", "--older-than-days", "30", "--keep-last", "1"]
    assert cli_main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "remove batch" in line] == [
        f"would remove batch {old}"
    ]
    assert f"kept    batch {latest_gold} (latest batch with complete gold)" in out
    assert f"kept    batch {recent} (among the 1 newest)" in out
    to_free = re.search(r"would remove 1 batch\(es\), [\d.]+ MiB \((\d+) bytes\) to free", out)
    old_bytes = sum(
        p.stat().st_size
        for layer in LAYERS
        for p in lake.batch_dir(layer, old).rglob("*")
        if p.is_file()
    )
    assert int(to_free[1]) == old_bytes > 0
    assert {layer: lake.batches(layer) for layer in LAYERS} == before
    assert sorted(instance.get_dynamic_partitions(BATCH_PARTITIONS_NAME)) == partitions

    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert f"removed batch {old}" in out
    freed = re.search(r"removed 1 batch\(es\), [\d.]+ MiB \((\d+) bytes\) freed", out)
    assert int(freed[1]) == old_bytes
    for layer in LAYERS:
        assert not lake.batch_dir(layer, old).exists()
        assert lake.batches(layer) == [b for b in before[layer] if b != old]
    assert sorted(instance.get_dynamic_partitions(BATCH_PARTITIONS_NAME)) == sorted(
        [latest_gold, recent]
    )

    # Even "delete everything older than now" keeps the newest batch whose gold is complete.
    assert cli_main(["cleanup", "--older-than-days", "0", "--keep-last", "1"]) == 0
    out = capsys.readouterr().out
    assert "removed 0 batch(es)" in out
    assert f"kept    batch {latest_gold} (latest batch with complete gold)" in out
    assert lake.is_complete("gold", latest_gold)
    assert lake.is_complete("bronze", recent)


# --- 6. restore drill and integrity job -------------------------------------------------------


def _step_output_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in output.event_specific_data.metadata.items()}


def test_restore_drill_and_integrity_job_catch_a_truncated_bronze_file(
    settings: Settings, source_url: str, instance: dg.DagsterInstance
) -> None:
    _load(settings)
    batch = "ops-restore-drill"
    _materialise(settings, instance, batch, ("bronze",))
    lake = Lake(settings.data_path)
    manifest = lake.manifest("bronze", batch)

    drill = restore_drill(settings, source_url, lake, batch)
    assert drill.passed
    assert drill.tables == {
        name: {
            "manifest_rows": manifest["tables"][name]["rows"],
            "restored_rows": manifest["tables"][name]["rows"],
            "rows_match": True,
            "checksum_match": True,
        }
        for name in contract.TABLES
    }
    assert all(manifest["tables"][name]["rows"] > 0 for name in contract.TABLES)
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regnamespace('amazon_restore_drill') IS NULL")
        assert cur.fetchone()[0], "the scratch schema is dropped after the drill"

    job = defs.resolve_job_def("integrity_job")
    result = job.execute_in_process(instance=instance)
    assert result.success
    assert _step_output_metadata(result) | {"drill_seconds": 0} == {
        "schema_drift": "none",
        "drill_batch": batch,
        "drill_seconds": 0,
    }
    assert _alerts(settings) == []

    reviews = manifest["tables"]["review"]["rows"]
    kept = _drop_rows(lake.table_path("bronze", batch, "review"), 4)
    drill = restore_drill(settings, source_url, lake, batch)
    assert not drill.passed
    assert drill.tables["review"] == {
        "manifest_rows": reviews,
        "restored_rows": kept,
        "rows_match": False,
        "checksum_match": True,  # the database holds exactly what the damaged file holds
    }
    assert all(drill.tables[n]["rows_match"] for n in contract.TABLES if n != "review")

    # The monthly job fails on it, names the table and alerts.
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "restore drill review" in failure.event_specific_data.error.message
    (alert,) = _alerts(settings)
    assert alert["kind"] == "integrity_failed"
    assert f"'restored_rows': {kept}" in alert["message"]


# --- 5. doctor --------------------------------------------------------------------------------


def _finding_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[")]


def test_doctor_all_ok_with_a_running_database_and_a_complete_batch(
    settings: Settings, source_url: str, instance: dg.DagsterInstance, capsys: pytest.CaptureFixture
) -> None:
    _load(settings)
    database = source_url.rsplit("/", 1)[1]
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        # As the embedded server does for its own source database.
        cur.execute(f'ALTER DATABASE "{database}" SET search_path = amazon, public')
    batch = "ops-doctor-ok"
    _materialise(settings, instance, batch)

    assert cli_main(["doctor"]) == 0
    out = capsys.readouterr().out
    lines = _finding_lines(out)
    checks_seen = [line[7:].split("  ")[0].strip() for line in lines]
    assert checks_seen == [
        "configuration",
        "source reachable",
        "source schema matches contract",
        "search_path",
        "data folder writable",
        "free space",
        "instance storage reachable",
        "latest batch",
    ]
    # The doctor warns under 5 GiB free: a machine that low is the only expected non-ok line.
    low_disk = shutil.disk_usage(settings.data_path).free < 5 << 30
    assert all(
        line.startswith("[  ok]") or (low_disk and line.startswith("[warn] free space"))
        for line in lines
    ), out
    assert "fix:" not in out
    assert f"{batch}: bronze complete, silver complete, gold complete" in out
    assert f"0 failure(s), {int(low_disk)} warning(s)" in out


def test_doctor_reports_a_stopped_embedded_server_without_starting_it(
    env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "stopped"
    server = EmbeddedServer(data)
    server.ensure_running()
    try:
        assert server.stop()
    finally:
        server.stop(mode="immediate")
    assert server.status() is None
    monkeypatch.delenv("NEON_DB_URL")
    monkeypatch.delenv("DAGSTER_PG_URL")
    monkeypatch.setenv("AMAZON_REVIEWS__DATA_DIR", str(data))

    assert cli_main(["doctor"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    (source,) = [i for i, line in enumerate(lines) if line.startswith("[FAIL] source reachable")]
    assert "is not running" in lines[source]
    assert "fix:" in lines[source + 1] and "`amazon-reviews db up`" in lines[source + 1]
    assert any(line.startswith("[FAIL] instance storage reachable") for line in lines)
    assert "2 failure(s)" in out
    assert server.status() is None, "the doctor must not start the server"


def test_doctor_names_missing_source_tables_and_init_db(
    settings: Settings, source_url: str, capsys: pytest.CaptureFixture
) -> None:
    _load(settings)
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE amazon.buyer, amazon.review_images")
    assert cli_main(["doctor"]) == 1
    lines = capsys.readouterr().out.splitlines()
    (i,) = [i for i, line in enumerate(lines) if line.startswith("[FAIL] source tables")]
    assert lines[i].endswith("missing in schema amazon: buyer, review_images")
    assert "`amazon-reviews init-db --csv-dir DIR`" in lines[i + 1]
    assert any(line.startswith("[  ok] source reachable") for line in lines)


# --- 7. metrics and the Grafana dashboard -----------------------------------------------------


def _samples(path: Path) -> dict[tuple[str, tuple], float]:
    """Every sample of a textfile: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_metrics_textfile_reflects_the_lake_and_the_runs(
    settings: Settings, own_instance: dg.DagsterInstance
) -> None:
    _load(settings)
    batch = "ops-metrics"
    add_batch(own_instance, batch)
    outcome = run_layers(settings, batch, LAYERS, instance=own_instance)
    assert outcome.success, outcome.error or outcome.failed_checks

    path = publish(settings, own_instance)
    assert path == settings.data_path / "metrics" / PROM_FILE
    samples = _samples(path)
    lake = Lake(settings.data_path)
    fact = lake.read("gold", batch, "fact_reviews")

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("amazon_reviews_rows", layer="gold", table="fact_reviews") == fact.height > 0
    for layer in LAYERS:
        manifest = lake.manifest(layer, batch)
        for table, n in manifest["rows"].items():
            assert value("amazon_reviews_rows", layer=layer, table=table) == n
        assert (
            value("amazon_reviews_layer_write_seconds", layer=layer)
            == (manifest["durations_s"]["write"])
        )
    rejects = {
        (dict(labels)["table"], dict(labels)["reason"]): v
        for (name, labels), v in samples.items()
        if name == "amazon_reviews_rejected_rows"
    }
    expected = {
        (table, reason): n
        for table, reasons in lake.manifest("silver", batch)["rejects"].items()
        for reason, n in reasons.items()
    }
    assert rejects == expected and sum(expected.values()) > 0

    assert value("amazon_reviews_relevance_score_count") == fact.height
    assert value("amazon_reviews_relevance_score_sum") == pytest.approx(
        fact["relevance_score"].sum()
    )
    assert value("amazon_reviews_relevance_score_bucket", le="0.5") == (
        (fact["relevance_score"] <= 0.5).sum()
    )
    assert value("amazon_reviews_relevance_score_bucket", le="+Inf") == fact.height
    created = datetime.fromisoformat(lake.manifest("gold", batch)["created_at"])
    assert value("amazon_reviews_last_successful_batch_timestamp_seconds") == pytest.approx(
        created.timestamp()
    )

    # One run in this instance: each of its steps ran once and succeeded.
    assert value("amazon_reviews_runs", job="daily_batch_job", status="success") == 1
    steps = {s.step_key for s in own_instance.get_run_step_stats(outcome.run_id)}
    assert {"bronze_snapshot", "bronze_checks", "gold__fact_reviews", "gold_checks"} <= steps
    step_runs = {
        dict(labels)["step"]: (dict(labels)["status"], v)
        for (name, labels), v in samples.items()
        if name == "amazon_reviews_step_runs"
    }
    assert step_runs == {step: ("success", 1) for step in steps}
    durations = {
        dict(labels)["step"]
        for (name, labels), v in samples.items()
        if name == "amazon_reviews_step_duration_seconds" and v >= 0
    }
    assert durations == steps


def _dashboard_exprs(dashboard: dict) -> list[str]:
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_grafana_dashboard_queries_only_metrics_that_publish_writes(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == [
        "Pipeline latency",
        "Dataset volumes",
        "Success and failure per step",
        "Score distribution",
    ]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
    exprs = _dashboard_exprs(dashboard)
    used = {m for e in exprs for m in re.findall(r"\bamazon_reviews_[a-z_]+\b", e)}
    assert used >= {
        "amazon_reviews_step_duration_seconds",
        "amazon_reviews_layer_write_seconds",
        "amazon_reviews_rows",
        "amazon_reviews_rejected_rows",
        "amazon_reviews_step_runs",
        "amazon_reviews_runs",
        "amazon_reviews_relevance_score_bucket",
        "amazon_reviews_last_successful_batch_timestamp_seconds",
    }
    assert any(p["type"] == "heatmap" for p in panels)

    _load(settings)
    _materialise(settings, instance, "ops-dashboard")
    written = {name for name, _ in _samples(publish(settings, instance))}
    assert used <= written, f"not in the .prom file: {sorted(used - written)}"


def test_repair_command_resumes_from_the_newest_complete_layer(tmp_path: Path) -> None:
    import polars as pl

    from amazon_reviews.io.lake import Lake

    lake = Lake(tmp_path)
    assert lake.repair_command("b1") == "amazon-reviews run --batch-id b1"
    with lake.write_batch("bronze", "b1") as writer:
        writer.write_frame("review", pl.DataFrame({"review_id": ["R1"]}))
    assert lake.repair_command("b1") == (
        "amazon-reviews transform --batch-id b1 && amazon-reviews model --batch-id b1"
    )
    with lake.write_batch("silver", "b1") as writer:
        writer.write_frame("review", pl.DataFrame({"review_id": ["R1"]}))
    assert lake.repair_command("b1") == "amazon-reviews model --batch-id b1"
