"""Importer for the classic ``amazon_reviews_us`` tab-separated files.

The files have a header line naming 15 columns: ``marketplace customer_id review_id product_id
product_parent product_title product_category star_rating helpful_votes total_votes vine
verified_purchase review_headline review_body review_date``. They are not RFC 4180 CSV: fields
are separated by tabs and never quoted, so quote characters are literal text. Columns are
located by header name, so their order does not matter and extra columns are ignored.

Mapping: ``review_id``; ``customer_id`` (text); ``asin = product_id``; ``parent_asin =
product_parent`` (text); ``rating = star_rating``; ``title = review_headline``; ``text =
review_body``; ``helpful_vote = helpful_votes``; ``verified_purchase`` Y/N to boolean (empty to
null); ``created_at = updated_at = review_date`` at 00:00 UTC. Product stubs per
``product_parent`` with ``title = product_title`` and ``main_category = product_category``;
one customer per ``customer_id`` per chunk (``created_at = updated_at`` = earliest review date
in the chunk). No buyers, no images. ``marketplace``, ``total_votes`` and ``vine`` are not
mapped and not checked. Text is kept exactly as in the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from amazon_reviews.importers import (
    ImportFormatError,
    ImportReport,
    LineError,
    build_frame,
    conform,
    customers_from_reviews,
    decimal_text,
    empty_chunk,
    iter_lines,
)

COLUMNS: tuple[str, ...] = (
    "marketplace",
    "customer_id",
    "review_id",
    "product_id",
    "product_parent",
    "product_title",
    "product_category",
    "star_rating",
    "helpful_votes",
    "total_votes",
    "vine",
    "verified_purchase",
    "review_headline",
    "review_body",
    "review_date",
)

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_US_PER_DAY = 86_400_000_000
# ASCII digits only (`\d` alone also matches other scripts' digits, which int() accepts).
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?", re.ASCII)
# At most 18 digits: int() refuses very long digit strings with a ValueError of its own.
_INTEGER = re.compile(r"[+-]?\d{1,18}", re.ASCII)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_FLAGS = {"Y": True, "y": True, "N": False, "n": False, "": None}


def read(
    path: Path, *, chunk_rows: int = 50_000, report: ImportReport
) -> Iterator[dict[str, pl.DataFrame]]:
    """Stream an ``amazon_reviews_us`` TSV file (plain or gzip) as contract chunks.

    The header is checked before any row is read. Every chunk holds all contract tables
    (``buyer`` and ``review_images`` empty), each with exactly the contract schema and no
    repeated primary key; memory is bounded by `chunk_rows`.

    Args:
        path: The TSV file, plain or gzip.
        chunk_rows: Accepted input lines per chunk (before de-duplication).
        report: Updated with files, lines read, bad lines and emitted row counts.

    Yields:
        Dicts of contract table name to frame.

    Raises:
        ImportFormatError: The file cannot be opened, is empty, its header lacks a required
            column (all missing ones are named) or repeats one, or its gzip stream is corrupt
            or truncated.
        ValueError: `chunk_rows` is not positive.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    path = Path(path)
    lines = iter_lines(path, report)
    index = _read_header(path, next(lines, None))
    rows: dict[str, tuple[Any, ...]] = {}
    products: dict[str, tuple[str, str, str]] = {}
    pending = 0
    for lineno, raw in lines:
        if not raw:
            continue
        try:
            row, product = _row(raw, index)
        except LineError as exc:
            report.bad(path, lineno, str(exc))
            continue
        rows[row[0]] = row
        products[product[0]] = product
        pending += 1
        if pending >= chunk_rows:
            yield _emit(rows, products, report)
            rows, products, pending = {}, {}, 0
    if rows:
        yield _emit(rows, products, report)


def _read_header(path: Path, first: tuple[int, bytes] | None) -> tuple[int, ...]:
    if first is None:
        raise ImportFormatError(path, 1, "empty file: no header line")
    try:
        names = [name.strip() for name in first[1].decode("utf-8").split("\t")]
    except UnicodeDecodeError as exc:
        raise ImportFormatError(path, 1, f"header is not valid UTF-8: {exc}") from None
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ImportFormatError(
            path, 1, f"header is missing column(s): {', '.join(missing)} (header: {names})"
        )
    repeated = sorted({c for c in COLUMNS if names.count(c) > 1})
    if repeated:
        raise ImportFormatError(path, 1, f"header repeats column(s): {', '.join(repeated)}")
    # Position of every expected column, plus the total field count as the last entry.
    return (*(names.index(c) for c in COLUMNS), len(names))


def _required(name: str, value: str) -> str:
    if not value.strip():
        raise LineError(f"{name}: empty")
    return value


def _row(raw: bytes, index: tuple[int, ...]) -> tuple[tuple[Any, ...], tuple[str, str, str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(f"invalid UTF-8 at byte {exc.start}") from None
    if "\x00" in text:
        raise LineError("line contains NUL (not storable in PostgreSQL)")
    fields = text.split("\t")
    if len(fields) != index[-1]:
        raise LineError(f"expected {index[-1]} tab-separated fields, got {len(fields)}")
    (
        _marketplace,
        customer_id,
        rid,
        product_id,
        product_parent,
        product_title,
        product_category,
        star_rating,
        helpful_votes,
        _total_votes,
        _vine,
        verified,
        headline,
        body,
        review_date,
    ) = (fields[i] for i in index[:-1])
    rid = _required("review_id", rid)
    customer_id = _required("customer_id", customer_id)
    product_id = _required("product_id", product_id)
    product_parent = _required("product_parent", product_parent)

    if not _NUMBER.fullmatch(star_rating):
        raise LineError(f"star_rating: not a number: {star_rating[:40]!r}")
    try:
        rating = decimal_text(star_rating, 3, 1)
    except LineError as exc:
        raise LineError(f"star_rating: {exc}") from None

    if not _INTEGER.fullmatch(helpful_votes):
        if _NUMBER.fullmatch(helpful_votes) and "." not in helpful_votes:
            raise LineError(f"helpful_votes: {helpful_votes[:40]} out of range")
        raise LineError(f"helpful_votes: not an integer: {helpful_votes[:40]!r}")
    helpful = int(helpful_votes)
    if not _INT32_MIN <= helpful <= _INT32_MAX:
        raise LineError(f"helpful_votes: {helpful} out of range")

    try:
        flag = _FLAGS[verified]
    except KeyError:
        raise LineError(f"verified_purchase: expected Y or N, got {verified[:40]!r}") from None

    match = _DATE.fullmatch(review_date)
    if match is None:
        raise LineError(f"review_date: expected YYYY-MM-DD, got {review_date[:40]!r}")
    try:
        day = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError as exc:
        raise LineError(f"review_date: {exc}: {review_date!r}") from None
    ts_us = (day.toordinal() - _EPOCH_ORDINAL) * _US_PER_DAY

    row = (
        rid,
        customer_id,
        product_id,
        product_parent,
        rating,
        headline,
        body,
        helpful,
        flag,
        ts_us,
    )
    return row, (product_parent, product_title, product_category)


_REVIEW_COLS = (
    "review_id",
    "customer_id",
    "asin",
    "parent_asin",
    "rating",
    "title",
    "text",
    "helpful_vote",
    "verified_purchase",
    "created_at",
)


def _emit(
    rows: dict[str, tuple[Any, ...]],
    products: dict[str, tuple[str, str, str]],
    report: ImportReport,
) -> dict[str, pl.DataFrame]:
    columns = dict(zip(_REVIEW_COLS, zip(*rows.values(), strict=True), strict=True))
    columns["updated_at"] = columns["created_at"]
    review = build_frame("review", columns, len(rows))
    parent, title, category = zip(*products.values(), strict=True)
    chunk = empty_chunk()
    chunk["review"] = review
    chunk["customer"] = customers_from_reviews(review)
    chunk["product"] = conform(
        "product",
        pl.DataFrame(
            {"parent_asin": parent, "title": title, "main_category": category},
            schema={"parent_asin": pl.String, "title": pl.String, "main_category": pl.String},
        ),
    )
    report.count_chunk(chunk)
    return chunk
