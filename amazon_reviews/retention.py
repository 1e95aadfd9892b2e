"""Retention: which batches to delete, and deleting their files and partitions together.

The plan is pure (ages and completeness in, batch ids out); `apply_cleanup` does the IO. The
newest batch whose gold is complete is never deleted, whatever the settings say, and neither
are the `keep_last` newest batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from amazon_reviews.batches import batch_time_from_id
from amazon_reviews.io.lake import LAYERS, Lake, dir_size


@dataclass(frozen=True)
class BatchAge:
    batch_id: str
    created_at: datetime
    gold_complete: bool


@dataclass
class CleanupPlan:
    delete: list[str] = field(default_factory=list)
    keep: dict[str, str] = field(default_factory=dict)  # batch -> why it is kept


@dataclass
class CleanupReport:
    plan: CleanupPlan
    bytes_freed: int = 0
    partitions_removed: list[str] = field(default_factory=list)
    dry_run: bool = False


def plan_cleanup(
    batches: list[BatchAge], *, older_than_days: int, keep_last: int, now: datetime
) -> CleanupPlan:
    """Batches older than `older_than_days`, except the newest `keep_last` and the newest
    batch with complete gold."""
    plan = CleanupPlan()
    newest_first = sorted(batches, key=lambda b: (b.created_at, b.batch_id), reverse=True)
    latest_gold = next((b.batch_id for b in newest_first if b.gold_complete), None)
    cutoff = now - timedelta(days=older_than_days)
    for i, b in enumerate(newest_first):
        if b.batch_id == latest_gold:
            plan.keep[b.batch_id] = "latest batch with complete gold"
        elif i < keep_last:
            plan.keep[b.batch_id] = f"among the {keep_last} newest"
        elif b.created_at >= cutoff:
            plan.keep[b.batch_id] = f"younger than {older_than_days} days"
        else:
            plan.delete.append(b.batch_id)
    return plan


def batch_ages(lake: Lake, known: list[str]) -> list[BatchAge]:
    """Every batch on disk or registered, with its creation time (manifest, id, or mtime)."""
    ids = set(known)
    for layer in LAYERS:
        ids.update(lake.batches(layer))
    ages = []
    for batch in sorted(ids):
        created = None
        for layer in LAYERS:
            m = lake.manifest(layer, batch)
            if m and m.get("created_at"):
                created = datetime.fromisoformat(m["created_at"])
                break
        if created is None:
            created = batch_time_from_id(batch)
        if created is None:
            mtimes = [
                lake.batch_dir(layer, batch).stat().st_mtime
                for layer in LAYERS
                if lake.batch_dir(layer, batch).exists()
            ]
            created = datetime.fromtimestamp(max(mtimes), UTC) if mtimes else datetime.now(UTC)
        ages.append(BatchAge(batch, created, lake.is_complete("gold", batch)))
    return ages


def apply_cleanup(
    lake: Lake,
    instance,
    *,
    older_than_days: int,
    keep_last: int,
    dry_run: bool,
    now: datetime | None = None,
) -> CleanupReport:
    """Delete planned batches: every layer's folder and the Dagster partition."""
    from amazon_reviews.partitions import BATCH_PARTITIONS_NAME

    known = list(instance.get_dynamic_partitions(BATCH_PARTITIONS_NAME)) if instance else []
    plan = plan_cleanup(
        batch_ages(lake, known),
        older_than_days=older_than_days,
        keep_last=keep_last,
        now=now or datetime.now(UTC),
    )
    report = CleanupReport(plan=plan, dry_run=dry_run)
    for batch in plan.delete:
        if dry_run:
            report.bytes_freed += sum(
                dir_size(lake.batch_dir(layer, batch))
                for layer in LAYERS
                if lake.batch_dir(layer, batch).exists()
            )
            continue
        for layer in LAYERS:
            report.bytes_freed += lake.delete_batch(layer, batch)
        if instance is not None and batch in known:
            instance.delete_dynamic_partition(BATCH_PARTITIONS_NAME, batch)
            report.partitions_removed.append(batch)
    return report
