"""Jobs: the daily batch (all layers) and one per layer for the CLI's step commands."""

import dagster as dg

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
