"""Partition-aware asset checks that reconcile the layers and guard the contract.

Checks read the files themselves (Parquet footers, schemas, checksums), not only the
manifests, so a file changed or truncated after it was written is caught. Each check is a plain
function of (lake, batch); the checks of one layer execute together in one step (a
`multi_asset_check`, subsettable), which keeps a run to seven steps instead of thirty. Every check
is blocking: a failure stops the next layer of the same run.
"""

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from amazon_reviews import contract
from amazon_reviews.assets.bronze import BRONZE_KEYS
from amazon_reviews.assets.gold import FACT_REVIEWS_KEY
from amazon_reviews.assets.silver import ENRICHED_KEY, SILVER_KEYS
from amazon_reviews.io.extract import arrow_schema
from amazon_reviews.io.lake import Lake
from amazon_reviews.partitions import batch_partitions
from amazon_reviews.resources import LakeResource
from amazon_reviews.transforms.gold import COMPONENTS

# Partitioned checks are a preview feature in this Dagster release; DESIGN.md asks for them
# (an unpartitioned check on a partitioned asset would load every partition).
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def.*")

ROWS_MATCH_SOURCE = "rows_match_source"
SCHEMA_MATCHES_CONTRACT = "schema_matches_contract"
FILES_MATCH_MANIFEST = "files_match_manifest"
ROWS_RECONCILE_WITH_BRONZE = "rows_reconcile_with_bronze"
KEY_UNIQUE_NOT_NULL = "key_unique_not_null"
ROWS_MATCH_SILVER_REVIEW = "rows_match_silver_review"
ROWS_RECONCILE_WITH_SILVER = "rows_reconcile_with_silver"
SCORE_IN_RANGE = "relevance_score_in_range"
GOLD_PRESENT = "gold_present"

Outcome = tuple[bool, dict]
Evaluate = Callable[[Lake, str], Outcome]


@dataclass(frozen=True)
class Check:
    """One check: which asset, its name, the layers it reads, and how it is evaluated."""

    asset: dg.AssetKey
    name: str
    description: str
    needs: tuple[str, ...]
    evaluate: Evaluate

    @property
    def key(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.asset, self.name)


def _rows(lake: Lake, layer: str, batch: str, name: str) -> int:
    return pq.read_metadata(lake.table_path(layer, batch, name)).num_rows


def schema_drift(expected: pa.Schema, actual: pa.Schema) -> list[str]:
    """Column-by-column differences between two Arrow schemas, in words."""
    exp = {f.name: f.type for f in expected}
    act = {f.name: f.type for f in actual}
    drift = []
    for n, t in exp.items():
        if n not in act:
            drift.append(f"column {n} missing (expected {t})")
        elif act[n] != t:
            drift.append(f"column {n} is {act[n]}, expected {t}")
    drift += [f"column {n} not in contract ({t})" for n, t in act.items() if n not in exp]
    return drift


def rows_match_source(table: str) -> Evaluate:
    def evaluate(lake: Lake, batch: str) -> Outcome:
        m = lake.manifest("bronze", batch) or {}
        bronze_rows = _rows(lake, "bronze", batch, table)
        source_rows = m["source"]["rows"][table]
        return bronze_rows == source_rows, {
            "bronze_rows": bronze_rows,
            "source_rows": source_rows,
            "difference": bronze_rows - source_rows,
            "snapshot_at": m["source"]["snapshot_at"],
        }

    return evaluate


def schema_matches_contract(table: str) -> Evaluate:
    def evaluate(lake: Lake, batch: str) -> Outcome:
        actual = pq.read_schema(lake.table_path("bronze", batch, table))
        drift = schema_drift(arrow_schema(contract.table(table)), actual)
        return not drift, {"drift": "; ".join(drift) or "none", "columns": len(actual)}

    return evaluate


def files_match_manifest(layer: str, table: str) -> Evaluate:
    def evaluate(lake: Lake, batch: str) -> Outcome:
        problems = lake.verify(layer, batch, tables=[table])
        return not problems, {"problems": "; ".join(problems) or "none"}

    return evaluate


def key_unique_not_null(layer: str, table: str, key: tuple[str, ...]) -> Evaluate:
    def evaluate(lake: Lake, batch: str) -> Outcome:
        stats = (
            lake.scan(layer, batch, table)
            .select(
                pl.len().alias("rows"),
                pl.struct(list(key)).n_unique().alias("distinct_keys"),
                pl.any_horizontal([pl.col(c).is_null() for c in key]).sum().alias("null_keys"),
            )
            .collect()
            .row(0, named=True)
        )
        duplicates = stats["rows"] - stats["distinct_keys"]
        return duplicates == 0 and stats["null_keys"] == 0, {
            "key": ", ".join(key),
            "rows": stats["rows"],
            "duplicate_keys": duplicates,
            "null_keys": stats["null_keys"],
        }

    return evaluate


def rows_reconcile_with_bronze(table: str) -> Evaluate:
    def evaluate(lake: Lake, batch: str) -> Outcome:
        bronze_rows = _rows(lake, "bronze", batch, table)
        silver_rows = _rows(lake, "silver", batch, table)
        rejected_rows = _rows(lake, "silver", batch, f"rejected/{table}")
        return silver_rows + rejected_rows == bronze_rows, {
            "bronze_rows": bronze_rows,
            "silver_rows": silver_rows,
            "rejected_rows": rejected_rows,
            "difference": silver_rows + rejected_rows - bronze_rows,
        }

    return evaluate


def enriched_rows_match_review(lake: Lake, batch: str) -> Outcome:
    review_rows = _rows(lake, "silver", batch, "review")
    enriched_rows = _rows(lake, "silver", batch, "review_enriched")
    return review_rows == enriched_rows, {
        "silver_review_rows": review_rows,
        "review_enriched_rows": enriched_rows,
    }


def gold_rows_reconcile(lake: Lake, batch: str) -> Outcome:
    enriched_rows = _rows(lake, "silver", batch, "review_enriched")
    gold_rows = _rows(lake, "gold", batch, "fact_reviews")
    return gold_rows == enriched_rows, {
        "review_enriched_rows": enriched_rows,
        "gold_rows": gold_rows,
        "difference": gold_rows - enriched_rows,
    }


def score_in_range(lake: Lake, batch: str) -> Outcome:
    cols = [*COMPONENTS, "relevance_score"]
    out = (
        lake.scan("gold", batch, "fact_reviews")
        .select(
            [(~pl.col(c).is_between(0.0, 1.0) | pl.col(c).is_null()).sum().alias(c) for c in cols]
            + [
                pl.col("relevance_score").min().alias("min"),
                pl.col("relevance_score").max().alias("max"),
            ]
        )
        .collect()
        .row(0, named=True)
    )
    bad = {c: out[c] for c in cols if out[c]}
    return not bad, {
        "out_of_range": ", ".join(f"{c}: {n}" for c, n in bad.items()) or "none",
        "min": float(out["min"] or 0),
        "max": float(out["max"] or 0),
    }


def gold_present(lake: Lake, batch: str) -> Outcome:
    states = {layer: lake.is_complete(layer, batch) for layer in ("bronze", "silver", "gold")}
    return states["gold"], {f"{k}_complete": v for k, v in states.items()}


def _registry() -> dict[str, list[Check]]:
    bronze, silver = [], []
    for name, t in contract.TABLES.items():
        key = BRONZE_KEYS[name]
        bronze += [
            Check(
                key,
                ROWS_MATCH_SOURCE,
                "Bronze rows equal the source count in the same snapshot.",
                ("bronze",),
                rows_match_source(name),
            ),
            Check(
                key,
                SCHEMA_MATCHES_CONTRACT,
                "The Parquet schema equals the source contract, column by column.",
                ("bronze",),
                schema_matches_contract(name),
            ),
            Check(
                key,
                FILES_MATCH_MANIFEST,
                "The file's size and sha256 equal the manifest's.",
                ("bronze",),
                files_match_manifest("bronze", name),
            ),
        ]
        silver += [
            Check(
                SILVER_KEYS[name],
                ROWS_RECONCILE_WITH_BRONZE,
                "Silver rows + rejected rows = bronze rows.",
                ("bronze", "silver"),
                rows_reconcile_with_bronze(name),
            ),
            Check(
                SILVER_KEYS[name],
                KEY_UNIQUE_NOT_NULL,
                f"Key ({', '.join(t.key)}) is unique and never null.",
                ("silver",),
                key_unique_not_null("silver", name, t.key),
            ),
        ]
    silver += [
        Check(
            ENRICHED_KEY,
            KEY_UNIQUE_NOT_NULL,
            "Key (review_id) is unique and never null.",
            ("silver",),
            key_unique_not_null("silver", "review_enriched", ("review_id",)),
        ),
        Check(
            ENRICHED_KEY,
            ROWS_MATCH_SILVER_REVIEW,
            "review_enriched has exactly one row per silver review.",
            ("silver",),
            enriched_rows_match_review,
        ),
    ]
    gold = [
        Check(
            FACT_REVIEWS_KEY,
            ROWS_RECONCILE_WITH_SILVER,
            "Gold rows = silver review_enriched rows.",
            ("silver", "gold"),
            gold_rows_reconcile,
        ),
        Check(
            FACT_REVIEWS_KEY,
            KEY_UNIQUE_NOT_NULL,
            "Key (review_id) is unique and never null.",
            ("gold",),
            key_unique_not_null("gold", "fact_reviews", ("review_id",)),
        ),
        Check(
            FACT_REVIEWS_KEY,
            SCORE_IN_RANGE,
            "relevance_score and its components lie in [0, 1], never null.",
            ("gold",),
            score_in_range,
        ),
        Check(
            FACT_REVIEWS_KEY,
            GOLD_PRESENT,
            "Gold is complete for the batch (also failed by "
            "gold_missing_sensor when the deadline passes without it).",
            (),
            gold_present,
        ),
    ]
    return {"bronze": bronze, "silver": silver, "gold": gold}


CHECKS = _registry()


def run_check(check: Check, lake: Lake, batch: str) -> dg.AssetCheckResult:
    """Evaluate one check; a missing layer or unreadable file is a failed check, not a crash."""
    for layer in check.needs:
        if not lake.is_complete(layer, batch):
            return dg.AssetCheckResult(
                asset_key=check.asset,
                check_name=check.name,
                passed=False,
                description=f"{layer} batch {batch} is not complete (no manifest)",
                metadata={"batch": batch, "layer": layer},
            )
    try:
        passed, metadata = check.evaluate(lake, batch)
    except (OSError, pa.ArrowException, pl.exceptions.PolarsError, KeyError) as exc:
        passed, metadata = False, {"error": f"{type(exc).__name__}: {exc}"}
    return dg.AssetCheckResult(
        asset_key=check.asset,
        check_name=check.name,
        passed=passed,
        metadata={"batch": batch, **metadata},
    )


def _layer_checks(layer: str) -> dg.AssetChecksDefinition:
    checks = {c.key: c for c in CHECKS[layer]}

    @dg.multi_asset_check(
        name=f"{layer}_checks",
        specs=[
            dg.AssetCheckSpec(
                c.name,
                asset=c.asset,
                description=c.description,
                blocking=True,
                partitions_def=batch_partitions,
            )
            for c in checks.values()
        ],
        can_subset=True,
        description=f"Every check of the {layer} layer, for one batch.",
    )
    def layer_checks(
        context: dg.AssetCheckExecutionContext, lake: LakeResource
    ) -> Iterator[dg.AssetCheckResult]:
        store = lake.lake()
        for key in sorted(context.selected_asset_check_keys, key=str):
            yield run_check(checks[key], store, context.partition_key)

    return layer_checks


def all_checks() -> list[dg.AssetChecksDefinition]:
    return [_layer_checks(layer) for layer in CHECKS]
