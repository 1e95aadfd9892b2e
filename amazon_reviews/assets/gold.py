"""Gold: `fact_reviews`, the business-ready fact table with its relevance score."""

import dagster as dg

from amazon_reviews.assets.metadata import markdown_table, table_metadata
from amazon_reviews.assets.silver import ENRICHED_KEY
from amazon_reviews.io.serving import publish_gold
from amazon_reviews.layers import model_gold
from amazon_reviews.partitions import batch_partitions
from amazon_reviews.resources import LakeResource, SourceDatabase
from amazon_reviews.transforms.gold import score_histogram, score_mean, top_products

FACT_REVIEWS_KEY = dg.AssetKey(["gold", "fact_reviews"])


@dg.asset(
    key=FACT_REVIEWS_KEY,
    group_name="gold",
    kinds={"polars", "parquet"},
    deps=[ENRICHED_KEY],
    partitions_def=batch_partitions,
)
def fact_reviews(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per valid review, from silver/review_enriched, with relevance_score in [0, 1]."""
    batch = context.partition_key
    store = lake.lake()
    done, fact = model_gold(store, lake.settings(), batch)
    written = done.writer.tables["fact_reviews"]
    return dg.MaterializeResult(
        metadata=table_metadata(
            written,
            str(store.table_path("gold", batch, "fact_reviews")),
            score_mean=score_mean(fact),
            score_histogram=dg.MetadataValue.md(markdown_table(score_histogram(fact).to_dicts())),
            top_products=dg.MetadataValue.md(markdown_table(top_products(fact).to_dicts())),
        )
    )


FACT_REVIEWS_PG_KEY = dg.AssetKey(["gold", "fact_reviews_pg"])


@dg.asset(
    key=FACT_REVIEWS_PG_KEY,
    group_name="gold",
    kinds={"polars", "postgres"},
    deps=[FACT_REVIEWS_KEY],
    partitions_def=batch_partitions,
)
def fact_reviews_pg(
    context: dg.AssetExecutionContext, lake: LakeResource, source_db: SourceDatabase
) -> dg.MaterializeResult:
    """One row per valid review of the batch, in amazon_gold.fact_reviews, swapped in whole."""
    batch = context.partition_key
    store = lake.lake()
    store.require(
        "gold", batch, needed_by="serving", command=f"amazon-reviews model --batch-id {batch}"
    )
    settings = source_db.settings()
    parts = store.iter_frames("gold", batch, "fact_reviews", settings.transform.chunk_rows)
    published = publish_gold(source_db.url(), settings, parts, batch)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": published.rows,
            "dagster/table_name": "amazon_gold.fact_reviews",
            "publish_seconds": round(published.seconds, 3),
        }
    )
