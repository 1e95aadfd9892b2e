"""Sensors: gold missing past its deadline, any run failing, the source database unreachable.

Each sensor keeps its memory in its cursor (the last batch alerted, the last database state),
so an alert is sent once per event, and delivery problems never fail the evaluation.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._utils.schedules import get_latest_completed_cron_tick

from amazon_reviews.assets.gold import FACT_REVIEWS_KEY
from amazon_reviews.checks import GOLD_PRESENT
from amazon_reviews.config import ScheduleSettings, load_settings, mask_text, mask_url
from amazon_reviews.io.alerts import Alert
from amazon_reviews.io.lake import Lake
from amazon_reviews.io.postgres import SourceUnavailable, connect, source_url
from amazon_reviews.metrics import publish
from amazon_reviews.partitions import BATCH_PARTITIONS_NAME
from amazon_reviews.resources import AlertsResource
from amazon_reviews.schedules import batch_id_for_tick


def expected_batch(cfg: ScheduleSettings, now: datetime) -> tuple[str, datetime] | None:
    """The batch whose gold must exist by `now`: the latest tick whose deadline has passed."""
    deadline = timedelta(minutes=cfg.gold_deadline_minutes)
    tick = get_latest_completed_cron_tick(cfg.cron, now - deadline, cfg.timezone)
    if tick is None:
        return None
    return batch_id_for_tick(tick), tick


def build_gold_missing_sensor(cfg: ScheduleSettings) -> dg.SensorDefinition:
    @dg.sensor(
        name="gold_missing_sensor",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts once per batch when gold is missing past the deadline.",
    )
    def gold_missing_sensor(
        context: dg.SensorEvaluationContext, alerts: AlertsResource
    ) -> dg.SensorResult:
        now = datetime.now(UTC)
        # Cursor: when the sensor started watching, and the last batch it alerted for. Ticks
        # from before it watched are not its business (a new instance has never run them).
        state = json.loads(context.cursor) if context.cursor else {"watch_from": now.isoformat()}
        cursor = json.dumps(state)
        found = expected_batch(cfg, now)
        if found is None:
            return dg.SensorResult(skip_reason="no scheduled tick yet", cursor=cursor)
        batch, tick = found
        if tick < datetime.fromisoformat(state["watch_from"]):
            return dg.SensorResult(
                skip_reason=f"tick {tick.isoformat()} precedes watching", cursor=cursor
            )
        lake = Lake(load_settings().data_path)
        if lake.is_complete("gold", batch):
            return dg.SensorResult(skip_reason=f"gold present for {batch}", cursor=cursor)
        if state.get("alerted") == batch:
            return dg.SensorResult(skip_reason=f"already alerted for {batch}", cursor=cursor)
        if not context.instance.has_dynamic_partition(BATCH_PARTITIONS_NAME, batch):
            # Makes the missing batch visible (as missing) in the UI's partition views.
            context.instance.add_dynamic_partitions(BATCH_PARTITIONS_NAME, [batch])
        deadline = tick + timedelta(minutes=cfg.gold_deadline_minutes)
        layers = {layer: lake.is_complete(layer, batch) for layer in ("bronze", "silver")}
        alerts.sink().send(
            Alert(
                kind="gold_missing",
                title=f"Gold missing for batch {batch}",
                message=(
                    f"gold/fact_reviews for batch {batch} (tick {tick.isoformat()}) is not "
                    f"complete {cfg.gold_deadline_minutes} min after the tick; "
                    f"bronze complete: {layers['bronze']}, silver complete: "
                    f"{layers['silver']}. Run `{lake.repair_command(batch)}`."
                ),
                batch_id=batch,
                runbook="docs/runbooks.md#gold-missing-alert",
                details={"deadline": deadline.isoformat(), **layers},
            )
        )
        evaluation = dg.AssetCheckEvaluation(
            asset_key=FACT_REVIEWS_KEY,
            check_name=GOLD_PRESENT,
            passed=False,
            metadata={
                "batch": batch,
                "deadline": deadline.isoformat(),
                "bronze_complete": layers["bronze"],
                "silver_complete": layers["silver"],
            },
            description=f"gold missing for batch {batch} past its deadline",
            partition=batch,
        )
        return dg.SensorResult(
            asset_events=[evaluation], cursor=json.dumps({**state, "alerted": batch})
        )

    return gold_missing_sensor


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts on every failed run, including runs launched from the CLI.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    run = context.dagster_run
    batch = run.tags.get("dagster/partition")
    error = context.failure_event.message or "run failed"
    step_errors = [
        f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
        for e in context.get_step_failure_events()
        if e.event_specific_data and e.event_specific_data.error
    ]
    alerts.sink().send(
        Alert(
            kind="run_failure",
            title=f"Run of {run.job_name} failed" + (f" (batch {batch})" if batch else ""),
            message=mask_text("; ".join(step_errors) or error),
            batch_id=batch,
            run_id=run.run_id,
            runbook="docs/runbooks.md#a-run-failed",
        )
    )


def probe_source(settings) -> str | None:
    """None when the source answers `SELECT 1`, else the (masked) reason."""
    try:
        conn = connect(source_url(settings, start=False), settings, attempts=1)
    except SourceUnavailable as exc:
        return str(exc)
    except Exception as exc:  # an embedded server that cannot start is "unreachable" too
        return mask_text(f"{type(exc).__name__}: {exc}")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return None
    except Exception as exc:
        return mask_text(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


@dg.sensor(
    name="source_db_health_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when the source database becomes unreachable, and when it recovers.",
)
def source_db_health_sensor(
    context: dg.SensorEvaluationContext, alerts: AlertsResource
) -> dg.SensorResult:
    settings = load_settings()
    previous = json.loads(context.cursor) if context.cursor else {"state": "up"}
    problem = probe_source(settings)
    state = "down" if problem else "up"
    url = mask_url(settings.neon_db_url) if settings.neon_db_url else "embedded PostgreSQL"
    if state != previous["state"]:
        if state == "down":
            alerts.sink().send(
                Alert(
                    kind="source_db_unreachable",
                    title="Source database unreachable",
                    message=f"{url}: {problem}",
                    runbook="docs/runbooks.md#database-connection-impossible",
                )
            )
        else:
            alerts.sink().send(
                Alert(
                    kind="source_db_recovered",
                    title="Source database reachable again",
                    message=f"{url} answers again (down since {previous.get('since')})",
                    severity="info",
                )
            )
    since = previous.get("since") if state == previous["state"] else datetime.now(UTC).isoformat()
    return dg.SensorResult(cursor=json.dumps({"state": state, "since": since}))


@dg.run_status_sensor(
    name="metrics_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rewrites data/metrics/amazon_reviews.prom (and pushes it) after each run.",
)
def metrics_sensor(context: dg.RunStatusSensorContext) -> None:
    publish(load_settings(), context.instance)
