"""Silver: per-table cleaning rules with quarantine, and the enriched review table.

Pure Polars; no Dagster, no IO. Each rule has a name; a row failing a rule is quarantined with
that name as `reject_reason` (the first failing rule, in rule order), so for every table
`silver rows + rejected rows = bronze rows`. Repairs (trim, empty to null, HTML cleanup, NFC,
truncation of over-long text) change values but never drop rows. Identifiers (review_id,
customer_id, asin, parent_asin) are kept exactly as the source stores them: trimming a key could
make two source keys collide and duplicate rows downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from amazon_reviews.transforms.text import clean_label, clean_text

REJECT_REASON = "reject_reason"

# Rule names, in the order they are applied; each name is the `reject_reason` it produces.
REVIEW_RULES = (
    "rating_out_of_range",
    "helpful_vote_negative",
    "created_at_missing",
    "created_at_in_future",
    "created_at_before_1995",
    "text_empty",
    "duplicate_content",
    "orphan_product",
    "orphan_customer",
)
PRODUCT_RULES = ("price_negative",)
CUSTOMER_RULES = ("created_at_in_future",)
BUYER_RULES = ("quantity_not_positive", "purchased_at_in_future")
IMAGE_RULES = ("orphan_review",)
RULES: dict[str, tuple[str, ...]] = {
    "product": PRODUCT_RULES,
    "customer": CUSTOMER_RULES,
    "buyer": BUYER_RULES,
    "review": REVIEW_RULES,
    "review_images": IMAGE_RULES,
}


@dataclass(frozen=True)
class CleanResult:
    """The clean rows and the quarantined ones (original bronze values plus `reject_reason`)."""

    clean: pl.DataFrame
    rejected: pl.DataFrame

    def reject_counts(self) -> dict[str, int]:
        if self.rejected.height == 0:
            return {}
        counts = self.rejected.group_by(REJECT_REASON).len().sort(REJECT_REASON)
        return dict(zip(counts[REJECT_REASON].to_list(), counts["len"].to_list(), strict=True))


@dataclass(frozen=True)
class SilverSettings:
    """The knobs the cleaning rules read: the batch time, the oldest plausible date, max text."""

    batch_time: datetime
    min_date: date
    max_text_chars: int


def _split(
    bronze: pl.DataFrame, repaired: pl.DataFrame, checks: list[tuple[str, pl.Expr]]
) -> CleanResult:
    """Apply named checks (True = row fails) in order; first failure names the reason.

    `repaired` holds the cleaned values row-aligned with `bronze`; the quarantine keeps the
    bronze values so a rejected row can be inspected exactly as it came from the source.
    """
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    for name, failed in reversed(checks):
        reason = pl.when(failed.fill_null(True)).then(pl.lit(name)).otherwise(reason)
    reasons = repaired.select(reason.alias(REJECT_REASON)).to_series()
    ok = reasons.is_null()
    clean = repaired.filter(ok)
    rejected = bronze.with_columns(reasons).filter(~ok)
    return CleanResult(clean=clean, rejected=rejected)


def _utc_bound(d: date) -> datetime:
    from datetime import UTC

    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def clean_products(bronze: pl.DataFrame, cfg: SilverSettings) -> CleanResult:
    """One row per product (`parent_asin`): labels trimmed, text cleaned, JSON lists parsed."""
    repaired = bronze.select(
        pl.col("parent_asin"),
        clean_text(pl.col("title")).alias("title"),
        clean_label(pl.col("main_category")).alias("main_category"),
        clean_label(pl.col("store")).alias("store"),
        pl.col("price").cast(pl.Float64).alias("price"),
        pl.col("average_rating").cast(pl.Float64).alias("average_rating"),
        pl.col("rating_number").cast(pl.Int32),
        _json_list(pl.col("categories")).alias("categories"),
        _json_list(pl.col("features")).alias("features"),
        pl.col("details"),
        pl.col("updated_at"),
    )
    # A missing price is allowed (real catalogues have them); a negative one is not.
    return _split(bronze, repaired, [("price_negative", pl.col("price").fill_null(0) < 0)])


def _json_list(expr: pl.Expr) -> pl.Expr:
    """A JSON array of strings to a list column (anything else becomes an empty list)."""
    return expr.map_batches(_decode_json_lists, return_dtype=pl.List(pl.String))


_STRING_LIST = pl.List(pl.String)


def _decode_json_lists(s: pl.Series) -> pl.Series:
    """Decode a Series of JSON texts as string lists; anything else becomes an empty list.

    Vectorised; when one value cannot be read as a list of strings (an array of objects or of
    arrays, which jsonb and the importers allow, or malformed text), the whole-column decode
    fails, so the values are then decoded one at a time and the unreadable ones become `[]`.
    """
    arrays = s.str.strip_chars().str.starts_with("[").fill_null(False)
    candidates = pl.select(pl.when(arrays).then(s)).to_series().alias(s.name)
    try:
        return candidates.str.json_decode(_STRING_LIST).fill_null([])
    except pl.exceptions.PolarsError:
        decoded = [_decode_one(v) for v in candidates.to_list()]
        return pl.Series(s.name, decoded, dtype=_STRING_LIST).fill_null([])


def _decode_one(value: str | None) -> list[str | None] | None:
    if value is None:
        return None
    try:
        return pl.Series([value]).str.json_decode(_STRING_LIST).item()
    except pl.exceptions.PolarsError:
        return None


def clean_customers(bronze: pl.DataFrame, cfg: SilverSettings) -> CleanResult:
    """One row per customer (`customer_id`)."""
    repaired = bronze.select(
        pl.col("customer_id"),
        clean_text(pl.col("display_name")).alias("display_name"),
        clean_label(pl.col("country")).str.to_uppercase().alias("country"),
        pl.col("created_at"),
        pl.col("updated_at"),
    )
    return _split(
        bronze,
        repaired,
        [("created_at_in_future", pl.col("created_at").fill_null(cfg.batch_time) > cfg.batch_time)],
    )


def clean_buyers(bronze: pl.DataFrame, cfg: SilverSettings) -> CleanResult:
    """One row per purchase (`buyer_id`): who bought which asin, when."""
    repaired = bronze.select(
        pl.col("buyer_id"),
        pl.col("customer_id"),
        pl.col("asin"),
        pl.col("parent_asin"),
        pl.col("purchased_at"),
        pl.col("quantity").cast(pl.Int32),
        pl.col("unit_price").cast(pl.Float64).alias("unit_price"),
    )
    return _split(
        bronze,
        repaired,
        [
            ("quantity_not_positive", pl.col("quantity") <= 0),
            (
                "purchased_at_in_future",
                pl.col("purchased_at").fill_null(cfg.batch_time) > cfg.batch_time,
            ),
        ],
    )


def clean_reviews(
    bronze: pl.DataFrame, products: pl.DataFrame, customers: pl.DataFrame, cfg: SilverSettings
) -> CleanResult:
    """One row per valid review (`review_id`); rules in `REVIEW_RULES` order.

    `products` and `customers` are the clean silver tables: a review pointing elsewhere is an
    orphan. Among reviews of the same customer, product and cleaned text, the one with the
    latest `updated_at` (then the greatest `review_id`) is kept; the others are duplicates.
    """
    text = clean_text(pl.col("text"))
    repaired = bronze.select(
        pl.col("review_id"),
        pl.col("customer_id"),
        pl.col("asin"),
        pl.col("parent_asin"),
        pl.col("rating").cast(pl.Float64).alias("_rating"),
        clean_text(pl.col("title")).alias("title"),
        text.alias("text"),
        pl.col("helpful_vote").fill_null(0).cast(pl.Int32).alias("helpful_vote"),
        pl.col("verified_purchase").fill_null(False).alias("verified_purchase"),
        pl.col("created_at"),
        pl.col("updated_at").fill_null(pl.col("created_at")).alias("updated_at"),
    ).with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"))

    early = [
        ("rating_out_of_range", ~pl.col("_rating").is_in([1.0, 2.0, 3.0, 4.0, 5.0])),
        ("helpful_vote_negative", pl.col("helpful_vote") < 0),
        ("created_at_missing", pl.col("created_at").is_null()),
        ("created_at_in_future", pl.col("created_at") > cfg.batch_time),
        ("created_at_before_1995", pl.col("created_at") < _utc_bound(cfg.min_date)),
        ("text_empty", pl.col("text").is_null()),
    ]
    early_fail = pl.any_horizontal([f.fill_null(True) for _, f in early])
    # Duplicates are looked for among rows that pass the earlier rules only.
    survivors = repaired.filter(~early_fail)
    winners = (
        survivors.sort(["updated_at", "review_id"], descending=True)
        .unique(["customer_id", "parent_asin", "text"], keep="first", maintain_order=False)
        .select("_row")
    )
    repaired = repaired.with_columns(
        pl.col("_row").is_in(winners["_row"].implode()).alias("_winner")
    )
    result = _split(
        bronze,
        repaired,
        [
            *early,
            ("duplicate_content", ~pl.col("_winner")),
            ("orphan_product", ~pl.col("parent_asin").is_in(products["parent_asin"].implode())),
            ("orphan_customer", ~pl.col("customer_id").is_in(customers["customer_id"].implode())),
        ],
    )
    clean = result.clean.with_columns(
        pl.col("_rating").cast(pl.Int8).alias("rating"),
        (pl.col("text").str.len_chars() > cfg.max_text_chars).alias("text_truncated"),
        pl.col("text").str.slice(0, cfg.max_text_chars),
    ).with_columns(pl.col("text").str.len_chars().cast(pl.Int32).alias("text_length"))
    clean = clean.select(
        "review_id",
        "customer_id",
        "asin",
        "parent_asin",
        "rating",
        "title",
        "text",
        "text_length",
        "text_truncated",
        "helpful_vote",
        "verified_purchase",
        "created_at",
        "updated_at",
    )
    return CleanResult(clean=clean, rejected=result.rejected)


def clean_images(bronze: pl.DataFrame, reviews: pl.DataFrame) -> CleanResult:
    """One row per image of a valid review (`review_id`, `ordinal`)."""
    repaired = bronze.select(
        pl.col("review_id"),
        pl.col("ordinal"),
        clean_label(pl.col("small_image_url")).alias("small_image_url"),
        clean_label(pl.col("medium_image_url")).alias("medium_image_url"),
        clean_label(pl.col("large_image_url")).alias("large_image_url"),
        clean_label(pl.col("attachment_type")).str.to_uppercase().alias("attachment_type"),
    )
    return _split(
        bronze,
        repaired,
        [("orphan_review", ~pl.col("review_id").is_in(reviews["review_id"].implode()))],
    )


def enrich_reviews(
    reviews: pl.DataFrame,
    products: pl.DataFrame,
    customers: pl.DataFrame,
    buyers: pl.DataFrame,
    images: pl.DataFrame,
) -> pl.DataFrame:
    """One row per clean review, with product, customer, image count and verified purchase.

    `purchase_verified` is true when `buyer` holds a purchase of the same asin by the same
    customer at or before the review's creation.
    """
    image_counts = images.group_by("review_id").agg(pl.len().cast(pl.Int32).alias("image_count"))
    purchases = (
        reviews.select("review_id", "customer_id", "asin", "created_at")
        .join(
            buyers.select("customer_id", "asin", "purchased_at"),
            on=["customer_id", "asin"],
            how="inner",
        )
        .filter(pl.col("purchased_at") <= pl.col("created_at"))
        .select("review_id")
        .unique()
        .with_columns(pl.lit(True).alias("purchase_verified"))
    )
    product_cols = products.select(
        "parent_asin",
        pl.col("title").alias("product_title"),
        "main_category",
        "store",
        "price",
        pl.col("average_rating").alias("product_average_rating"),
        pl.col("rating_number").alias("product_rating_number"),
    )
    customer_cols = customers.select(
        "customer_id",
        pl.col("display_name").alias("customer_display_name"),
        pl.col("country").alias("customer_country"),
    )
    return (
        reviews.join(product_cols, on="parent_asin", how="left")
        .join(customer_cols, on="customer_id", how="left")
        .join(image_counts, on="review_id", how="left")
        .join(purchases, on="review_id", how="left")
        .with_columns(
            pl.col("image_count").fill_null(0),
            pl.col("purchase_verified").fill_null(False),
        )
    )


@dataclass(frozen=True)
class SilverBatch:
    """Every silver table of a batch: clean tables, their quarantines and the enriched review."""

    results: dict[str, CleanResult]
    review_enriched: pl.DataFrame

    def outputs(self) -> dict[str, pl.DataFrame]:
        """Table name -> frame, as written to the lake (`rejected/<table>` for quarantines)."""
        out: dict[str, pl.DataFrame] = {}
        for name, result in self.results.items():
            out[name] = result.clean
            out[f"rejected/{name}"] = result.rejected
        out["review_enriched"] = self.review_enriched
        return out

    def reject_counts(self) -> dict[str, dict[str, int]]:
        return {name: r.reject_counts() for name, r in self.results.items()}


def build_silver(bronze: dict[str, pl.DataFrame], cfg: SilverSettings) -> SilverBatch:
    """Clean every bronze table in dependency order, then enrich the reviews."""
    products = clean_products(bronze["product"], cfg)
    customers = clean_customers(bronze["customer"], cfg)
    buyers = clean_buyers(bronze["buyer"], cfg)
    reviews = clean_reviews(bronze["review"], products.clean, customers.clean, cfg)
    images = clean_images(bronze["review_images"], reviews.clean)
    enriched = enrich_reviews(
        reviews.clean, products.clean, customers.clean, buyers.clean, images.clean
    )
    return SilverBatch(
        results={
            "product": products,
            "customer": customers,
            "buyer": buyers,
            "review": reviews,
            "review_images": images,
        },
        review_enriched=enriched,
    )
