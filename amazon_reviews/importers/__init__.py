"""Importers that turn public Amazon review dumps into chunks of contract-shaped frames.

Two formats are supported, each in its own module:

* `amazon_reviews.importers.amazon2023`: Amazon Reviews 2023 (McAuley lab) JSON lines, review
  file plus an optional item-metadata file.
* `amazon_reviews.importers.amazon_us_tsv`: the classic ``amazon_reviews_us`` tab-separated
  files (15 columns, no quoting).

Both expose ``read(..., *, chunk_rows, report)``, a generator of chunks. A chunk is a dict that
maps every contract table name to a `polars.DataFrame` whose schema is exactly
``contract.TABLES[name].polars_schema`` (tables the format does not produce are present and
empty). Within one chunk a table's primary key never repeats; across chunks it may, and the
later row is meant to win. Files may be plain or gzip (detected by magic bytes). Lines that
cannot be mapped are skipped and recorded in `ImportReport.bad_lines`; problems that make the
whole file unreadable raise `ImportFormatError`.

This package is pure Python and Polars: no database, no Dagster.
"""

from __future__ import annotations

import functools
import gzip
import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

import polars as pl

from amazon_reviews import contract

__all__ = [
    "BadLine",
    "ImportFormatError",
    "ImportReport",
    "LineError",
    "build_frame",
    "conform",
    "customers_from_reviews",
    "decimal_text",
    "empty_chunk",
    "iter_lines",
    "not_in_sorted",
]

GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_READ_BUFFER = 1 << 20


@dataclass
class BadLine:
    """One skipped input line.

    Attributes:
        file: The file the line came from, as given to the importer.
        line: 1-based physical line number in the (decompressed) file.
        reason: A short, human-readable reason.
    """

    file: str
    line: int
    reason: str


@dataclass
class ImportReport:
    """What an import read, skipped and emitted. Importers add to it; they never reset it.

    Attributes:
        files: Every file opened, in order.
        lines_read: Physical lines read over all files (headers and blank lines included).
        bad_lines: Lines that were skipped, with their reasons.
        rows: Rows emitted per table name, summed over chunks (after in-chunk de-duplication).
    """

    files: list[str] = field(default_factory=list)
    lines_read: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def bad(self, file: str | Path, line: int, reason: str) -> None:
        """Record a skipped line."""
        self.bad_lines.append(BadLine(str(file), line, reason))

    def count_chunk(self, chunk: Mapping[str, pl.DataFrame]) -> None:
        """Add the row counts of an emitted chunk to `rows`."""
        for name, frame in chunk.items():
            self.rows[name] = self.rows.get(name, 0) + frame.height


class ImportFormatError(ValueError):
    """A file-level problem (unreadable gzip, wrong header, ...). The message names file and line.

    Attributes:
        file: The offending file.
        line: The 1-based physical line at which the problem was found.
    """

    def __init__(self, file: str | Path, line: int, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.detail = message
        super().__init__(f"{file}: line {line}: {message}")

    def __reduce__(self) -> tuple[type[ImportFormatError], tuple[str, int, str]]:
        return (type(self), (self.file, self.line, self.detail))


def iter_lines(path: str | Path, report: ImportReport) -> Iterator[tuple[int, bytes]]:
    """Stream the physical lines of a plain or gzip file.

    Gzip is detected by its magic bytes, whatever the suffix. Lines are yielded as raw bytes
    without the trailing ``\\n`` / ``\\r\\n`` (and without a UTF-8 byte-order mark on line 1).
    The file is registered in ``report.files`` and every line counts in ``report.lines_read``.

    Args:
        path: The file to read.
        report: The report to update.

    Yields:
        ``(line_number, raw_line)`` with 1-based line numbers.

    Raises:
        ImportFormatError: The file cannot be opened, or its gzip stream is corrupt or
            truncated (the message names the line at which reading failed).
    """
    path = Path(path)
    report.files.append(str(path))
    lineno = 0
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
    except OSError as exc:
        raise ImportFormatError(path, 0, f"cannot open file: {exc}") from exc
    compressed = magic == GZIP_MAGIC
    try:
        handle = gzip.open(path, "rb") if compressed else path.open("rb", buffering=_READ_BUFFER)
        with handle:
            for raw in handle:
                lineno += 1
                report.lines_read += 1
                if raw.endswith(b"\n"):
                    raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
                if lineno == 1 and raw.startswith(_UTF8_BOM):
                    raw = raw[len(_UTF8_BOM) :]
                yield lineno, raw
    except EOFError as exc:
        raise ImportFormatError(
            path, lineno + 1, f"truncated gzip stream (file ends before the gzip trailer): {exc}"
        ) from exc
    except (OSError, zlib.error) as exc:
        what = "unreadable gzip stream" if compressed else "read error"
        raise ImportFormatError(path, lineno + 1, f"{what}: {exc}") from exc


def empty_chunk() -> dict[str, pl.DataFrame]:
    """A chunk with an empty, correctly typed frame for every contract table."""
    return {name: t.polars_schema.to_frame() for name, t in contract.TABLES.items()}


def build_frame(table: str, columns: Mapping[str, Sequence[object]], height: int) -> pl.DataFrame:
    """Build a frame with exactly the contract schema of `table` from Python column lists.

    Columns missing from `columns` are all null. Decimal columns are given as exact decimal
    strings (e.g. ``"4.5"``) and cast; timestamp columns as integer microseconds since the Unix
    epoch (UTC); JSON columns as JSON text.

    Args:
        table: The contract table name.
        columns: Column name -> list of values, each list of length `height`.
        height: The number of rows.

    Returns:
        The frame, columns in contract order with contract dtypes.
    """
    series = []
    for col in contract.table(table).columns:
        values = columns.get(col.name)
        if values is None:
            series.append(pl.Series(col.name, [None] * height, dtype=col.dtype))
            continue
        dtype = col.dtype
        if isinstance(dtype, pl.Decimal):
            s = pl.Series(col.name, values, dtype=pl.String).cast(dtype)
        elif isinstance(dtype, pl.Datetime):
            s = pl.Series(col.name, values, dtype=pl.Int64).cast(dtype)
        else:
            s = pl.Series(col.name, values, dtype=dtype)
        series.append(s)
    return pl.DataFrame(series)


class LineError(ValueError):
    """Raised by per-line mapping code; the line is skipped and its message becomes the reason."""


@functools.lru_cache(maxsize=8192)
def _decimal_text_cached(value: int | float | str, precision: int, scale: int) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineError(f"not a finite number: {value!r}")
        dec = Decimal(repr(value))
    else:
        try:
            dec = Decimal(value)
        except InvalidOperation:
            raise LineError(f"not a number: {value!r}") from None
        if not dec.is_finite():
            raise LineError(f"not a finite number: {value!r}")
    limit = Decimal(10) ** (precision - scale)
    # Checked before rounding too: quantizing a huge value (1e30) overflows the decimal
    # context and raises InvalidOperation instead of a LineError.
    if abs(dec) >= limit:
        raise LineError(f"{value!r} out of range for numeric({precision},{scale})")
    dec = dec.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    if abs(dec) >= limit:
        raise LineError(f"{value!r} out of range for numeric({precision},{scale})")
    return str(dec)


def decimal_text(value: int | float | str, precision: int, scale: int) -> str:
    """Render a number as exact decimal text for a ``numeric(precision, scale)`` column.

    Floats are taken at their shortest ``repr`` (so ``4.65`` is 4.65, not its binary
    neighbour) and rounded half away from zero to `scale` digits, as PostgreSQL rounds a
    numeric literal.

    Args:
        value: An int, a float, or a plain decimal string such as ``"12.99"``.
        precision: Total significant digits of the target column.
        scale: Digits after the decimal point.

    Returns:
        The rounded value as text, e.g. ``"4.7"``.

    Raises:
        LineError: The value is not a finite number or does not fit the column.
    """
    return _decimal_text_cached(value, precision, scale)


def conform(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Select and cast `frame` to the contract schema of `table`; absent columns become null.

    Args:
        table: The contract table name.
        frame: A frame holding some of the table's columns.

    Returns:
        A frame with exactly the contract columns, order and dtypes.
    """
    present = set(frame.columns)
    return frame.select(
        [
            (pl.col(c.name) if c.name in present else pl.lit(None)).cast(c.dtype).alias(c.name)
            for c in contract.table(table).columns
        ]
    )


def customers_from_reviews(reviews: pl.DataFrame) -> pl.DataFrame:
    """One customer row per ``customer_id`` of a review frame.

    ``created_at`` and ``updated_at`` are both the earliest review ``created_at`` of that
    customer in the frame; ``display_name`` and ``country`` are null.

    Args:
        reviews: A frame with the contract ``review`` schema.

    Returns:
        A frame with the contract ``customer`` schema, unique on ``customer_id``.
    """
    first = reviews.group_by("customer_id", maintain_order=True).agg(pl.col("created_at").min())
    return conform("customer", first.with_columns(pl.col("created_at").alias("updated_at")))


def not_in_sorted(candidates: pl.Series, keys: pl.Series | None) -> pl.Series:
    """Boolean mask: which `candidates` are absent from `keys` (a sorted, unique series).

    Uses binary search, so a large key set (millions of product ids) is kept as one compact
    Arrow string column rather than a Python set.

    Args:
        candidates: Values to look up.
        keys: Sorted unique values, or None for an empty set.

    Returns:
        A boolean series aligned with `candidates`; true where the value is not a key.
    """
    if keys is None or keys.len() == 0 or candidates.len() == 0:
        return pl.Series(candidates.name, [True] * candidates.len(), dtype=pl.Boolean)
    idx = keys.search_sorted(candidates, side="left")
    found = keys.gather(idx.clip(upper_bound=keys.len() - 1)) == candidates
    return ~found.fill_null(False)
