"""Tests of the Amazon 2023 JSON-lines and amazon_reviews_us TSV importers (no database)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from amazon_reviews import contract
from amazon_reviews.importers import ImportFormatError, ImportReport, amazon2023, amazon_us_tsv

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
REVIEWS_2023 = REALDATA / "amazon2023_reviews_sample.jsonl"
META_2023 = REALDATA / "amazon2023_meta_sample.jsonl"
US_TSV = REALDATA / "amazon_reviews_us_sample.tsv"

TSV_HEADER = (
    "marketplace\tcustomer_id\treview_id\tproduct_id\tproduct_parent\tproduct_title\t"
    "product_category\tstar_rating\thelpful_votes\ttotal_votes\tvine\tverified_purchase\t"
    "review_headline\treview_body\treview_date"
)


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real data samples not present at {REALDATA}")
    return REALDATA


def collect(chunks: Iterator[dict[str, pl.DataFrame]]) -> tuple[dict[str, pl.DataFrame], int]:
    """Check every chunk against the contract and concatenate each table over chunks."""
    parts: dict[str, list[pl.DataFrame]] = {name: [] for name in contract.TABLES}
    n = 0
    for chunk in chunks:
        n += 1
        assert set(chunk) == set(contract.TABLES)
        for name, frame in chunk.items():
            table = contract.TABLES[name]
            assert frame.schema == table.polars_schema, name
            keys = frame.select(table.key)
            assert keys.n_unique() == frame.height, f"repeated key in a {name} chunk"
            assert keys.null_count().sum_horizontal().item() == 0
            parts[name].append(frame)
    out = {
        name: pl.concat(frames) if frames else contract.TABLES[name].polars_schema.to_frame()
        for name, frames in parts.items()
    }
    return out, n


def valid_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def expected_id(user_id: str, asin: str, ts: int) -> str:
    digest = hashlib.sha1(f"{user_id}|{asin}|{ts}".encode()).digest()
    return "R" + base64.b32encode(digest).decode()[:13]


def review_line(
    user: str = "U1",
    asin: str = "A1",
    parent: str = "P1",
    ts: int = 1_600_000_000_000,
    **extra: object,
) -> str:
    obj = {
        "rating": 5.0,
        "title": "t",
        "text": "body<br />more",
        "images": [],
        "asin": asin,
        "parent_asin": parent,
        "user_id": user,
        "timestamp": ts,
        "helpful_vote": 1,
        "verified_purchase": True,
    }
    obj.update(extra)
    return json.dumps(obj)


def image(n: int) -> dict[str, str]:
    return {
        "small_image_url": f"https://img/{n}_s.jpg",
        "medium_image_url": f"https://img/{n}_m.jpg",
        "large_image_url": f"https://img/{n}_l.jpg",
        "attachment_type": "IMAGE",
    }


def tsv_row(
    review_id: str = "R1",
    customer: str = "100",
    product: str = "B001",
    parent: str = "900",
    rating: str = "5",
    verified: str = "Y",
    date: str = "2015-08-31",
    headline: str = "h",
    body: str = "b",
) -> str:
    return "\t".join(
        [
            "US",
            customer,
            review_id,
            product,
            parent,
            f"title {parent}",
            "Toys",
            rating,
            "2",
            "3",
            "N",
            verified,
            headline,
            body,
            date,
        ]
    )


# --------------------------------------------------------------------------- real samples


def test_real_2023_review_count_equals_valid_lines(realdata: Path) -> None:
    report = ImportReport()
    out, _ = collect(amazon2023.read(REVIEWS_2023, report=report))
    lines = valid_json_lines(REVIEWS_2023)
    assert report.bad_lines == []
    assert out["review"].height == len(lines)
    assert report.rows["review"] == len(lines)
    assert report.lines_read == len(REVIEWS_2023.read_text("utf-8").splitlines())
    assert report.files == [str(REVIEWS_2023)]
    assert out["buyer"].height == 0
    # Text is kept exactly, HTML included; fields map one to one.
    by_id = {r["review_id"]: r for r in out["review"].to_dicts()}
    for obj in lines:
        row = by_id[expected_id(obj["user_id"], obj["asin"], obj["timestamp"])]
        assert row["customer_id"] == obj["user_id"]
        assert row["asin"] == obj["asin"]
        assert row["parent_asin"] == obj["parent_asin"]
        assert row["rating"] == Decimal(str(obj["rating"]))
        assert row["title"] == obj["title"]
        assert row["text"] == obj["text"]
        assert row["helpful_vote"] == obj["helpful_vote"]
        assert row["verified_purchase"] is obj["verified_purchase"]
        when = datetime.fromtimestamp(obj["timestamp"] / 1000, tz=UTC)
        assert row["created_at"] == when == row["updated_at"]
    customers = out["customer"]
    assert set(customers["customer_id"]) == {o["user_id"] for o in lines}
    assert customers["display_name"].null_count() == customers.height
    assert customers["country"].null_count() == customers.height


def test_real_2023_images_with_ordinals(realdata: Path) -> None:
    out, _ = collect(amazon2023.read(REVIEWS_2023, report=ImportReport()))
    lines = valid_json_lines(REVIEWS_2023)
    expected = []
    for obj in lines:
        rid = expected_id(obj["user_id"], obj["asin"], obj["timestamp"])
        for i, img in enumerate(obj["images"]):
            expected.append({"review_id": rid, "ordinal": i, **img})
    assert expected, "the sample is expected to contain at least one review with images"
    got = out["review_images"].sort("review_id", "ordinal").to_dicts()
    assert got == sorted(expected, key=lambda r: (r["review_id"], r["ordinal"]))


def test_real_2023_review_ids_stable_and_unique(realdata: Path) -> None:
    first, _ = collect(amazon2023.read(REVIEWS_2023, report=ImportReport()))
    second, _ = collect(amazon2023.read(REVIEWS_2023, chunk_rows=3, report=ImportReport()))
    ids = first["review"]["review_id"]
    assert ids.n_unique() == ids.len()
    assert ids.str.contains(r"^R[A-Z2-7]{13}$").all()
    assert sorted(ids) == sorted(second["review"]["review_id"])
    assert amazon2023.review_id("U", "A", 1) == expected_id("U", "A", 1)


def test_real_2023_products_from_meta_and_stubs(realdata: Path) -> None:
    report = ImportReport()
    out, _ = collect(amazon2023.read(REVIEWS_2023, META_2023, report=report))
    assert report.bad_lines == []
    assert report.files == [str(META_2023), str(REVIEWS_2023)]
    meta = {o["parent_asin"]: o for o in valid_json_lines(META_2023)}
    products = out["product"]
    assert products["parent_asin"].n_unique() == products.height
    full = products.filter(pl.col("parent_asin").is_in(list(meta)))
    assert full.height == len(meta)
    for row in full.to_dicts():
        obj = meta[row["parent_asin"]]
        assert row["title"] == obj["title"]
        assert row["main_category"] == obj["main_category"]
        assert row["store"] == obj["store"]
        price = obj["price"]
        assert row["price"] == (None if price is None else Decimal(str(price)))
        assert row["average_rating"] == Decimal(str(obj["average_rating"]))
        assert row["rating_number"] == obj["rating_number"]
        assert json.loads(row["categories"]) == obj["categories"]
        assert json.loads(row["features"]) == obj["features"]
        assert json.loads(row["details"]) == obj["details"]
        assert row["updated_at"] is None
    assert full.filter(pl.col("parent_asin") == "B0751M85FV")["price"].item() == Decimal("69.00")
    referenced = {o["parent_asin"] for o in valid_json_lines(REVIEWS_2023)}
    stubs = products.filter(~pl.col("parent_asin").is_in(list(meta)))
    assert set(stubs["parent_asin"]) == referenced - set(meta)
    assert stubs.drop("parent_asin").null_count().row(0) == (stubs.height,) * 10


def test_real_tsv_mapping(realdata: Path) -> None:
    report = ImportReport()
    out, _ = collect(amazon_us_tsv.read(US_TSV, report=report))
    lines = US_TSV.read_text("utf-8").splitlines()
    header = lines[0].split("\t")
    records = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    assert report.bad_lines == []
    assert report.lines_read == len(lines)
    review = out["review"]
    assert review.height == len(records)
    assert out["review_images"].height == 0 and out["buyer"].height == 0
    by_id = {r["review_id"]: r for r in review.to_dicts()}
    for rec in records:
        row = by_id[rec["review_id"]]
        assert row["customer_id"] == rec["customer_id"]
        assert row["asin"] == rec["product_id"]
        assert row["parent_asin"] == rec["product_parent"]
        assert row["rating"] == Decimal(rec["star_rating"])
        assert row["title"] == rec["review_headline"]
        assert row["text"] == rec["review_body"]
        assert row["helpful_vote"] == int(rec["helpful_votes"])
        assert row["verified_purchase"] is {"Y": True, "N": False}[rec["verified_purchase"]]
        day = datetime.strptime(rec["review_date"], "%Y-%m-%d").replace(tzinfo=UTC)
        assert row["created_at"] == day == row["updated_at"]
    flags = review["verified_purchase"]
    assert flags.sum() > 0 and (~flags).sum() > 0, "sample has both Y and N"
    products = out["product"]
    titles = {r["product_parent"]: r["product_title"] for r in records}
    assert dict(zip(products["parent_asin"], products["title"], strict=True)) == titles
    assert set(products["main_category"]) == {r["product_category"] for r in records}
    assert set(out["customer"]["customer_id"]) == {r["customer_id"] for r in records}


# --------------------------------------------------------------------------- own fixtures


def test_gzip_detected_by_magic_bytes(tmp_path: Path) -> None:
    lines = [review_line(user=f"U{i}", images=[image(i)] * (i % 3)) for i in range(5)]
    plain = tmp_path / "r.jsonl"
    plain.write_text("\n".join(lines) + "\n")
    packed = tmp_path / "r_compressed.jsonl"  # no .gz suffix on purpose
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, _ = collect(amazon2023.read(plain, report=ImportReport()))
    report = ImportReport()
    b, _ = collect(amazon2023.read(packed, report=report))
    assert report.lines_read == 5 and report.bad_lines == []
    for name in contract.TABLES:
        assert a[name].equals(b[name]), name
    assert b["review_images"].height == 0 + 1 + 2 + 0 + 1


def test_bad_json_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text(
        "\n".join(
            [
                review_line(user="U1"),  # 1 ok
                '{"rating": 5.0, "user_id": "U2"',  # 2 broken JSON
                review_line(user="U3", rating="abc"),  # 3 wrong type
                review_line(user="U4", title=["a", "list"]),  # 4 list for a string
                review_line(user="U5"),  # 5 ok
                "",  # 6 blank: skipped silently
                json.dumps({"asin": "A", "parent_asin": "P", "rating": 1, "timestamp": 1}),  # 7
                review_line(user="U8", images=["not an object"]),  # 8
                "[1, 2]",  # 9 not an object
                review_line(user="U10", rating=float("nan")),  # 10 NaN is not JSON
                review_line(user="U11"),  # 11 ok
            ]
        )
        + "\n"
    )
    report = ImportReport()
    out, _ = collect(amazon2023.read(path, report=report))
    assert [b.line for b in report.bad_lines] == [2, 3, 4, 7, 8, 9, 10]
    assert all(b.file == str(path) for b in report.bad_lines)
    reasons = {b.line: b.reason for b in report.bad_lines}
    assert "invalid JSON" in reasons[2]
    assert "rating" in reasons[3] and "string" in reasons[3]
    assert "title" in reasons[4] and "array" in reasons[4]
    assert "user_id" in reasons[7]
    assert "images[0]" in reasons[8]
    assert "object" in reasons[9]
    assert set(out["review"]["customer_id"]) == {"U1", "U5", "U11"}
    assert report.lines_read == 11
    assert report.rows["review"] == 3


def test_truncated_gzip_raises_clear_error(tmp_path: Path) -> None:
    lines = "".join(review_line(user=f"U{i}", text=f"text {i} " * 20) + "\n" for i in range(2000))
    data = gzip.compress(lines.encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportFormatError) as excinfo:
        collect(amazon2023.read(path, report=ImportReport()))
    message = str(excinfo.value)
    assert str(path) in message and "line" in message and "gzip" in message
    assert excinfo.value.file == str(path) and excinfo.value.line > 1


def test_corrupt_gzip_raises_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"\x1f\x8b" + b"this is not deflate data" * 10)
    with pytest.raises(ImportFormatError, match=r"bad\.tsv: line 1: unreadable gzip"):
        collect(amazon_us_tsv.read(path, report=ImportReport()))


def test_tsv_header_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "reviews.tsv"
    header = TSV_HEADER.replace("star_rating\t", "").replace("\treview_date", "")
    path.write_text(header + "\n" + tsv_row() + "\n")
    with pytest.raises(ImportFormatError) as excinfo:
        collect(amazon_us_tsv.read(path, report=ImportReport()))
    message = str(excinfo.value)
    assert "star_rating" in message and "review_date" in message
    assert str(path) in message and "line 1" in message
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(ImportFormatError, match="no header"):
        collect(amazon_us_tsv.read(empty, report=ImportReport()))


def test_tsv_bad_rows_and_literal_quotes(tmp_path: Path) -> None:
    path = tmp_path / "reviews.tsv"
    rows = [
        TSV_HEADER,  # 1
        tsv_row("R1", headline='"Quoted', body='He said "hi" \'there'),  # 2 ok, quotes literal
        tsv_row("R2") + "\textra",  # 3 wrong column count
        tsv_row("R3", rating="five"),  # 4 unparseable number
        tsv_row("R4", date="2015-02-30"),  # 5 impossible date
        tsv_row("R5", verified="maybe"),  # 6 bad flag
        tsv_row("R6", verified="N", rating="3"),  # 7 ok
        "US\t1\tR7",  # 8 short
    ]
    path.write_text("\r\n".join(rows) + "\r\n")
    report = ImportReport()
    out, _ = collect(amazon_us_tsv.read(path, report=report))
    assert [b.line for b in report.bad_lines] == [3, 4, 5, 6, 8]
    reasons = {b.line: b.reason for b in report.bad_lines}
    assert "16" in reasons[3] and "star_rating" in reasons[4] and "review_date" in reasons[5]
    assert "verified_purchase" in reasons[6]
    review = out["review"].sort("review_id")
    assert review["review_id"].to_list() == ["R1", "R6"]
    assert review["title"][0] == '"Quoted'
    assert review["text"][0] == 'He said "hi" \'there'
    assert review["verified_purchase"].to_list() == [True, False]
    assert review["rating"].to_list() == [Decimal("5.0"), Decimal("3.0")]


def test_chunking_gives_same_totals(tmp_path: Path) -> None:
    reviews = tmp_path / "r.jsonl"
    lines = [
        review_line(user=f"U{i % 4}", asin=f"A{i}", parent=f"P{i % 3}", images=[image(i)] * (i % 2))
        for i in range(7)
    ]
    reviews.write_text("\n".join(lines) + "\n")
    meta = tmp_path / "m.jsonl"
    meta.write_text(json.dumps({"parent_asin": "P0", "title": "meta", "price": "$3.50"}) + "\n")

    def totals(chunk_rows: int) -> tuple[dict[str, pl.DataFrame], ImportReport, int]:
        report = ImportReport()
        out, n = collect(amazon2023.read(reviews, meta, chunk_rows=chunk_rows, report=report))
        return out, report, n

    big, big_report, big_n = totals(50_000)
    small, small_report, small_n = totals(2)
    assert small_n > big_n
    for name in ("review", "review_images"):
        assert small[name].sort(small[name].columns).equals(big[name].sort(big[name].columns))
    assert small_report.rows["review"] == big_report.rows["review"] == 7
    assert small_report.rows["review_images"] == big_report.rows["review_images"] == 3
    assert set(small["customer"]["customer_id"]) == set(big["customer"]["customer_id"])
    assert set(small["product"]["parent_asin"]) == set(big["product"]["parent_asin"])
    # P0 came from the metadata: never stubbed, in any chunk.
    assert small["product"].filter(pl.col("parent_asin") == "P0")["title"].to_list() == ["meta"]

    tsv = tmp_path / "r.tsv"
    tsv.write_text(
        "\n".join([TSV_HEADER] + [tsv_row(f"R{i}", customer=str(i % 2)) for i in range(5)])
    )
    big_report, small_report = ImportReport(), ImportReport()
    big, _ = collect(amazon_us_tsv.read(tsv, report=big_report))
    small, n = collect(amazon_us_tsv.read(tsv, chunk_rows=2, report=small_report))
    assert n == 3
    assert small["review"].sort("review_id").equals(big["review"].sort("review_id"))
    assert small_report.rows["review"] == big_report.rows["review"] == 5


def test_duplicates_within_a_chunk_keep_the_later_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(
        "\n".join(
            [
                review_line(title="first", images=[image(1), image(2), image(3)]),
                review_line(user="U2", parent="P1"),
                review_line(title="second", images=[image(9)]),
            ]
        )
    )
    out, _ = collect(amazon2023.read(path, report=ImportReport()))
    review = out["review"].filter(pl.col("customer_id") == "U1")
    assert review["title"].to_list() == ["second"]
    images = out["review_images"]
    assert images["ordinal"].to_list() == [0]
    assert images["small_image_url"].to_list() == ["https://img/9_s.jpg"]
    assert out["product"]["parent_asin"].to_list() == ["P1"]
    # One customer per user, created at the earliest review time in the chunk.
    assert out["customer"].height == 2


def test_customer_created_at_is_earliest_review_in_chunk(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(
        "\n".join(
            [
                review_line(asin="A1", ts=1_700_000_000_000),
                review_line(asin="A2", ts=1_500_000_000_000),
            ]
        )
    )
    out, _ = collect(amazon2023.read(path, report=ImportReport()))
    row = out["customer"].row(0, named=True)
    assert row["created_at"] == datetime.fromtimestamp(1_500_000_000, tz=UTC) == row["updated_at"]


def test_meta_prices_and_bad_meta_lines(tmp_path: Path) -> None:
    meta = tmp_path / "meta.jsonl.gz"
    objs = [
        {"parent_asin": "P1", "price": "$1,299.99", "categories": ["a", "ü"], "details": {}},
        {"parent_asin": "P2", "price": "None"},
        {"parent_asin": "P3", "price": 12.5, "average_rating": 4.65, "rating_number": 3},
        {"parent_asin": "P4", "price": "from $5.00 to $9.00"},
        {"parent_asin": "P5", "categories": "not a list"},
        {"parent_asin": "P6", "price": ["list"]},
        {"title": "no parent"},
        {"parent_asin": "P8", "price": 12.345},
    ]
    meta.write_bytes(gzip.compress(("\n".join(json.dumps(o) for o in objs) + "\n").encode()))
    reviews = tmp_path / "r.jsonl"
    reviews.write_text(review_line(parent="P1") + "\n" + review_line(user="U2", parent="P5"))
    report = ImportReport()
    out, _ = collect(amazon2023.read(reviews, meta, report=report))
    assert [b.line for b in report.bad_lines] == [5, 6, 7]
    assert {b.file for b in report.bad_lines} == {str(meta)}
    products = {r["parent_asin"]: r for r in out["product"].to_dicts()}
    assert products["P1"]["price"] == Decimal("1299.99")
    assert json.loads(products["P1"]["categories"]) == ["a", "ü"]
    assert products["P1"]["details"] == "{}"
    assert products["P2"]["price"] is None
    assert products["P3"]["price"] == Decimal("12.50")
    assert products["P3"]["average_rating"] == Decimal("4.7")
    assert products["P3"]["rating_number"] == 3
    assert products["P4"]["price"] is None
    assert products["P8"]["price"] == Decimal("12.35")
    # P5's metadata line was bad, so the review referencing it gets a stub; P1 does not.
    assert products["P5"]["title"] is None
    assert report.rows["product"] == 5 + 1  # P1 P2 P3 P4 P8 from metadata, stub P5


def test_import_report_accumulates_over_reads(realdata: Path) -> None:
    report = ImportReport()
    collect(amazon2023.read(REVIEWS_2023, report=report))
    collect(amazon_us_tsv.read(US_TSV, report=report))
    assert report.files == [str(REVIEWS_2023), str(US_TSV)]
    tsv_rows = len(US_TSV.read_text("utf-8").splitlines()) - 1
    assert report.rows["review"] == len(valid_json_lines(REVIEWS_2023)) + tsv_rows


def test_chunk_rows_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        next(amazon_us_tsv.read(tmp_path / "x.tsv", chunk_rows=0, report=ImportReport()))
