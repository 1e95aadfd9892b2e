"""Tests of the silver cleaning rules, quarantine and enrichment (`transforms.silver`).

Every frame is tiny and built with the bronze contract schema, so these run without a database.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from amazon_reviews import contract
from amazon_reviews.transforms import silver
from amazon_reviews.transforms.silver import (
    BUYER_RULES,
    CUSTOMER_RULES,
    IMAGE_RULES,
    PRODUCT_RULES,
    REJECT_REASON,
    REVIEW_RULES,
    CleanResult,
    SilverSettings,
)

BATCH_TIME = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
CFG = SilverSettings(batch_time=BATCH_TIME, min_date=date(1995, 1, 1), max_text_chars=50)
T0 = datetime(2024, 1, 10, 8, 0, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)

Row = dict[str, Any]


def bronze(table: str, rows: list[Row]) -> pl.DataFrame:
    """A bronze frame of `table` from dicts: missing columns are null, types are the contract's."""
    schema = contract.TABLES[table].polars_schema
    unknown = {k for row in rows for k in row} - set(schema)
    assert not unknown, f"not columns of {table}: {unknown}"
    data: dict[str, list[Any]] = {}
    for name, dtype in schema.items():
        values = [row.get(name) for row in rows]
        if isinstance(dtype, pl.Decimal):
            values = [None if v is None else Decimal(str(v)) for v in values]
        data[name] = values
    frame = pl.DataFrame(data, schema=schema)
    assert frame.schema == schema
    return frame


PRODUCT_ROW: Row = {
    "parent_asin": "P1",
    "title": "A &amp; B kettle",
    "main_category": "Kitchen",
    "store": "Acme",
    "price": "19.99",
    "average_rating": "4.5",
    "rating_number": 12,
    "categories": '["Home", "Kitchen"]',
    "features": '["1 litre"]',
    "details": '{"colour": "red"}',
    "updated_at": T0,
}
CUSTOMER_ROW: Row = {
    "customer_id": "C1",
    "display_name": "Ann",
    "country": "de",
    "created_at": datetime(2020, 1, 1, tzinfo=UTC),
    "updated_at": datetime(2020, 1, 1, tzinfo=UTC),
}
BUYER_ROW: Row = {
    "buyer_id": 1,
    "customer_id": "C1",
    "asin": "A1",
    "parent_asin": "P1",
    "purchased_at": T0 - timedelta(days=3),
    "quantity": 1,
    "unit_price": "19.99",
}
REVIEW_ROW: Row = {
    "review_id": "R1",
    "customer_id": "C1",
    "asin": "A1",
    "parent_asin": "P1",
    "rating": "4.0",
    "title": "Good",
    "text": "Works well.",
    "helpful_vote": 2,
    "verified_purchase": True,
    "created_at": T0,
    "updated_at": T0,
}
IMAGE_ROW: Row = {
    "review_id": "R1",
    "ordinal": 0,
    "small_image_url": "https://img.test/s.jpg",
    "medium_image_url": "https://img.test/m.jpg",
    "large_image_url": "https://img.test/l.jpg",
    "attachment_type": "image",
}


def clean_products_frame() -> pl.DataFrame:
    return silver.clean_products(bronze("product", [PRODUCT_ROW]), CFG).clean


def clean_customers_frame() -> pl.DataFrame:
    return silver.clean_customers(bronze("customer", [CUSTOMER_ROW]), CFG).clean


def clean_reviews_frame() -> pl.DataFrame:
    products, customers = clean_products_frame(), clean_customers_frame()
    return silver.clean_reviews(bronze("review", [REVIEW_ROW]), products, customers, CFG).clean


# One runner per table: bronze frame -> CleanResult, with the clean upstream tables it needs.
RUNNERS: dict[str, Callable[[pl.DataFrame], CleanResult]] = {
    "product": lambda b: silver.clean_products(b, CFG),
    "customer": lambda b: silver.clean_customers(b, CFG),
    "buyer": lambda b: silver.clean_buyers(b, CFG),
    "review": lambda b: silver.clean_reviews(
        b, clean_products_frame(), clean_customers_frame(), CFG
    ),
    "review_images": lambda b: silver.clean_images(b, clean_reviews_frame()),
}
BASE_ROWS: dict[str, Row] = {
    "product": PRODUCT_ROW,
    "customer": CUSTOMER_ROW,
    "buyer": BUYER_ROW,
    "review": REVIEW_ROW,
    "review_images": IMAGE_ROW,
}


@dataclass(frozen=True)
class RuleCase:
    """Overrides of the base row that pass, and that fail, one rule.

    With `twin`, the frame also holds a later-updated copy of the base row (a different key),
    so the row under test is a duplicate when its cleaned content matches the base row's.
    """

    table: str
    rule: str
    passing: Row
    failing: Row
    twin: bool = False
    extra: list[Row] = field(default_factory=list)


RULE_CASES = [
    RuleCase("product", "price_negative", {"price": "0.00"}, {"price": "-0.01"}),
    RuleCase(
        "customer",
        "created_at_in_future",
        {"created_at": BATCH_TIME},
        {"created_at": BATCH_TIME + ONE_US},
    ),
    RuleCase("buyer", "quantity_not_positive", {"quantity": 1}, {"quantity": 0}),
    RuleCase(
        "buyer",
        "purchased_at_in_future",
        {"purchased_at": BATCH_TIME},
        {"purchased_at": BATCH_TIME + ONE_US},
    ),
    RuleCase("review", "rating_out_of_range", {"rating": "1.0"}, {"rating": "6.0"}),
    RuleCase("review", "helpful_vote_negative", {"helpful_vote": 0}, {"helpful_vote": -1}),
    RuleCase("review", "created_at_missing", {"created_at": T0}, {"created_at": None}),
    RuleCase(
        "review",
        "created_at_in_future",
        {"created_at": BATCH_TIME},
        {"created_at": BATCH_TIME + ONE_US},
    ),
    RuleCase(
        "review",
        "created_at_before_1995",
        {"created_at": datetime(1995, 1, 1, tzinfo=UTC)},
        {"created_at": datetime(1995, 1, 1, tzinfo=UTC) - ONE_US},
    ),
    RuleCase("review", "text_empty", {"text": " x "}, {"text": " <br /> "}),
    RuleCase(
        "review",
        "duplicate_content",
        {"review_id": "R2", "text": "Something else."},
        # same customer, product and *cleaned* text as the later twin
        {"review_id": "R2", "text": "  Works well.<br>"},
        twin=True,
    ),
    # Identifiers are compared exactly: " P1 " is not "P1" (trimming keys could collide them).
    RuleCase("review", "orphan_product", {"parent_asin": "P1"}, {"parent_asin": " P1 "}),
    RuleCase("review", "orphan_customer", {"customer_id": "C1"}, {"customer_id": "C1 "}),
    RuleCase("review_images", "orphan_review", {"review_id": "R1"}, {"review_id": " R1"}),
]
TABLE_RULES = {
    "product": PRODUCT_RULES,
    "customer": CUSTOMER_RULES,
    "buyer": BUYER_RULES,
    "review": REVIEW_RULES,
    "review_images": IMAGE_RULES,
}


def test_every_rule_has_a_case() -> None:
    assert silver.RULES == TABLE_RULES
    for table, rules in TABLE_RULES.items():
        assert [c.rule for c in RULE_CASES if c.table == table] == list(rules), table


def case_rows(case: RuleCase, overrides: Row) -> tuple[list[Row], Row]:
    target = {**BASE_ROWS[case.table], **overrides}
    rows = [target, *case.extra]
    if case.twin:
        rows.append({**BASE_ROWS[case.table], "review_id": "R0", "updated_at": T0 + ONE_US})
    return rows, target


def row_mask(frame: pl.DataFrame, table: str, target: Row) -> pl.Series:
    """Rows of `frame` (bronze values) holding the key of `target`."""
    key = contract.TABLES[table].key
    return frame.select(pl.all_horizontal(pl.col(k) == target[k] for k in key)).to_series()


def check_invariants(table: str, b: pl.DataFrame, result: CleanResult) -> None:
    """Rows are conserved, and the quarantine holds bronze rows exactly, plus the reason."""
    assert result.clean.height + result.rejected.height == b.height
    assert result.rejected.columns == [*b.columns, REJECT_REASON]
    assert result.rejected.schema[REJECT_REASON] == pl.String
    assert result.rejected[REJECT_REASON].null_count() == 0
    assert set(result.rejected[REJECT_REASON]) <= set(TABLE_RULES[table])
    key = list(contract.TABLES[table].key)
    rejected_keys = result.rejected.select(key)
    expected = b.join(rejected_keys, on=key, how="semi", nulls_equal=True)
    assert_frame_equal(result.rejected.drop(REJECT_REASON), expected, check_row_order=False)


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda c: f"{c.table}-{c.rule}")
def test_rule_passes(case: RuleCase) -> None:
    rows, target = case_rows(case, case.passing)
    b = bronze(case.table, rows)
    result = RUNNERS[case.table](b)
    check_invariants(case.table, b, result)
    assert not row_mask(result.rejected, case.table, target).any(), result.rejected
    assert result.clean.height == b.height


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda c: f"{c.table}-{c.rule}")
def test_rule_rejects(case: RuleCase) -> None:
    rows, target = case_rows(case, case.failing)
    b = bronze(case.table, rows)
    result = RUNNERS[case.table](b)
    check_invariants(case.table, b, result)
    assert result.rejected.height == 1
    assert result.rejected[REJECT_REASON].to_list() == [case.rule]
    assert row_mask(result.rejected, case.table, target).all()
    # the quarantined row is the bronze row, untouched
    assert_frame_equal(
        result.rejected.drop(REJECT_REASON), b.filter(row_mask(b, case.table, target))
    )
    assert result.reject_counts() == {case.rule: 1}


@pytest.mark.parametrize("rating", ["0.0", "6.0", "3.5", "-1.0", None], ids=lambda r: f"rating={r}")
def test_rating_out_of_range_values(rating: str | None) -> None:
    result = RUNNERS["review"](bronze("review", [{**REVIEW_ROW, "rating": rating}]))
    assert result.rejected[REJECT_REASON].to_list() == ["rating_out_of_range"]


def test_null_text_is_text_empty() -> None:
    result = RUNNERS["review"](bronze("review", [{**REVIEW_ROW, "text": None}]))
    assert result.rejected[REJECT_REASON].to_list() == ["text_empty"]


def test_null_quantity_is_rejected_and_null_dates_pass() -> None:
    buyers = silver.clean_buyers(
        bronze(
            "buyer",
            [{**BUYER_ROW, "quantity": None}, {**BUYER_ROW, "buyer_id": 2, "purchased_at": None}],
        ),
        CFG,
    )
    assert buyers.rejected["buyer_id"].to_list() == [1]
    assert buyers.rejected[REJECT_REASON].to_list() == ["quantity_not_positive"]
    assert buyers.clean["buyer_id"].to_list() == [2]
    customers = silver.clean_customers(
        bronze("customer", [{**CUSTOMER_ROW, "created_at": None}]), CFG
    )
    assert customers.clean.height == 1


def test_first_failing_rule_wins_for_every_pair_of_review_rules() -> None:
    """For every two review rules whose defects fit in one row, the earlier rule is named."""
    cases = {c.rule: c for c in RULE_CASES if c.table == "review"}
    checked = 0
    for first, second in itertools.combinations(REVIEW_RULES, 2):
        a, b_ = cases[first], cases[second]
        if set(a.failing) & set(b_.failing) - {"review_id"}:
            continue  # both defects live in the same column (the created_at rules)
        target = {**REVIEW_ROW, **a.failing, **b_.failing}
        rows = [target]
        if a.twin or b_.twin:
            # a later copy of the very same row, so the row under test is its duplicate
            rows.append({**target, "review_id": "R0", "updated_at": T0 + ONE_US})
        frame = bronze("review", rows)
        result = RUNNERS["review"](frame)
        check_invariants("review", frame, result)
        reasons = dict(result.rejected.select("review_id", REJECT_REASON).iter_rows())
        assert reasons.get(target["review_id"]) == first, (first, second, reasons)
        checked += 1
    assert checked >= 25


def test_first_failing_rule_wins_for_buyers() -> None:
    row = {**BUYER_ROW, "quantity": -2, "purchased_at": BATCH_TIME + timedelta(days=1)}
    result = RUNNERS["buyer"](bronze("buyer", [row]))
    assert result.rejected[REJECT_REASON].to_list() == ["quantity_not_positive"]


def reviews(rows: list[Row]) -> tuple[pl.DataFrame, CleanResult]:
    b = bronze("review", [{**REVIEW_ROW, **r} for r in rows])
    result = RUNNERS["review"](b)
    check_invariants("review", b, result)
    return b, result


def reasons_by_id(result: CleanResult) -> dict[str, str]:
    return dict(result.rejected.select("review_id", REJECT_REASON).iter_rows())


def test_duplicate_content_keeps_latest_updated_at() -> None:
    _, result = reviews(
        [
            {"review_id": "R1", "updated_at": T0 + timedelta(days=1)},
            {"review_id": "R2", "updated_at": T0 + timedelta(days=3)},  # latest: kept
            {"review_id": "R3", "updated_at": T0 + timedelta(days=2)},
            {"review_id": "R9", "updated_at": T0},
        ]
    )
    assert result.clean["review_id"].to_list() == ["R2"]
    assert reasons_by_id(result) == {
        "R1": "duplicate_content",
        "R3": "duplicate_content",
        "R9": "duplicate_content",
    }


def test_duplicate_content_tie_broken_by_greatest_review_id() -> None:
    _, result = reviews([{"review_id": "R2"}, {"review_id": "R3"}, {"review_id": "R1"}])
    assert result.clean["review_id"].to_list() == ["R3"]
    assert reasons_by_id(result) == {"R1": "duplicate_content", "R2": "duplicate_content"}


def test_duplicate_content_null_updated_at_falls_back_to_created_at() -> None:
    _, result = reviews(
        [
            {"review_id": "R1", "updated_at": None, "created_at": T0 + timedelta(days=5)},
            {"review_id": "R2", "updated_at": T0 + timedelta(days=1)},
        ]
    )
    assert result.clean["review_id"].to_list() == ["R1"]


def test_duplicate_content_needs_same_customer_product_and_text() -> None:
    _, result = reviews(
        [
            {"review_id": "R1"},
            {"review_id": "R2", "text": "Works well!"},
            {"review_id": "R3", "parent_asin": "P2"},  # orphan product, not a duplicate
            {"review_id": "R4", "customer_id": "C2"},  # orphan customer, not a duplicate
            {"review_id": "R5", "title": "Other title", "rating": "1.0"},  # same text: dup
        ]
    )
    assert sorted(result.clean["review_id"]) == ["R2", "R5"]
    assert reasons_by_id(result) == {
        "R1": "duplicate_content",
        "R3": "orphan_product",
        "R4": "orphan_customer",
    }


def test_duplicates_only_among_rows_passing_earlier_rules() -> None:
    _, result = reviews(
        [
            # later copies that fail earlier rules must not make R1 a duplicate
            {"review_id": "R1"},
            {"review_id": "R2", "rating": "7.0", "updated_at": T0 + timedelta(days=1)},
            {"review_id": "R3", "helpful_vote": -4, "updated_at": T0 + timedelta(days=2)},
            {"review_id": "R4", "created_at": None, "updated_at": T0 + timedelta(days=3)},
        ]
    )
    assert result.clean["review_id"].to_list() == ["R1"]
    assert reasons_by_id(result) == {
        "R2": "rating_out_of_range",
        "R3": "helpful_vote_negative",
        "R4": "created_at_missing",
    }


def test_duplicate_rejected_before_orphan_checks() -> None:
    _, result = reviews(
        [
            {"review_id": "R1", "parent_asin": "P9"},
            {"review_id": "R2", "parent_asin": "P9", "updated_at": T0 + ONE_US},
        ]
    )
    assert result.clean.height == 0
    assert reasons_by_id(result) == {"R1": "duplicate_content", "R2": "orphan_product"}


def test_review_repairs() -> None:
    long_text = "x" * 45 + "  " + "y" * 20  # 67 characters after cleaning
    _, result = reviews(
        [
            {"review_id": "R1", "rating": "4.0", "helpful_vote": None, "title": "  "},
            {"review_id": "R2", "text": long_text, "verified_purchase": None},
            {"review_id": "R3", "text": "z" * 50, "updated_at": None},
            {"review_id": "R4", "text": "<b>caf&eacute;</b>&amp;<br/>more", "rating": "5.0"},
        ]
    )
    clean = result.clean.sort("review_id")
    assert clean.columns == [
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
    ]
    assert clean.schema["rating"] == pl.Int8
    assert clean.schema["text_length"] == pl.Int32
    assert clean.schema["helpful_vote"] == pl.Int32
    assert clean.schema["text_truncated"] == pl.Boolean
    rows = {r["review_id"]: r for r in clean.iter_rows(named=True)}
    assert set(rows) == {"R1", "R2", "R3", "R4"}
    assert rows["R1"]["rating"] == 4
    assert rows["R1"]["helpful_vote"] == 0
    assert rows["R1"]["title"] is None
    assert rows["R2"]["text"] == long_text[:50]
    assert rows["R2"]["text_length"] == 50
    assert rows["R2"]["text_truncated"] is True
    assert rows["R2"]["verified_purchase"] is False
    assert rows["R3"]["text_length"] == 50
    assert rows["R3"]["text_truncated"] is False
    assert rows["R3"]["updated_at"] == T0  # falls back to created_at
    assert rows["R4"]["text"] == "caf\u00e9&\nmore"
    assert rows["R4"]["text_length"] == len("caf\u00e9&\nmore")
    assert rows["R4"]["rating"] == 5


def test_products_repairs_and_null_price_is_kept() -> None:
    b = bronze(
        "product",
        [
            {**PRODUCT_ROW, "parent_asin": "P1", "price": None, "store": " ", "title": None},
            {**PRODUCT_ROW, "parent_asin": "P2", "categories": "not json", "features": None},
            {**PRODUCT_ROW, "parent_asin": "P3", "categories": '[{"a": 1}]', "features": '[["x"]]'},
        ],
    )
    result = silver.clean_products(b, CFG)
    check_invariants("product", b, result)
    assert result.rejected.height == 0
    clean = result.clean
    assert clean.schema["price"] == pl.Float64
    assert clean.schema["categories"] == pl.List(pl.String)
    rows = {r["parent_asin"]: r for r in clean.iter_rows(named=True)}
    assert rows["P1"]["price"] is None
    assert rows["P1"]["store"] is None
    assert rows["P1"]["categories"] == ["Home", "Kitchen"]
    assert rows["P2"]["price"] == pytest.approx(19.99)
    assert rows["P2"]["title"] == "A & B kettle"
    assert rows["P2"]["categories"] == []
    assert rows["P2"]["features"] == []
    # arrays of non-strings are "anything else": an empty list, not a failed batch
    assert rows["P3"]["categories"] == []
    assert rows["P3"]["features"] == []


def test_customer_and_image_repairs() -> None:
    customers = silver.clean_customers(
        bronze("customer", [{**CUSTOMER_ROW, "customer_id": "C1", "country": " de "}]), CFG
    )
    assert customers.clean.select("customer_id", "country").row(0) == ("C1", "DE")
    images = silver.clean_images(
        bronze(
            "review_images", [{**IMAGE_ROW, "attachment_type": " image ", "large_image_url": ""}]
        ),
        clean_reviews_frame(),
    )
    assert images.clean.select("attachment_type", "large_image_url").row(0) == ("IMAGE", None)


def mixed_rows() -> dict[str, list[Row]]:
    """Per table, every passing and failing case row (with distinct keys)."""
    out: dict[str, list[Row]] = {t: [] for t in BASE_ROWS}
    for i, case in enumerate(RULE_CASES):
        for j, overrides in enumerate((case.passing, case.failing)):
            rows, _ = case_rows(case, overrides)
            for k, row in enumerate(rows):
                n = i * 10 + j * 3 + k
                if case.table == "buyer":
                    row = {**row, "buyer_id": n}
                elif case.table == "product":
                    row = {**row, "parent_asin": f"{row['parent_asin']}-{n}"}
                elif case.table == "customer":
                    row = {**row, "customer_id": f"{row['customer_id']}-{n}"}
                elif case.table == "review_images":
                    row = {**row, "ordinal": n}
                elif case.table == "review":
                    row = {**row, "review_id": f"{row['review_id']}-{n}"}
                out[case.table].append(row)
    return out


@pytest.mark.parametrize("table", list(BASE_ROWS))
def test_row_counts_are_conserved_on_mixed_frames(table: str) -> None:
    b = bronze(table, mixed_rows()[table])
    result = RUNNERS[table](b)
    check_invariants(table, b, result)
    assert result.rejected.height > 0
    assert result.clean.height > 0


@pytest.mark.parametrize("table", list(BASE_ROWS))
def test_empty_frames(table: str) -> None:
    b = bronze(table, [])
    result = RUNNERS[table](b)
    assert result.clean.height == 0
    assert result.rejected.columns == [*b.columns, REJECT_REASON]
    assert result.reject_counts() == {}


# --- enrichment -------------------------------------------------------------------------------


def test_enrich_reviews() -> None:
    t = T0
    products = silver.clean_products(
        bronze("product", [PRODUCT_ROW, {**PRODUCT_ROW, "parent_asin": "P2", "title": "Two"}]),
        CFG,
    ).clean
    customers = silver.clean_customers(
        bronze("customer", [CUSTOMER_ROW, {**CUSTOMER_ROW, "customer_id": "C2", "country": "fr"}]),
        CFG,
    ).clean
    review_rows = [
        {"review_id": "R1", "text": "one"},  # bought before: verified, two images
        {"review_id": "R2", "text": "two", "asin": "A2"},  # bought A2 only after the review
        {"review_id": "R3", "text": "three", "customer_id": "C2"},  # C2 bought another asin
        {"review_id": "R4", "text": "four", "asin": "A4"},  # bought exactly at created_at
        {"review_id": "R5", "text": "five", "asin": "A5"},  # never bought
        {"review_id": "R6", "text": "six", "parent_asin": "P2", "asin": "A6"},  # twice before
    ]
    reviews_clean = silver.clean_reviews(
        bronze("review", [{**REVIEW_ROW, **r} for r in review_rows]), products, customers, CFG
    ).clean
    assert reviews_clean.height == 6
    buyers = silver.clean_buyers(
        bronze(
            "buyer",
            [
                {**BUYER_ROW, "buyer_id": 1, "asin": "A1", "purchased_at": t - timedelta(days=1)},
                {**BUYER_ROW, "buyer_id": 2, "asin": "A2", "purchased_at": t + timedelta(days=1)},
                {**BUYER_ROW, "buyer_id": 3, "customer_id": "C2", "asin": "A9"},
                {
                    **BUYER_ROW,
                    "buyer_id": 4,
                    "customer_id": "C2",
                    "asin": "A1",
                    "purchased_at": t + timedelta(days=1),
                },
                {**BUYER_ROW, "buyer_id": 5, "asin": "A4", "purchased_at": t},
                {**BUYER_ROW, "buyer_id": 6, "asin": "A6", "purchased_at": t - timedelta(days=9)},
                {**BUYER_ROW, "buyer_id": 7, "asin": "A6", "purchased_at": t - timedelta(days=2)},
                {**BUYER_ROW, "buyer_id": 8, "customer_id": "C2", "asin": "A5"},  # other buyer
            ],
        ),
        CFG,
    ).clean
    images = silver.clean_images(
        bronze(
            "review_images",
            [
                {**IMAGE_ROW, "ordinal": 0},
                {**IMAGE_ROW, "ordinal": 1},
                {**IMAGE_ROW, "review_id": "R6", "ordinal": 0},
            ],
        ),
        reviews_clean,
    ).clean

    enriched = silver.enrich_reviews(reviews_clean, products, customers, buyers, images)
    assert enriched.height == reviews_clean.height
    assert enriched["review_id"].n_unique() == enriched.height
    assert set(reviews_clean.columns) <= set(enriched.columns)
    for col in (
        "product_title",
        "main_category",
        "store",
        "price",
        "product_average_rating",
        "product_rating_number",
        "customer_display_name",
        "customer_country",
        "image_count",
        "purchase_verified",
    ):
        assert col in enriched.columns
    assert enriched.schema["image_count"] == pl.Int32
    assert enriched.schema["purchase_verified"] == pl.Boolean

    got = enriched.sort("review_id").select(
        "review_id", "purchase_verified", "image_count", "product_title", "customer_country"
    )
    expected = pl.DataFrame(
        {
            "review_id": ["R1", "R2", "R3", "R4", "R5", "R6"],
            "purchase_verified": [True, False, False, True, False, True],
            "image_count": [2, 0, 0, 0, 0, 1],
            "product_title": ["A & B kettle"] * 5 + ["Two"],
            "customer_country": ["DE", "DE", "FR", "DE", "DE", "DE"],
        },
        schema_overrides={"image_count": pl.Int32},
    )
    assert_frame_equal(got, expected)
    # the review columns come through unchanged
    assert_frame_equal(
        enriched.select(reviews_clean.columns).sort("review_id"),
        reviews_clean.sort("review_id"),
    )


def test_enrich_reviews_left_joins_keep_reviews() -> None:
    reviews_clean = clean_reviews_frame()
    products = clean_products_frame().clear()
    customers = clean_customers_frame().clear()
    buyers = silver.clean_buyers(bronze("buyer", []), CFG).clean
    images = silver.clean_images(bronze("review_images", []), reviews_clean).clean
    enriched = silver.enrich_reviews(reviews_clean, products, customers, buyers, images)
    assert enriched["review_id"].to_list() == ["R1"]
    row = enriched.row(0, named=True)
    assert row["product_title"] is None
    assert row["customer_country"] is None
    assert row["image_count"] == 0
    assert row["purchase_verified"] is False


# --- the whole batch --------------------------------------------------------------------------


def small_bronze_batch() -> dict[str, list[Row]]:
    return {
        "product": [
            PRODUCT_ROW,
            {**PRODUCT_ROW, "parent_asin": "P2", "price": None},
            {**PRODUCT_ROW, "parent_asin": "P3", "price": "-5.00"},  # rejected
        ],
        "customer": [
            CUSTOMER_ROW,
            {**CUSTOMER_ROW, "customer_id": "C2"},
            {**CUSTOMER_ROW, "customer_id": "C3", "created_at": BATCH_TIME + timedelta(1)},
        ],
        "buyer": [
            BUYER_ROW,
            {**BUYER_ROW, "buyer_id": 2, "customer_id": "C2", "asin": "A2", "parent_asin": "P2"},
            {**BUYER_ROW, "buyer_id": 3, "quantity": 0},  # rejected
        ],
        "review": [
            {**REVIEW_ROW},
            {
                **REVIEW_ROW,
                "review_id": "R2",
                "customer_id": "C2",
                "asin": "A2",
                "parent_asin": "P2",
                "text": "Fine.",
            },
            {**REVIEW_ROW, "review_id": "R3", "parent_asin": "P3", "text": "Cheap."},  # orphan
            {**REVIEW_ROW, "review_id": "R4", "customer_id": "C3", "text": "Hm."},  # orphan
            {**REVIEW_ROW, "review_id": "R5", "rating": "9.0"},  # rejected
        ],
        "review_images": [
            IMAGE_ROW,
            {**IMAGE_ROW, "ordinal": 1},
            {**IMAGE_ROW, "review_id": "R3"},  # its review was rejected
        ],
    }


def test_build_silver() -> None:
    bronze_frames = {t: bronze(t, rows) for t, rows in small_bronze_batch().items()}
    batch = silver.build_silver(bronze_frames, CFG)
    out = batch.outputs()
    tables = list(contract.TABLES)
    assert set(out) == {*tables, *(f"rejected/{t}" for t in tables), "review_enriched"}
    for t in tables:
        check_invariants(t, bronze_frames[t], batch.results[t])
        assert_frame_equal(out[t], batch.results[t].clean)
        assert_frame_equal(out[f"rejected/{t}"], batch.results[t].rejected)
    assert batch.reject_counts() == {
        "product": {"price_negative": 1},
        "customer": {"created_at_in_future": 1},
        "buyer": {"quantity_not_positive": 1},
        "review": {"orphan_customer": 1, "orphan_product": 1, "rating_out_of_range": 1},
        "review_images": {"orphan_review": 1},
    }
    enriched = out["review_enriched"].sort("review_id")
    assert enriched["review_id"].to_list() == ["R1", "R2"]
    assert enriched["image_count"].to_list() == [2, 0]
    assert enriched["purchase_verified"].to_list() == [True, True]
    assert enriched["price"].to_list() == [pytest.approx(19.99), None]
    # the same bronze gives the same silver
    again = silver.build_silver(bronze_frames, CFG).outputs()
    for name, frame in out.items():
        assert_frame_equal(again[name], frame, check_row_order=False)


def chunking_batch() -> dict[str, list[Row]]:
    """`small_bronze_batch` plus every rule case and duplicates that fall in different chunks."""
    batch = small_bronze_batch()
    for table, rows in mixed_rows().items():
        batch[table] = [*batch[table], *rows]
    first = {**REVIEW_ROW, "review_id": "D1", "text": "Same <b>words</b>."}
    batch["review"] = [
        first,
        *batch["review"],
        {**first, "review_id": "D2", "text": "Same words."},  # same cleaned text: a duplicate
        {**first, "review_id": "D3", "text": "Other words."},
        {**first, "review_id": "D0", "updated_at": T0 + timedelta(days=3)},  # newest: it wins
    ]
    return batch


@pytest.mark.parametrize(("chunk_rows", "threads"), [(1, 1), (2, 2), (7, 3)])
def test_chunked_silver_equals_whole(chunk_rows: int, threads: int) -> None:
    """Silver streams bronze in chunks, several at once; any chunk size and thread count gives
    the outputs of one whole chunk, in the same order."""
    frames = {t: bronze(t, rows) for t, rows in chunking_batch().items()}
    whole = silver.build_silver(frames, CFG)
    chunked = silver.build_silver(frames, CFG, chunk_rows=chunk_rows, threads=threads)
    assert chunked.reject_counts() == whole.reject_counts()
    assert whole.reject_counts()["review"]["duplicate_content"] >= 3
    losers = whole.results["review"].rejected.filter(pl.col(REJECT_REASON) == "duplicate_content")
    assert {"D1", "D2"} <= set(losers["review_id"])
    assert "D0" in set(whole.results["review"].clean["review_id"])
    for name, frame in whole.outputs().items():
        assert_frame_equal(chunked.outputs()[name], frame)
