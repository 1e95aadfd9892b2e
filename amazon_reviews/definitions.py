"""The code location: every asset, check, job, schedule, sensor and resource, listed explicitly.

The daily schedule's cron and time zone, and the gold deadline, come from `config.yaml`: a
schedule's cron is part of its definition, so it is read when the definitions are built.
Nothing else (no database, no network) is touched at import.
"""

import dagster as dg

from amazon_reviews.assets.bronze import bronze_snapshot
from amazon_reviews.assets.gold import fact_reviews, fact_reviews_pg
from amazon_reviews.assets.silver import silver_tables
from amazon_reviews.checks import all_checks
from amazon_reviews.config import Settings, load_settings
from amazon_reviews.jobs import daily_batch_job, integrity_job, layer_jobs, retention_job
from amazon_reviews.resources import AlertsResource, LakeResource, SourceDatabase
from amazon_reviews.schedules import (
    build_daily_batch_schedule,
    integrity_schedule,
    retention_schedule,
)
from amazon_reviews.sensors import (
    build_gold_missing_sensor,
    metrics_sensor,
    run_failure_alert_sensor,
    source_db_health_sensor,
)


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[bronze_snapshot, silver_tables, fact_reviews, fact_reviews_pg],
        asset_checks=all_checks(),
        jobs=[daily_batch_job, *layer_jobs.values(), retention_job, integrity_job],
        schedules=[
            build_daily_batch_schedule(settings.schedule),
            retention_schedule,
            integrity_schedule,
        ],
        sensors=[
            build_gold_missing_sensor(settings.schedule),
            run_failure_alert_sensor,
            metrics_sensor,
            source_db_health_sensor,
        ],
        # Layers run one after another, so a subprocess per step would only add start-up time
        # (seconds per step); Kubernetes deployments swap in the k8s executor (deployment.md).
        executor=dg.in_process_executor,
        resources={
            "source_db": SourceDatabase(),
            "lake": LakeResource(),
            "alerts": AlertsResource(),
        },
    )


defs = build_definitions(load_settings())
