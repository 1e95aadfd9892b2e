"""Schedules: the daily batch, weekly retention, the monthly integrity drill."""

from datetime import datetime

import dagster as dg

from amazon_reviews.batches import new_batch_id
from amazon_reviews.config import ScheduleSettings
from amazon_reviews.jobs import daily_batch_job, integrity_job, retention_job
from amazon_reviews.partitions import BATCH_PARTITIONS_NAME


def batch_id_for_tick(scheduled_time: datetime) -> str:
    """The batch id of a daily tick: its scheduled time in UTC, `YYYYMMDDTHHMMSSZ`."""
    return new_batch_id(scheduled_time)


def build_daily_batch_schedule(cfg: ScheduleSettings) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_batch_schedule",
        cron_schedule=cfg.cron,
        execution_timezone=cfg.timezone,
        job=daily_batch_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Creates the day's batch partition and runs bronze, silver and gold.",
    )
    def daily_batch_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        batch = batch_id_for_tick(context.scheduled_execution_time)
        # A schedule cannot return dynamic partition requests: add the partition here.
        if not context.instance.has_dynamic_partition(BATCH_PARTITIONS_NAME, batch):
            context.instance.add_dynamic_partitions(BATCH_PARTITIONS_NAME, [batch])
        # The run key is the batch: a tick evaluated twice never launches a second run.
        return dg.RunRequest(run_key=batch, partition_key=batch, tags={"batch_id": batch})

    return daily_batch_schedule


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    job=retention_job,
    cron_schedule="0 4 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly: delete batches past retention (files and partitions).",
)

integrity_schedule = dg.ScheduleDefinition(
    name="integrity_schedule",
    job=integrity_job,
    cron_schedule="0 5 1 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Monthly: source schema contract check and bronze restore drill.",
)
