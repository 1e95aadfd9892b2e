"""`init-db`: read contract CSVs, check headers, validate every value, write rejects, COPY the rest.

A CSV is read as text, every column is parsed to its contract type in vectorised Polars, and
each row whose value does not parse, whose key is null or repeated, is written to a rejects file
with its file, physical line, column and reason. Physical lines are exact even when quoted
fields hold newlines: a record's first line is 2 plus the newlines of every record before it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from amazon_reviews import contract

REJECT_SCHEMA = {
    "file": pl.String,
    "line": pl.Int64,
    "column": pl.String,
    "reason": pl.String,
    "value": pl.String,
}


class CsvHeaderError(ValueError):
    """A CSV header does not match the contract; the message names the file and the columns."""


@dataclass
class TableFile:
    table: contract.Table
    path: Path


@dataclass
class ValidatedTable:
    table: contract.Table
    path: Path
    valid: pl.DataFrame
    rejects: pl.DataFrame
    rows_read: int

    @property
    def rejected(self) -> int:
        """Rejected rows (a row with several bad cells has several reject lines)."""
        return self.rejects.select(pl.col("line").n_unique()).item() if self.rejects.height else 0


@dataclass
class CsvPlan:
    files: list[TableFile] = field(default_factory=list)


def find_files(csv_dir: Path) -> CsvPlan:
    """Map `<table>.csv` (or `.csv.gz`) files in `csv_dir` to contract tables.

    Raises:
        FileNotFoundError: when the folder is missing or holds no contract CSV.
        CsvHeaderError: when a header lacks contract columns or has unknown ones.
    """
    if not csv_dir.is_dir():
        raise FileNotFoundError(f"CSV folder {csv_dir} does not exist")
    plan = CsvPlan()
    for t in contract.TABLES.values():
        for suffix in (".csv", ".csv.gz"):
            p = csv_dir / f"{t.name}{suffix}"
            if p.exists():
                plan.files.append(TableFile(t, p))
                break
    if not plan.files:
        expected = ", ".join(f"{n}.csv" for n in contract.TABLES)
        raise FileNotFoundError(f"no contract CSV in {csv_dir}; expected any of: {expected}")
    for tf in plan.files:
        check_header(tf.path, tf.table)
    return plan


def _open_text(path: Path) -> io.TextIOBase:
    raw = path.read_bytes()[:2] if path.stat().st_size >= 2 else b""
    if raw == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def check_header(path: Path, table: contract.Table) -> list[str]:
    """Read and check the header line; return the columns in file order."""
    try:
        with _open_text(path) as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError as exc:
        raise CsvHeaderError(f"{path}: line 1: header is not valid UTF-8 ({exc.reason})") from None
    if not header:
        raise CsvHeaderError(
            f"{path}: line 1: empty file, expected a header with columns "
            f"{', '.join(table.column_names)}"
        )
    cols = [h.strip() for h in header]
    missing = [c for c in table.column_names if c not in cols]
    unknown = [c for c in cols if c not in table.column_names]
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)}")
    if dupes:
        problems.append(f"repeated column(s) {', '.join(dupes)}")
    if problems:
        raise CsvHeaderError(
            f"{path}: line 1 (header) for table {table.name}: " + "; ".join(problems)
        )
    return cols


_TRUE = ["t", "true", "y", "yes", "1"]
_FALSE = ["f", "false", "n", "no", "0"]
_TS_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%#z",
    "%Y-%m-%dT%H:%M:%S%#z",
)
_NAIVE_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
)


def _parse(col: contract.Column, raw: pl.Expr) -> pl.Expr:
    """The vectorised parse of one text column to its contract type (null when invalid)."""
    s = raw.str.strip_chars()
    kind = col.kind
    if kind == "text":
        return raw
    if kind == "int":
        return s.cast(pl.Int64, strict=False).cast(col.dtype, strict=False)
    if kind == "decimal":
        return s.cast(col.dtype, strict=False)
    if kind == "bool":
        low = s.str.to_lowercase()
        return (
            pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False).otherwise(None)
        )
    if kind == "timestamp":
        aware = [
            s.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC") for f in _TS_FORMATS
        ]
        naive = [
            s.str.to_datetime(f, strict=False, time_unit="us").dt.replace_time_zone("UTC")
            for f in _NAIVE_FORMATS
        ]
        day = (
            s.str.to_date("%Y-%m-%d", strict=False)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
        )
        return pl.coalesce([*aware, *naive, day])
    if kind == "json":
        return raw
    raise AssertionError(kind)


def _json_invalid(values: pl.Series) -> pl.Series:
    out = []
    for v in values:
        if v is None:
            out.append(False)
            continue
        try:
            json.loads(v)
            out.append(False)
        except ValueError:
            out.append(True)
    return pl.Series(out, dtype=pl.Boolean)


def read_and_validate(tf: TableFile) -> ValidatedTable:
    """Read one CSV as text and split it into typed valid rows and per-cell rejects.

    Raises:
        CsvHeaderError: the header does not match the contract.
        ValueError: the file cannot be parsed as CSV at all (message names the file).
    """
    t = tf.table
    check_header(tf.path, t)
    try:
        raw = pl.read_csv(
            tf.path,
            infer_schema=False,
            encoding="utf8",
            quote_char='"',
        )
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise ValueError(f"{tf.path}: not a readable CSV: {exc}") from None
    raw = raw.select(t.column_names)
    n = raw.height
    # Physical line of each record: header is line 1; a record spans 1 + its inner newlines.
    inner = pl.sum_horizontal(
        [pl.col(c).str.count_matches("\n").fill_null(0) for c in t.column_names]
    )
    lines = raw.select(
        (pl.lit(2, pl.Int64) + (inner + 1).cum_sum().shift(1, fill_value=0)).alias("_line")
    ).to_series()
    parsed = raw.select([_parse(c, pl.col(c.name)).alias(c.name) for c in t.columns])

    problems: list[pl.DataFrame] = []
    bad = pl.Series([False] * n, dtype=pl.Boolean)
    for c in t.columns:
        if c.kind in ("text",):
            continue
        if c.kind == "json":
            invalid = _json_invalid(raw[c.name])
            reason = f"not valid JSON for {c.pg_type}"
        else:
            invalid = (
                raw[c.name].is_not_null()
                & (raw[c.name].str.strip_chars() != "")
                & parsed[c.name].is_null()
            )
            reason = f"not a valid {c.pg_type}"
        if invalid.any():
            problems.append(_rejects(tf.path, lines, raw[c.name], invalid, c.name, reason))
            bad = bad | invalid
    for k in t.key:
        null_key = parsed[k].is_null()
        if null_key.any():
            problems.append(
                _rejects(tf.path, lines, raw[k], null_key & ~bad, k, "key is null (primary key)")
            )
            bad = bad | null_key
    # A repeated key keeps its first good occurrence; later ones are rejected, not dropped.
    key_frame = parsed.select(t.key).with_columns(pl.Series("_bad", bad))
    dup = key_frame.select(
        (pl.int_range(pl.len()).over([*t.key, "_bad"]) > 0) & ~pl.col("_bad")
    ).to_series()
    if dup.any():
        key_text = parsed.select(
            pl.concat_str([pl.col(k).cast(pl.String) for k in t.key], separator=",")
        ).to_series()
        problems.append(
            _rejects(
                tf.path,
                lines,
                key_text,
                dup,
                ",".join(t.key),
                "duplicate primary key (first occurrence kept)",
            )
        )
        bad = bad | dup
    rejects = pl.concat(problems).sort("line") if problems else pl.DataFrame(schema=REJECT_SCHEMA)
    return ValidatedTable(t, tf.path, parsed.filter(~bad), rejects, n)


def _rejects(
    path: Path, lines: pl.Series, values: pl.Series, mask: pl.Series, column: str, reason: str
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "file": pl.Series([str(path)] * int(mask.sum()), dtype=pl.String),
            "line": lines.filter(mask),
            "column": pl.Series([column] * int(mask.sum()), dtype=pl.String),
            "reason": pl.Series([reason] * int(mask.sum()), dtype=pl.String),
            "value": values.filter(mask).cast(pl.String).str.slice(0, 200),
        },
        schema=REJECT_SCHEMA,
    )
