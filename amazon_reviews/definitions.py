"""The code location: every asset, check, job, schedule, sensor and resource, listed explicitly."""

import dagster as dg

from amazon_reviews.assets.bronze import bronze_snapshot
from amazon_reviews.assets.gold import fact_reviews
from amazon_reviews.assets.silver import silver_tables
from amazon_reviews.checks import all_checks
from amazon_reviews.jobs import daily_batch_job, layer_jobs
from amazon_reviews.resources import LakeResource, SourceDatabase

defs = dg.Definitions(
    assets=[bronze_snapshot, silver_tables, fact_reviews],
    asset_checks=all_checks(),
    jobs=[daily_batch_job, *layer_jobs.values()],
    resources={"source_db": SourceDatabase(), "lake": LakeResource()},
)
