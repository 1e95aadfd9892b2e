"""Tests of `fact_reviews`, its relevance score and the gold summaries (`transforms.gold`)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from amazon_reviews.transforms.gold import (
    COMPONENTS,
    ScoringParams,
    build_fact_reviews,
    score_histogram,
    top_products,
)

BATCH_TIME = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PARAMS = ScoringParams()

FACT_COLUMNS = [
    "review_id",
    "customer_id",
    "parent_asin",
    "asin",
    "product_title",
    "main_category",
    "store",
    "price",
    "rating",
    "title",
    "text",
    "text_length",
    "text_truncated",
    "helpful_vote",
    "verified_purchase",
    "purchase_verified",
    "image_count",
    "customer_country",
    "created_at",
    "review_date",
    "review_year",
    "review_age_days",
    "helpfulness_score",
    "verified_score",
    "recency_score",
    "text_quality_score",
    "relevance_score",
    "batch_id",
]

# The schema of silver `review_enriched` as far as gold reads it.
ENRICHED_SCHEMA = pl.Schema(
    {
        "review_id": pl.String,
        "customer_id": pl.String,
        "asin": pl.String,
        "parent_asin": pl.String,
        "rating": pl.Int8,
        "title": pl.String,
        "text": pl.String,
        "text_length": pl.Int32,
        "text_truncated": pl.Boolean,
        "helpful_vote": pl.Int32,
        "verified_purchase": pl.Boolean,
        "created_at": pl.Datetime("us", "UTC"),
        "updated_at": pl.Datetime("us", "UTC"),
        "product_title": pl.String,
        "main_category": pl.String,
        "store": pl.String,
        "price": pl.Float64,
        "product_average_rating": pl.Float64,
        "product_rating_number": pl.Int32,
        "customer_display_name": pl.String,
        "customer_country": pl.String,
        "image_count": pl.Int32,
        "purchase_verified": pl.Boolean,
    }
)


def review(
    review_id: str = "R1",
    *,
    helpful_vote: int = 0,
    text_length: int = 100,
    age: timedelta = timedelta(days=10),
    verified_purchase: bool = False,
    purchase_verified: bool = False,
    parent_asin: str = "P1",
    rating: int = 4,
) -> dict[str, Any]:
    created = BATCH_TIME - age
    return {
        "review_id": review_id,
        "customer_id": "C1",
        "asin": "A1",
        "parent_asin": parent_asin,
        "rating": rating,
        "title": "t",
        "text": "x" * min(text_length, 10),
        "text_length": text_length,
        "text_truncated": False,
        "helpful_vote": helpful_vote,
        "verified_purchase": verified_purchase,
        "created_at": created,
        "updated_at": created,
        "product_title": f"Product {parent_asin}",
        "main_category": "Kitchen",
        "store": "Acme",
        "price": 9.5,
        "product_average_rating": 4.0,
        "product_rating_number": 3,
        "customer_display_name": "Ann",
        "customer_country": "DE",
        "image_count": 0,
        "purchase_verified": purchase_verified,
    }


def enriched(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=ENRICHED_SCHEMA)


def fact(rows: list[dict[str, Any]], params: ScoringParams = PARAMS) -> pl.DataFrame:
    return build_fact_reviews(enriched(rows), batch_id="b1", batch_time=BATCH_TIME, params=params)


def test_fact_reviews_columns_and_rows() -> None:
    rows = [review("R3"), review("R1", helpful_vote=3), review("R2", verified_purchase=True)]
    out = fact(rows)
    assert out.columns == FACT_COLUMNS
    assert out.height == len(rows)
    assert out["review_id"].to_list() == ["R3", "R1", "R2"]  # the input order, kept
    assert out["batch_id"].to_list() == ["b1"] * 3
    assert out.schema["review_date"] == pl.Date
    assert out.schema["review_year"] == pl.Int16
    assert out.schema["review_age_days"] == pl.Int32
    for col in (*COMPONENTS, "relevance_score"):
        assert out.schema[col] == pl.Float64, col
    first = out.row(1, named=True)  # R1
    assert first["review_date"] == date(2024, 5, 22)
    assert first["review_year"] == 2024
    assert first["review_age_days"] == 10
    assert first["helpful_vote"] == 3


def test_fact_reviews_empty() -> None:
    out = fact([])
    assert out.columns == FACT_COLUMNS
    assert out.height == 0


def test_worked_example() -> None:
    out = fact(
        [
            review(
                helpful_vote=9,
                verified_purchase=True,
                purchase_verified=True,
                age=timedelta(days=365),
                text_length=200,
            )
        ]
    )
    row = out.row(0, named=True)
    helpfulness = math.log(10) / math.log(51)
    assert row["helpfulness_score"] == pytest.approx(helpfulness)
    assert row["verified_score"] == pytest.approx(1.0)
    assert row["recency_score"] == pytest.approx(0.5)
    assert row["text_quality_score"] == pytest.approx(0.5)
    assert row["review_age_days"] == 365
    expected = 0.4 * helpfulness + 0.2 * 1.0 + 0.2 * 0.5 + 0.2 * 0.5
    assert row["relevance_score"] == pytest.approx(expected)
    assert row["relevance_score"] == pytest.approx(0.6343, abs=1e-4)


def test_component_edges() -> None:
    out = fact(
        [
            review("R1", helpful_vote=0, text_length=0, age=timedelta(0)),
            review("R2", helpful_vote=50, text_length=400, verified_purchase=True),
            review("R3", helpful_vote=10_000, text_length=10_000, purchase_verified=True),
            review("R4", age=-timedelta(days=3)),  # created after the batch time
        ]
    )
    rows = {r["review_id"]: r for r in out.iter_rows(named=True)}
    assert rows["R1"]["helpfulness_score"] == 0.0
    assert rows["R1"]["text_quality_score"] == 0.0
    assert rows["R1"]["recency_score"] == 1.0
    assert rows["R2"]["helpfulness_score"] == pytest.approx(1.0)
    assert rows["R2"]["text_quality_score"] == 1.0
    assert rows["R2"]["verified_score"] == 0.5
    assert rows["R3"]["helpfulness_score"] == 1.0
    assert rows["R3"]["text_quality_score"] == 1.0
    assert rows["R3"]["verified_score"] == 0.5
    assert rows["R4"]["recency_score"] == 1.0
    assert rows["R4"]["review_age_days"] == 0


def test_weights_are_normalised() -> None:
    doubled = ScoringParams(
        weight_helpfulness=0.8, weight_verified=0.4, weight_recency=0.4, weight_text_quality=0.4
    )
    rows = [review("R1", helpful_vote=4, verified_purchase=True), review("R2", text_length=7)]
    a, b = fact(rows), fact(rows, doubled)
    assert a["relevance_score"].to_list() == pytest.approx(b["relevance_score"].to_list())
    only_text = ScoringParams(
        weight_helpfulness=0, weight_verified=0, weight_recency=0, weight_text_quality=1
    )
    c = fact(rows, only_text)
    assert_frame_equal(
        c.select(pl.col("relevance_score").alias("s")),
        c.select(pl.col("text_quality_score").alias("s")),
    )


@pytest.mark.parametrize(
    "weights",
    [(-0.1, 0.2, 0.2, 0.2), (0.4, -1.0, 0.2, 0.2), (0.4, 0.2, 0.2, -0.01), (0, 0, 0, 0)],
)
def test_scoring_params_reject_bad_weights(weights: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="weights"):
        ScoringParams(
            weight_helpfulness=weights[0],
            weight_verified=weights[1],
            weight_recency=weights[2],
            weight_text_quality=weights[3],
        )


def test_scoring_params_defaults() -> None:
    assert PARAMS.weights() == (0.4, 0.2, 0.2, 0.2)
    ScoringParams(
        weight_helpfulness=0, weight_verified=0, weight_recency=0, weight_text_quality=0.01
    )


# --- properties of the score ------------------------------------------------------------------

votes = st.integers(0, 10**7)
lengths = st.integers(0, 100_000)
# from ~3 years in the future (clipped to age 0) to ~60 years in the past, to the microsecond
ages = st.integers(-(10**14), 2 * 10**15).map(lambda us: timedelta(microseconds=us))
review_args = st.fixed_dictionaries(
    {
        "helpful_vote": votes,
        "text_length": lengths,
        "age": ages,
        "verified_purchase": st.booleans(),
        "purchase_verified": st.booleans(),
    }
)


@settings(max_examples=200, deadline=None)
@given(st.lists(review_args, min_size=1, max_size=8))
def test_scores_are_in_unit_interval(args: list[dict[str, Any]]) -> None:
    out = fact([review(f"R{i:02d}", **a) for i, a in enumerate(args)])
    assert out.height == len(args)
    for col in (*COMPONENTS, "relevance_score"):
        values = out[col]
        assert values.null_count() == 0, col
        assert values.is_nan().sum() == 0, col
        assert ((values >= 0) & (values <= 1)).all(), (col, values.to_list())
    ages_out = out["review_age_days"].to_list()
    for a, days in zip(args, ages_out, strict=True):
        assert days == max(0, math.floor(a["age"].total_seconds() / 86_400))
    for a, score in zip(args, out["recency_score"], strict=True):
        if a["age"] <= timedelta(0):
            assert score == 1.0


@settings(max_examples=200, deadline=None)
@given(review_args, votes, votes)
def test_more_helpful_votes_never_lower_the_score(base: dict[str, Any], v1: int, v2: int) -> None:
    low, high = sorted((v1, v2))
    out = fact(
        [
            review("a", **{**base, "helpful_vote": low}),
            review("b", **{**base, "helpful_vote": high}),
        ]
    )
    a, b = out["relevance_score"].to_list()
    assert a <= b
    ha, hb = out["helpfulness_score"].to_list()
    assert ha <= hb


@settings(max_examples=200, deadline=None)
@given(review_args)
def test_verified_beats_unverified(base: dict[str, Any]) -> None:
    out = fact(
        [
            review("a", **{**base, "verified_purchase": False}),
            review("b", **{**base, "verified_purchase": True}),
        ]
    )
    unverified, verified = out["relevance_score"].to_list()
    assert verified > unverified
    assert out["verified_score"][1] - out["verified_score"][0] == 0.5


@settings(max_examples=200, deadline=None)
@given(st.lists(review_args, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_scores_are_deterministic(args: list[dict[str, Any]], rnd: Any) -> None:
    rows = [review(f"R{i:02d}", **a) for i, a in enumerate(args)]
    first = fact(rows)
    assert_frame_equal(fact(rows), first)
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    # a row's scores depend on that row alone (gold is built chunk by chunk), so shuffled input
    # gives the same rows, in the input's order
    assert_frame_equal(fact(shuffled).sort("review_id"), first.sort("review_id"))


# --- summaries --------------------------------------------------------------------------------


def scores_frame(scores: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"relevance_score": scores}, schema={"relevance_score": pl.Float64})


def test_score_histogram_bins() -> None:
    scores = [0.0, 0.05, 0.1, 0.15, 0.5, 0.95, 0.999, 1.0]
    hist = score_histogram(scores_frame(scores))
    assert hist.columns == ["range", "reviews"]
    assert hist.height == 10
    assert hist["reviews"].sum() == len(scores)
    assert hist["reviews"].to_list() == [2, 2, 0, 0, 0, 1, 0, 0, 0, 3]
    assert hist["range"].to_list()[0] == "[0.0, 0.1)"
    assert hist["range"].to_list()[-1] == "[0.9, 1.0)"


def test_score_histogram_empty() -> None:
    hist = score_histogram(scores_frame([]))
    assert hist.height == 10
    assert hist["reviews"].sum() == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(review_args, max_size=20))
def test_score_histogram_counts_every_review(args: list[dict[str, Any]]) -> None:
    out = fact([review(f"R{i:02d}", **a) for i, a in enumerate(args)])
    hist = score_histogram(out)
    assert hist.height == 10
    assert hist["reviews"].sum() == out.height


def test_top_products_ordering() -> None:
    rows = []
    # P1: 3 reviews; P2 and P3: 2 reviews each, P3 scores higher; P4 and P0: 1 review each,
    # with equal scores, so ties fall back to parent_asin.
    for i, (asin, votes_) in enumerate(
        [
            ("P1", 0),
            ("P1", 0),
            ("P1", 0),
            ("P2", 0),
            ("P2", 0),
            ("P3", 50),
            ("P3", 50),
            ("P4", 5),
            ("P0", 5),
        ]
    ):
        rows.append(review(f"R{i}", parent_asin=asin, helpful_vote=votes_, rating=1 + i % 5))
    out = fact(rows)
    top = top_products(out, n=4)
    assert top.columns == [
        "parent_asin",
        "product_title",
        "reviews",
        "mean_relevance",
        "mean_rating",
    ]
    assert top["parent_asin"].to_list() == ["P1", "P3", "P2", "P0"]
    assert top["reviews"].to_list() == [3, 2, 2, 1]
    assert top["product_title"].to_list() == [
        "Product P1",
        "Product P3",
        "Product P2",
        "Product P0",
    ]
    p1 = out.filter(pl.col("parent_asin") == "P1")
    assert top["mean_relevance"][0] == pytest.approx(round(p1["relevance_score"].mean(), 3))
    assert top["mean_rating"][0] == pytest.approx(2.0)  # ratings 1, 2, 3
    assert top_products(out)["parent_asin"].to_list() == ["P1", "P3", "P2", "P0", "P4"]
    assert top_products(out, n=1).height == 1
