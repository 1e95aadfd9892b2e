"""Bronze: an exact, consistent Parquet snapshot of every source table, per batch."""

from collections.abc import Iterator

import dagster as dg

from amazon_reviews import contract
from amazon_reviews.assets.metadata import table_metadata
from amazon_reviews.io.postgres import SourceSchemaMissing, SourceUnavailable
from amazon_reviews.layers import extract_bronze
from amazon_reviews.partitions import batch_partitions
from amazon_reviews.resources import LakeResource, SourceDatabase

BRONZE_KEYS = {name: dg.AssetKey(["bronze", name]) for name in contract.TABLES}

# Neon wakes from suspend in seconds; a failed extract (connection lost mid-stream) is retried
# from scratch, which is safe because nothing is visible until the whole batch is renamed in.
EXTRACT_RETRY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dg.multi_asset(
    name="bronze_snapshot",
    specs=[
        dg.AssetSpec(
            key,
            group_name="bronze",
            kinds={"postgres", "parquet"},
            description=f"One row per row of source table amazon.{name}, as of the snapshot.",
        )
        for name, key in BRONZE_KEYS.items()
    ],
    partitions_def=batch_partitions,
    # One snapshot is consistent only across all tables together, so no subsetting.
    can_subset=False,
    retry_policy=EXTRACT_RETRY,
)
def bronze_snapshot(
    context: dg.AssetExecutionContext, source_db: SourceDatabase, lake: LakeResource
) -> Iterator[dg.MaterializeResult]:
    """Every source table from one REPEATABLE READ, READ ONLY snapshot, to zstd Parquet."""
    batch = context.partition_key
    store = lake.lake()
    try:
        writer, info = extract_bronze(store, source_db.settings(), source_db.url(), batch)
    except SourceUnavailable:
        raise  # transient (Neon waking up, a dropped connection): the retry policy re-runs
    except SourceSchemaMissing as exc:
        # Retrying cannot create a table: fail at once, with the fix in the message.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except OSError as exc:
        # A full disk or a read-only folder does not heal in seconds: fail at once.
        raise dg.Failure(
            description=f"writing the bronze snapshot failed: {exc}", allow_retries=False
        ) from None
    for name, key in BRONZE_KEYS.items():
        written = writer.tables[name]
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=table_metadata(
                written,
                str(store.table_path("bronze", batch, name)),
                source_rows=info.source_rows[name],
                snapshot_at=info.snapshot_at.isoformat(),
                source=info.source,
            ),
        )
