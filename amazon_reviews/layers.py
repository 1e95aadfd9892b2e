"""One function per layer: read the upstream layer, call the pure transform, write the batch.

No Dagster here: the assets wrap these functions with metadata, and the benchmarks call them
directly, so both measure and run exactly the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from amazon_reviews.batches import batch_time_from_id
from amazon_reviews.config import Settings
from amazon_reviews.io.extract import SnapshotInfo, extract_snapshot
from amazon_reviews.io.lake import BatchWriter, Lake
from amazon_reviews.parallel import ordered_map
from amazon_reviews.transforms.gold import ScoringParams, build_fact_reviews
from amazon_reviews.transforms.silver import SilverSettings, stream_silver


@dataclass
class LayerResult:
    writer: BatchWriter
    upstream: dict[str, Any]


def scoring_params(settings: Settings) -> ScoringParams:
    m = settings.model
    return ScoringParams(
        weight_helpfulness=m.weights.helpfulness,
        weight_verified=m.weights.verified,
        weight_recency=m.weights.recency,
        weight_text_quality=m.weights.text_quality,
        helpful_votes_saturation=m.helpful_votes_saturation,
        recency_half_life_days=m.recency_half_life_days,
        text_length_target=m.text_length_target,
    )


def extract_bronze(
    lake: Lake, settings: Settings, url: str, batch: str
) -> tuple[BatchWriter, SnapshotInfo]:
    """Snapshot every source table into `bronze/batch=<batch>`."""
    with lake.write_batch("bronze", batch) as writer:
        info = extract_snapshot(url, settings, writer)
        writer.extra.update(info.manifest())
        # Generated ids carry their time, so re-extracting a batch keeps its scores stable.
        writer.extra["batch_time"] = (batch_time_from_id(batch) or info.snapshot_at).isoformat()
    return writer, info


def transform_silver(
    lake: Lake, settings: Settings, batch: str
) -> tuple[LayerResult, dict[str, dict[str, int]]]:
    """Clean the batch's bronze into `silver/batch=<batch>` (quarantine included), streaming
    bronze in chunks of `transform.chunk_rows`; returns the reject counts per table and rule."""
    bronze = lake.require(
        "bronze", batch, needed_by="silver", command=f"amazon-reviews extract --batch-id {batch}"
    )
    cfg = SilverSettings(
        batch_time=datetime.fromisoformat(bronze["batch_time"]),
        min_date=settings.transform.min_date,
        max_text_chars=settings.transform.max_text_chars,
    )
    rows = settings.transform.chunk_rows
    with (
        lake.write_batch("silver", batch) as writer,
        writer.streams() as emit,
        writer.scratch() as spill,
    ):
        rejects = stream_silver(
            lambda table: lake.iter_frames("bronze", batch, table, rows),
            emit,
            spill,
            cfg,
            threads=settings.transform.threads,
        )
        writer.extra["rejects"] = rejects
        writer.extra["batch_time"] = cfg.batch_time.isoformat()
    return LayerResult(writer, bronze), rejects


def model_gold(lake: Lake, settings: Settings, batch: str) -> tuple[LayerResult, pl.LazyFrame]:
    """Score the batch's enriched reviews into `gold/batch=<batch>/fact_reviews.parquet`, chunk
    by chunk; returns the written table, to scan."""
    silver = lake.require(
        "silver", batch, needed_by="gold", command=f"amazon-reviews transform --batch-id {batch}"
    )
    params = scoring_params(settings)
    batch_time = datetime.fromisoformat(silver["batch_time"])
    rows = settings.transform.chunk_rows
    with lake.write_batch("gold", batch) as writer, writer.streams() as emit:
        for fact in ordered_map(
            lambda enriched: build_fact_reviews(
                enriched, batch_id=batch, batch_time=batch_time, params=params
            ),
            lake.iter_frames("silver", batch, "review_enriched", rows),
            settings.transform.threads,
        ):
            emit("fact_reviews", fact)
        writer.extra["batch_time"] = silver["batch_time"]
        # Which weights scored this batch, so a score can always be explained later.
        writer.extra["scoring"] = params.__dict__
    return LayerResult(writer, silver), lake.scan("gold", batch, "fact_reviews")
