"""Operational jobs as ops: retention and the integrity drill (schema contract + restore)."""

import dagster as dg

from amazon_reviews.io.alerts import Alert
from amazon_reviews.io.postgres import column_drift, session
from amazon_reviews.io.restore import restore_drill
from amazon_reviews.resources import AlertsResource, LakeResource, SourceDatabase
from amazon_reviews.retention import apply_cleanup


@dg.op(description="Delete batches past retention: files of every layer and the partition.")
def retention_op(context: dg.OpExecutionContext, lake: LakeResource) -> dg.Output:
    settings = lake.settings()
    report = apply_cleanup(
        lake.lake(),
        context.instance,
        older_than_days=settings.retention.days,
        keep_last=settings.retention.keep_last,
        dry_run=False,
    )
    context.log.info(f"retention removed {report.plan.delete}, freed {report.bytes_freed} bytes")
    return dg.Output(
        None,
        metadata={
            "deleted": ", ".join(report.plan.delete) or "none",
            "bytes_freed": report.bytes_freed,
            "kept": len(report.plan.keep),
        },
    )


@dg.op(
    description="Compare the live source schema with the contract; reload the newest "
    "bronze batch into a scratch schema and compare counts and checksums."
)
def integrity_op(
    context: dg.OpExecutionContext,
    source_db: SourceDatabase,
    lake: LakeResource,
    alerts: AlertsResource,
) -> dg.Output:
    settings = source_db.settings()
    url = source_db.url()
    with session(url, settings) as conn, conn.cursor() as cur:
        drift = column_drift(cur)
    store = lake.lake()
    complete = [b for b in store.batches("bronze") if store.is_complete("bronze", b)]
    # The newest written, not the last by name: free-form ids do not sort by time.
    latest = max(complete, key=lambda b: store.manifest("bronze", b)["created_at"], default=None)
    problems = [f"{t}: {'; '.join(p)}" for t, p in drift.items()]
    drill = None
    if latest is not None:
        try:
            drill = restore_drill(settings, url, store, latest)
        except Exception as exc:  # an unreadable file is a failed drill, and must alert
            problems.append(f"restore drill of {latest} failed: {type(exc).__name__}: {exc}")
    if drill is not None and not drill.passed:
        problems += [
            f"restore drill {t}: {r}"
            for t, r in drill.tables.items()
            if not (r["rows_match"] and r["checksum_match"])
        ]
    metadata = {
        "schema_drift": "; ".join(problems) or "none",
        "drill_batch": drill.batch_id if drill else "none (no complete bronze batch)",
        "drill_seconds": round(drill.seconds, 2) if drill else 0.0,
    }
    if problems:
        alerts.sink().send(
            Alert(
                kind="integrity_failed",
                title="Integrity drill failed",
                message="; ".join(problems),
                runbook="docs/runbooks.md#failed-asset-check",
            )
        )
        raise dg.Failure(
            description="integrity drill failed: " + "; ".join(problems), metadata=metadata
        )
    return dg.Output(None, metadata=metadata)


@dg.job(description="Weekly retention of old batches.")
def retention_job() -> None:
    retention_op()


@dg.job(description="Monthly schema contract check and bronze restore drill.")
def integrity_job() -> None:
    integrity_op()
