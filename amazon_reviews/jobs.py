"""Jobs: the daily batch (all layers), one per layer for the CLI's step commands, and the
operational op jobs (retention, integrity) defined in `maintenance`."""

import dagster as dg

from amazon_reviews.maintenance import integrity_job, retention_job
from amazon_reviews.partitions import batch_partitions

LAYER_GROUPS = ("bronze", "silver", "gold")

daily_batch_job = dg.define_asset_job(
    name="daily_batch_job",
    selection=dg.AssetSelection.groups(*LAYER_GROUPS),
    partitions_def=batch_partitions,
    description="Extract, transform and model one batch: bronze, silver, gold and their checks.",
)

layer_jobs = {
    layer: dg.define_asset_job(
        name=f"{layer}_job",
        selection=dg.AssetSelection.groups(layer),
        partitions_def=batch_partitions,
        description=f"Materialise the {layer} layer of one batch, with its checks.",
    )
    for layer in LAYER_GROUPS
}

__all__ = ["daily_batch_job", "integrity_job", "layer_jobs", "retention_job"]
