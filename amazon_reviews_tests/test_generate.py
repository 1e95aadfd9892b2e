"""Tests of the synthetic source generator: schema, keys, determinism, exact counts, realism."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from amazon_reviews import contract
from amazon_reviews.generate import AS_OF, DIRTY_KINDS, generate, plan

N = 20_000
SEED = 7


def _collect(chunks) -> dict[str, pl.DataFrame]:
    chunks = list(chunks)
    return {name: pl.concat([c[name] for c in chunks]) for name in contract.TABLES}


@pytest.fixture(scope="module")
def chunks() -> list[dict[str, pl.DataFrame]]:
    return list(generate(N, seed=SEED, chunk_reviews=6_000))


@pytest.fixture(scope="module")
def tables(chunks) -> dict[str, pl.DataFrame]:
    return _collect(chunks)


def _clean_html(text: pl.Expr) -> pl.Expr:
    """The HTML cleanup the silver layer is expected to do (line breaks and entities)."""
    return (
        text.str.replace_all("<br />", "\n", literal=True)
        .str.replace_all("&quot;", '"', literal=True)
        .str.replace_all("&#39;", "'", literal=True)
        .str.replace_all("&amp;", "&", literal=True)
    )


_ROW_RULES = {
    "rating_out_of_range": ~pl.col("rating").cast(pl.Float64).is_in([1.0, 2, 3, 4, 5]),
    "helpful_vote_negative": pl.col("helpful_vote") < 0,
    "created_at_in_future": pl.col("created_at").dt.year() >= 2100,
    "created_at_before_1995": pl.col("created_at").dt.year() < 1995,
    "text_empty": pl.col("text").is_null() | (pl.col("text").str.strip_chars() == ""),
}


def _reject_reasons(t: dict[str, pl.DataFrame]) -> tuple[dict[str, int], pl.DataFrame]:
    """An independent re-implementation of the cleaning rules, in DIRTY_KINDS order.

    Returns the count per kind and the surviving reviews.
    """
    counts: dict[str, int] = {}
    products, customers = t["product"], t["customer"]
    counts["price_negative"] = products.filter(pl.col("price") < 0).height
    r = t["review"]
    for kind, bad in _ROW_RULES.items():
        counts[kind] = r.filter(bad).height
        r = r.filter(~bad)
    key = ["customer_id", "parent_asin", "asin", "text"]
    ranked = r.with_columns(
        latest=pl.col("updated_at") == pl.col("updated_at").max().over(key),
        n_latest=(pl.col("updated_at") == pl.col("updated_at").max().over(key)).sum().over(key),
    )
    assert ranked["n_latest"].max() in (None, 1), "a duplicate ties with its original"
    counts["duplicate_content"] = ranked.filter(~pl.col("latest")).height
    r = ranked.filter(pl.col("latest")).drop("latest", "n_latest")
    bad = ~pl.col("parent_asin").is_in(products["parent_asin"].implode())
    counts["orphan_product"] = r.filter(bad).height
    r = r.filter(~bad)
    bad = ~pl.col("customer_id").is_in(customers["customer_id"].implode())
    counts["orphan_customer"] = r.filter(bad).height
    r = r.filter(~bad)
    images = t["review_images"]
    counts["orphan_review"] = images.filter(
        ~pl.col("review_id").is_in(t["review"]["review_id"].implode())
    ).height
    return counts, r


def test_schema_of_every_table_in_every_chunk(chunks):
    assert len(chunks) == 4
    for chunk in chunks:
        assert set(chunk) == set(contract.TABLES)
        for name, frame in chunk.items():
            assert frame.schema == contract.TABLES[name].polars_schema, name


def test_keys_unique_across_chunks(tables):
    for name, t in contract.TABLES.items():
        frame = tables[name]
        assert frame.select(t.key).is_duplicated().sum() == 0, name
        assert frame.select(pl.col(k).null_count() for k in t.key).sum_horizontal().item() == 0


def test_same_seed_same_frames_other_seed_differs():
    a = list(generate(3_000, seed=1, chunk_reviews=1_000))
    b = list(generate(3_000, seed=1, chunk_reviews=1_000))
    c = list(generate(3_000, seed=2, chunk_reviews=1_000))
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        for name in contract.TABLES:
            assert_frame_equal(x[name], y[name])
    assert not a[0]["review"].equals(c[0]["review"])
    assert not a[0]["product"].equals(c[0]["product"])


def test_review_rows_do_not_depend_on_chunk_size():
    small = _collect(generate(2_500, seed=3, chunk_reviews=700))
    whole = _collect(generate(2_500, seed=3, chunk_reviews=10_000))
    for name in contract.TABLES:
        key = contract.TABLES[name].key
        assert_frame_equal(small[name].sort(key), whole[name].sort(key))


def test_plan_equals_generated_counts(tables):
    report = plan(N, seed=SEED)
    assert report.reviews == tables["review"].height == N
    assert report.products == tables["product"].height
    assert report.customers == tables["customer"].height
    assert report.buyers == tables["buyer"].height
    assert report.images == tables["review_images"].height
    assert set(report.dirty) == set(DIRTY_KINDS)
    as_dict = report.as_dict()
    assert as_dict["dirty"] == report.dirty and as_dict["reviews"] == N
    json.dumps(as_dict)


@pytest.mark.parametrize("n", [0, 1, 7, 999, 1_000, 5_000])
def test_plan_equals_generated_counts_chunked(n):
    report = plan(n, seed=11)
    counts = {name: 0 for name in contract.TABLES}
    n_chunks = 0
    for chunk in generate(n, seed=11, chunk_reviews=1_000):
        n_chunks += 1
        for name, frame in chunk.items():
            counts[name] += frame.height
    assert n_chunks == max(1, -(-n // 1_000))
    assert counts == {
        "product": report.products,
        "customer": report.customers,
        "buyer": report.buyers,
        "review": report.reviews,
        "review_images": report.images,
    }
    if n >= 1_000:
        assert all(v >= 1 for v in report.dirty.values()), report.dirty
        assert report.long_texts >= 1


def test_exact_dirty_counts_and_long_texts(tables):
    report = plan(N, seed=SEED)
    counts, survivors = _reject_reasons(tables)
    assert counts == report.dirty
    assert sum(report.dirty[k] for k in DIRTY_KINDS[:8]) == pytest.approx(0.01 * N, abs=8)
    cleaned = survivors.select(_clean_html(pl.col("text")).str.len_chars().alias("n"))
    assert cleaned.filter(pl.col("n") > 10_000).height == report.long_texts
    long_raw = survivors.filter(pl.col("text").str.len_chars() > 10_000)
    assert long_raw["text"].str.len_chars().is_between(12_000, 31_000).all()
    assert report.long_texts == round(0.001 * (N - sum(report.dirty[k] for k in DIRTY_KINDS[:8])))


def test_dirty_rows_have_a_single_defect(tables):
    # Each row rule, applied alone to every review, finds exactly its planted rows: so no row
    # carries two of these defects (otherwise the ordered cleaning would count it once only).
    report = plan(N, seed=SEED)
    r = tables["review"]
    for kind, bad in _ROW_RULES.items():
        assert r.filter(bad).height == report.dirty[kind], kind
    products, customers = tables["product"], tables["customer"]
    orphan_product = ~pl.col("parent_asin").is_in(products["parent_asin"].implode())
    orphan_customer = ~pl.col("customer_id").is_in(customers["customer_id"].implode())
    assert r.filter(orphan_product).height == report.dirty["orphan_product"]
    assert r.filter(orphan_customer).height == report.dirty["orphan_customer"]
    flagged = pl.any_horizontal([*_ROW_RULES.values(), orphan_product, orphan_customer])
    assert r.filter(flagged).height == sum(
        report.dirty[k] for k in DIRTY_KINDS[:8] if k != "duplicate_content"
    )
    r = tables["review"]
    rating_bad = r.filter(~pl.col("rating").cast(pl.Float64).is_in([1.0, 2, 3, 4, 5]))
    assert sorted(set(rating_bad["rating"].cast(pl.Float64).to_list())) == [0.0, 4.5, 7.0]
    future = r.filter(pl.col("created_at").dt.year() >= 2100)
    assert (future["updated_at"].dt.year() >= 2100).all()
    old = r.filter(pl.col("created_at").dt.year() < 1995)
    assert (old["created_at"].dt.year() >= 1980).all()
    empty = r.filter(pl.col("text").is_null() | (pl.col("text").str.strip_chars() == ""))
    assert set(empty["text"].to_list()) == {None, "", "   ", "\n\t "}
    # No dirty review has images or a buyer row (the older twin of a duplicate is rejected
    # too: it is a clean review and may have bought; its newer copy, the dirty row, has none).
    counts, survivors = _reject_reasons(tables)
    rejected = r.join(survivors.select("review_id"), on="review_id", how="anti")
    assert rejected.height == sum(counts[k] for k in DIRTY_KINDS[:8])
    assert tables["review_images"].join(rejected, on="review_id", how="semi").height == 0
    key = ["customer_id", "asin", "parent_asin"]
    twins = r.filter(pl.len().over([*key, "text"]) > 1)
    single = rejected.join(twins, on="review_id", how="anti")
    assert single.height == rejected.height - counts["duplicate_content"]
    bought = single.join(tables["buyer"].select(key).unique(), on=key, how="semi")
    assert bought.height <= 2  # only a clean review of the same customer and asin, by chance


def test_duplicates_are_copies_of_clean_reviews_without_images(tables):
    r = tables["review"]
    key = ["customer_id", "parent_asin", "asin", "text"]
    groups = r.filter(pl.col("text").str.len_chars() > 0).filter(pl.len().over(key) > 1)
    assert groups.height == 2 * plan(N, seed=SEED).dirty["duplicate_content"]
    assert groups.group_by(key).len()["len"].max() == 2
    spread = groups.group_by(key).agg(
        (pl.col("updated_at").max() - pl.col("updated_at").min()).alias("gap"),
        pl.col("review_id").n_unique().alias("ids"),
    )
    assert (spread["gap"] > timedelta(0)).all() and (spread["ids"] == 2).all()
    assert tables["review_images"].join(groups, on="review_id", how="semi").height == 0


def test_identifier_shapes(tables):
    r, p, c = tables["review"], tables["product"], tables["customer"]
    assert r["review_id"].str.contains(r"^R[0-9A-Z]{13}$").all()
    assert c["customer_id"].str.contains(r"^A[0-9A-Z]{13}$").all()
    assert p["parent_asin"].str.contains(r"^B0[0-9A-Z]{8}$").all()
    assert r["asin"].str.contains(r"^B0[0-9A-Z]{8}$").all()
    assert tables["buyer"]["buyer_id"].is_unique().all()


def test_clean_rows_are_consistent(tables):
    _, clean = _reject_reasons(tables)
    start = datetime(2000, 1, 1, tzinfo=AS_OF.tzinfo)
    assert clean["created_at"].min() >= start
    assert clean["created_at"].max() <= AS_OF - timedelta(days=1)
    assert (clean["updated_at"] >= clean["created_at"]).all()
    assert clean["updated_at"].max() <= AS_OF
    non_space = clean["text"].str.replace_all(r"\s", "").str.len_chars()
    assert non_space.min() >= 20
    joined = clean.join(
        tables["customer"].select("customer_id", pl.col("created_at").alias("joined")),
        on="customer_id",
    )
    assert joined.height == clean.height
    assert (joined["joined"] < joined["created_at"]).all()
    c = tables["customer"]
    assert (c["updated_at"] >= c["created_at"]).all()
    # Buyers: same customer and product as a clean review, bought before it was reviewed.
    b = tables["buyer"].join(
        clean.select("customer_id", "asin", "parent_asin", "created_at", "verified_purchase"),
        on=["customer_id", "asin", "parent_asin"],
    )
    assert b["buyer_id"].n_unique() == tables["buyer"].height
    assert (
        b.group_by("buyer_id")
        .agg((pl.col("purchased_at") < pl.col("created_at")).any())["purchased_at"]
        .all()
    )
    assert tables["buyer"]["quantity"].is_between(1, 3).all()
    assert (tables["buyer"]["unit_price"] > 0).all()


def test_products_and_json_columns(tables):
    p = tables["product"]
    valid = p.filter(pl.col("price") >= 0)
    assert valid["price"].cast(pl.Float64).is_between(1, 500).all()
    assert 1 <= p.height - valid.height <= max(1, round(0.01 * p.height))
    assert p["average_rating"].cast(pl.Float64).is_between(1, 5).all()
    for cats, feats, details in p.select("categories", "features", "details").iter_rows():
        assert all(isinstance(x, str) for x in json.loads(cats))
        assert all(isinstance(x, str) for x in json.loads(feats))
        assert isinstance(json.loads(details), dict)
    # No review references a price_negative product.
    negative = p.filter(pl.col("price") < 0).select("parent_asin")
    assert tables["review"].join(negative, on="parent_asin", how="semi").height == 0
    assert round(N / 8) == p.height and round(N / 4) == tables["customer"].height


def test_images_shape(tables):
    images = tables["review_images"]
    assert (images["attachment_type"] == "IMAGE").all()
    for col in ("small_image_url", "medium_image_url", "large_image_url"):
        assert images[col].str.contains(r"^https://m\.media-amazon\.com/images/I/\S+\.jpg$").all()
    per_review = images.group_by("review_id").agg(
        pl.len().alias("k"), pl.col("ordinal").sort().alias("ords")
    )
    assert per_review["k"].is_between(1, 3).all()
    for k, ords in per_review.select("k", "ords").iter_rows():
        assert ords == list(range(k))


def test_distributions(tables):
    r = tables["review"]
    _, clean = _reject_reasons(tables)
    share = clean["rating"].cast(pl.Float64).value_counts(normalize=True)
    by = dict(zip(share["rating"].to_list(), share["proportion"].to_list(), strict=True))
    assert by[5.0] > by[4.0] > by[3.0]
    assert by[1.0] > by[2.0] and by[5.0] > 0.5
    assert clean["helpful_vote"].median() == 0
    assert clean["helpful_vote"].max() >= 50
    lengths = clean["text"].str.len_chars()
    assert 120 <= lengths.median() <= 320
    assert lengths.max() > 10_000
    assert r["text"].str.contains("<br />", literal=True).mean() > 0.02
    for entity in ("&amp;", "&quot;", "&#39;"):
        assert r["text"].str.contains(entity, literal=True).any(), entity
    assert r["text"].str.contains(r"[\x{1F300}-\x{1FAFF}]").mean() > 0.01
    assert r["text"].str.contains("[’“”]").mean() > 0.01
    assert 0.17 <= (r["asin"] != r["parent_asin"]).mean() <= 0.23
    assert 0.82 <= r["verified_purchase"].mean() <= 0.88
    with_images = tables["review_images"]["review_id"].n_unique() / r.height
    assert 0.025 <= with_images <= 0.035
    verified = clean.filter(pl.col("verified_purchase"))
    bought = verified.join(
        tables["buyer"].select("customer_id", "asin", "parent_asin").unique(),
        on=["customer_id", "asin", "parent_asin"],
        how="semi",
    )
    assert bought.height / verified.height >= 0.85


def test_invalid_arguments():
    with pytest.raises(ValueError):
        plan(-1)
    with pytest.raises(ValueError):
        plan(100, dirty_fraction=0.9)
    with pytest.raises(ValueError):
        next(generate(100, chunk_reviews=0))
