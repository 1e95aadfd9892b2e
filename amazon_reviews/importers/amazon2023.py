"""Importer for Amazon Reviews 2023 (McAuley lab) JSON lines.

Review lines carry ``rating, title, text, images[], asin, parent_asin, user_id, timestamp``
(epoch milliseconds), ``helpful_vote`` and ``verified_purchase``. Item-metadata lines carry
``parent_asin, title, main_category, store, price, average_rating, rating_number, categories,
features, details`` and more (ignored).

Review ids: the dump has none, so one is derived, stable across reads and machines::

    "R" + base32(sha1(f"{user_id}|{asin}|{timestamp}".encode("utf-8")))[:13]

where ``timestamp`` is the integer epoch milliseconds written in decimal and base32 is the
RFC 4648 upper-case alphabet (``A-Z2-7``), giving 14 characters and 65 bits of hash. Two lines by
the same user on the same asin at the same millisecond share an id; the later one wins.

Mapping: ``customer_id = user_id``; ``created_at = updated_at = timestamp``; one customer per
user per chunk (``created_at = updated_at`` = that user's earliest review time in the chunk,
``display_name`` and ``country`` null); ``review_images`` from ``images[]`` with ``ordinal`` the
0-based list index. Products come from the metadata file when given (``updated_at`` null) and
otherwise as stubs (``parent_asin`` only) for every ``parent_asin`` a review references that the
metadata did not provide. No ``buyer`` rows: the format has no purchases. Text is kept exactly
as in the file.

Required review fields: ``user_id``, ``asin``, ``parent_asin`` (non-empty strings), ``rating``
(number) and ``timestamp`` (integer). The others may be missing or null, but a present value of
the wrong JSON type makes the line bad. Required metadata field: ``parent_asin``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from amazon_reviews.importers import (
    ImportReport,
    LineError,
    build_frame,
    conform,
    customers_from_reviews,
    decimal_text,
    empty_chunk,
    iter_lines,
    not_in_sorted,
)

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# 0001-01-01 .. 9999-12-31T23:59:59.999 in epoch milliseconds.
_MIN_MS, _MAX_MS = -62_135_596_800_000, 253_402_300_799_999
_IMAGE_KEYS = ("small_image_url", "medium_image_url", "large_image_url", "attachment_type")
# Escapes that decode to strings PostgreSQL cannot store (NUL, lone UTF-16 surrogates).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_B32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648
_B32_PAIRS = tuple(a + b for a in _B32_ALPHABET for b in _B32_ALPHABET)
_PRICE = re.compile(r"\s*\$?\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)\s*")


def review_id(user_id: str, asin: str, timestamp_ms: int) -> str:
    """The derived, stable review id of an Amazon 2023 review (see the module docstring).

    Args:
        user_id: The reviewer's ``user_id``.
        asin: The reviewed ``asin``.
        timestamp_ms: The review ``timestamp`` in epoch milliseconds.

    Returns:
        ``"R"`` followed by 13 upper-case base32 characters.
    """
    digest = hashlib.sha1(f"{user_id}|{asin}|{timestamp_ms}".encode()).digest()
    # Same as base64.b32encode(digest)[:13], which is pure Python and dominated the profile:
    # 13 base32 digits are the top 65 bits, taken from the first 10 bytes (80 bits).
    n = int.from_bytes(digest[:10], "big")
    pair = _B32_PAIRS
    return (
        "R"
        + pair[n >> 70]
        + pair[(n >> 60) & 1023]
        + pair[(n >> 50) & 1023]
        + pair[(n >> 40) & 1023]
        + pair[(n >> 30) & 1023]
        + pair[(n >> 20) & 1023]
        + _B32_ALPHABET[(n >> 15) & 31]
    )


def read(
    reviews: Path,
    meta: Path | None = None,
    *,
    chunk_rows: int = 50_000,
    report: ImportReport,
) -> Iterator[dict[str, pl.DataFrame]]:
    """Stream an Amazon 2023 review file (and optional metadata file) as contract chunks.

    The metadata file, when given, is read first and yields product-only chunks; the review
    file then yields chunks of reviews, images, customers and product stubs for parent asins
    the metadata did not provide. Every chunk holds all contract tables (absent ones empty),
    each with exactly the contract schema and no repeated primary key. Memory is bounded by
    `chunk_rows` plus the sorted set of metadata parent asins.

    Args:
        reviews: The review JSON-lines file, plain or gzip.
        meta: The item-metadata JSON-lines file, plain or gzip, or None.
        chunk_rows: Accepted input lines per chunk (before de-duplication).
        report: Updated with files, lines read, bad lines and emitted row counts.

    Yields:
        Dicts of contract table name to frame.

    Raises:
        ImportFormatError: A file cannot be opened or its gzip stream is corrupt or truncated.
        ValueError: `chunk_rows` is not positive.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    meta_keys: pl.Series | None = None
    if meta is not None:
        seen: list[pl.Series] = []
        for chunk in _read_meta(Path(meta), chunk_rows, report):
            seen.append(chunk["product"].get_column("parent_asin"))
            report.count_chunk(chunk)
            yield chunk
        if seen:
            meta_keys = pl.concat(seen).unique().sort()
        del seen
    for chunk in _read_reviews(Path(reviews), chunk_rows, report, meta_keys):
        report.count_chunk(chunk)
        yield chunk


# --------------------------------------------------------------------------- line parsing


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


# NaN/Infinity literals are rejected here; overflowing numbers such as 1e400 parse to inf and
# are rejected where used (decimal_text for numbers, allow_nan=False for JSON text columns).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _check_strings(value: object) -> None:
    # Iterative: the decoder accepts nesting deeper than Python's recursion limit allows here.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise LineError("string contains NUL (not storable in PostgreSQL)")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise LineError("string contains an unpaired UTF-16 surrogate") from None
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())


def _parse_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise LineError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise LineError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object, got {_json_type(obj)}")
    if _SUSPECT_ESCAPE.search(text):
        _check_strings(obj)
    return obj


def _missing(obj: dict[str, Any], key: str) -> LineError:
    if key in obj:
        return LineError(f"required field {key!r} is null")
    return LineError(f"missing required field {key!r}")


def _req_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        raise _missing(obj, key)
    if type(value) is not str:
        raise LineError(f"{key}: expected string, got {_json_type(value)}")
    if not value:
        raise LineError(f"{key}: empty string")
    return value


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    raise LineError(f"{key}: expected string, got {_json_type(value)}")


def _as_int(key: str, value: object, lo: int, hi: int) -> int:
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise LineError(f"{key}: expected integer, got {_json_type(value)}")
    if not lo <= value <= hi:
        raise LineError(f"{key}: {value} out of range")
    return value


def _opt_int32(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    return _as_int(key, value, _INT32_MIN, _INT32_MAX)


def _opt_bool(obj: dict[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is None or type(value) is bool:
        return value
    raise LineError(f"{key}: expected boolean, got {_json_type(value)}")


def _decimal(key: str, value: object, precision: int, scale: int) -> str:
    if type(value) is not int and type(value) is not float:
        raise LineError(f"{key}: expected number, got {_json_type(value)}")
    try:
        return decimal_text(value, precision, scale)
    except LineError as exc:
        raise LineError(f"{key}: {exc}") from None


def _opt_json(obj: dict[str, Any], key: str, kind: type) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise LineError(f"{key}: expected {_json_type(kind())}, got {_json_type(value)}")
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise LineError(f"{key}: number out of range for JSON") from None


def _price(obj: dict[str, Any]) -> str | None:
    """Price as numeric(10,2) text, or None when absent or not a plain price ("None", ranges)."""
    value = obj.get("price")
    if value is None:
        return None
    if type(value) is str:
        match = _PRICE.fullmatch(value)
        if match is None:
            return None
        value = match.group(1).replace(",", "")
    elif type(value) is not int and type(value) is not float:
        raise LineError(f"price: expected number or string, got {_json_type(value)}")
    try:
        return decimal_text(value, 10, 2)
    except LineError:
        return None


# --------------------------------------------------------------------------- reviews


def _review_row(obj: dict[str, Any]) -> tuple[str, tuple[Any, ...], list[tuple[Any, ...]]]:
    user_id = _req_str(obj, "user_id")
    asin = _req_str(obj, "asin")
    parent_asin = _req_str(obj, "parent_asin")
    rating = obj.get("rating")
    if rating is None:
        raise _missing(obj, "rating")
    rating_text = _decimal("rating", rating, 3, 1)
    ts = obj.get("timestamp")
    if ts is None:
        raise _missing(obj, "timestamp")
    ts = _as_int("timestamp", ts, _MIN_MS, _MAX_MS)
    title = _opt_str(obj, "title")
    text = _opt_str(obj, "text")
    helpful = _opt_int32(obj, "helpful_vote")
    verified = _opt_bool(obj, "verified_purchase")
    images = obj.get("images")
    image_rows: list[tuple[Any, ...]] = []
    if images is not None:
        if not isinstance(images, list):
            raise LineError(f"images: expected array, got {_json_type(images)}")
        for i, image in enumerate(images):
            if not isinstance(image, dict):
                raise LineError(f"images[{i}]: expected object, got {_json_type(image)}")
            values = []
            for key in _IMAGE_KEYS:
                value = image.get(key)
                if value is not None and type(value) is not str:
                    raise LineError(f"images[{i}].{key}: expected string, got {_json_type(value)}")
                values.append(value)
            image_rows.append((i, *values))
    ts_us = ts * 1000
    rid = review_id(user_id, asin, ts)
    row = (rid, user_id, asin, parent_asin, rating_text, title, text, helpful, verified, ts_us)
    return rid, row, image_rows


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
_IMAGE_COLS = ("review_id", "ordinal", *_IMAGE_KEYS)


def _review_chunk(
    rows: dict[str, tuple[Any, ...]],
    images: dict[str, list[tuple[Any, ...]]],
    meta_keys: pl.Series | None,
) -> dict[str, pl.DataFrame]:
    columns = dict(zip(_REVIEW_COLS, zip(*rows.values(), strict=True), strict=True))
    columns["updated_at"] = columns["created_at"]
    review = build_frame("review", columns, len(rows))
    chunk = empty_chunk()
    chunk["review"] = review
    image_rows = [(rid, *img) for rid, imgs in images.items() for img in imgs]
    if image_rows:
        image_cols = dict(zip(_IMAGE_COLS, zip(*image_rows, strict=True), strict=True))
        chunk["review_images"] = build_frame("review_images", image_cols, len(image_rows))
    chunk["customer"] = customers_from_reviews(review)
    parents = review.get_column("parent_asin").unique(maintain_order=True)
    stubs = parents.filter(not_in_sorted(parents, meta_keys))
    chunk["product"] = conform("product", stubs.to_frame())
    return chunk


def _read_reviews(
    path: Path, chunk_rows: int, report: ImportReport, meta_keys: pl.Series | None
) -> Iterator[dict[str, pl.DataFrame]]:
    rows: dict[str, tuple[Any, ...]] = {}
    images: dict[str, list[tuple[Any, ...]]] = {}
    pending = 0
    for lineno, raw in iter_lines(path, report):
        if not raw.strip():
            continue
        try:
            rid, row, image_rows = _review_row(_parse_object(raw))
        except LineError as exc:
            report.bad(path, lineno, str(exc))
            continue
        rows[rid] = row
        if image_rows:
            images[rid] = image_rows
        else:
            images.pop(rid, None)
        pending += 1
        if pending >= chunk_rows:
            yield _review_chunk(rows, images, meta_keys)
            rows, images, pending = {}, {}, 0
    if rows:
        yield _review_chunk(rows, images, meta_keys)


# --------------------------------------------------------------------------- metadata


def _meta_row(obj: dict[str, Any]) -> tuple[Any, ...]:
    return (
        _req_str(obj, "parent_asin"),
        _opt_str(obj, "title"),
        _opt_str(obj, "main_category"),
        _opt_str(obj, "store"),
        _price(obj),
        None
        if obj.get("average_rating") is None
        else _decimal("average_rating", obj["average_rating"], 2, 1),
        _opt_int32(obj, "rating_number"),
        _opt_json(obj, "categories", list),
        _opt_json(obj, "features", list),
        _opt_json(obj, "details", dict),
    )


_META_COLS = (
    "parent_asin",
    "title",
    "main_category",
    "store",
    "price",
    "average_rating",
    "rating_number",
    "categories",
    "features",
    "details",
)


def _meta_chunk(rows: dict[str, tuple[Any, ...]]) -> dict[str, pl.DataFrame]:
    columns = dict(zip(_META_COLS, zip(*rows.values(), strict=True), strict=True))
    chunk = empty_chunk()
    chunk["product"] = build_frame("product", columns, len(rows))
    return chunk


def _read_meta(
    path: Path, chunk_rows: int, report: ImportReport
) -> Iterator[dict[str, pl.DataFrame]]:
    rows: dict[str, tuple[Any, ...]] = {}
    pending = 0
    for lineno, raw in iter_lines(path, report):
        if not raw.strip():
            continue
        try:
            row = _meta_row(_parse_object(raw))
        except LineError as exc:
            report.bad(path, lineno, str(exc))
            continue
        rows[row[0]] = row
        pending += 1
        if pending >= chunk_rows:
            yield _meta_chunk(rows)
            rows, pending = {}, 0
    if rows:
        yield _meta_chunk(rows)
