"""Silver: cleaned, typed tables with quarantined rejects, and the enriched review table."""

from collections.abc import Iterator

import dagster as dg

from amazon_reviews import contract
from amazon_reviews.assets.bronze import BRONZE_KEYS
from amazon_reviews.assets.metadata import markdown_table, table_metadata
from amazon_reviews.layers import transform_silver
from amazon_reviews.partitions import batch_partitions
from amazon_reviews.resources import LakeResource

SILVER_KEYS = {name: dg.AssetKey(["silver", name]) for name in contract.TABLES}
ENRICHED_KEY = dg.AssetKey(["silver", "review_enriched"])

_UPSTREAM = {
    "product": ["product"],
    "customer": ["customer"],
    "buyer": ["buyer"],
    "review": ["review", "product", "customer"],
    "review_images": ["review_images", "review"],
}
_GRAIN = {
    "product": "One row per valid product (parent_asin)",
    "customer": "One row per valid customer (customer_id)",
    "buyer": "One row per valid purchase (buyer_id)",
    "review": "One row per valid, de-duplicated review (review_id)",
    "review_images": "One row per image of a valid review (review_id, ordinal)",
}


@dg.multi_asset(
    name="silver_tables",
    specs=[
        *(
            dg.AssetSpec(
                key,
                group_name="silver",
                kinds={"polars", "parquet"},
                deps=[BRONZE_KEYS[u] for u in _UPSTREAM[name]],
                description=f"{_GRAIN[name]}, from bronze/{name}; rejects in rejected/{name}.",
            )
            for name, key in SILVER_KEYS.items()
        ),
        dg.AssetSpec(
            ENRICHED_KEY,
            group_name="silver",
            kinds={"polars", "parquet"},
            deps=list(SILVER_KEYS.values()),
            description="One row per valid review, with product, customer, images, purchase.",
        ),
    ],
    partitions_def=batch_partitions,
    can_subset=False,
)
def silver_tables(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> Iterator[dg.MaterializeResult]:
    """Clean every bronze table with named rules, quarantine rejects, enrich the reviews."""
    batch = context.partition_key
    store = lake.lake()
    done, rejects = transform_silver(store, lake.settings(), batch)
    writer, bronze = done.writer, done.upstream
    for name, key in [*SILVER_KEYS.items(), ("review_enriched", ENRICHED_KEY)]:
        written = writer.tables[name]
        extra = {}
        if name in rejects:
            rej = writer.tables[f"rejected/{name}"]
            extra = {
                "rejected_rows": rej.rows,
                "bronze_rows": bronze["tables"][name]["rows"],
                "rejects_by_reason": dg.MetadataValue.md(
                    markdown_table([{"reason": r, "rows": n} for r, n in rejects[name].items()])
                ),
            }
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=table_metadata(written, str(store.table_path("silver", batch, name)), **extra),
        )
