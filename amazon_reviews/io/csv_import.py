"""`init-db`: read contract CSVs, check headers, validate every value, write rejects, COPY the rest.

A CSV is read as text, every column is parsed to its contract type in vectorised Polars, and
each row whose value does not parse, whose key is null or repeated, is written to a rejects file
with its file, physical line, column and reason. Physical lines are exact even when quoted
fields hold newlines: a record's first line is the line after the header plus the newlines of
every record before it.

Bad input (DESIGN §9) is handled in two ways, both before anything is loaded:

* The file as a whole cannot be read (no header, a header that does not match the contract, an
  unbalanced or stray quote, a corrupt gzip stream): `CsvFormatError` (`CsvHeaderError` for the
  header) naming the file, the line and, where it applies, the column.
* One record is bad: it becomes a reject line and the other records load. Besides values that
  do not parse and null or repeated keys, a record is rejected for bytes that are not UTF-8, a
  NUL character (PostgreSQL text cannot hold one), JSON that jsonb refuses, a timestamp outside
  years 1-9999, or a field count that differs from the header's. Blank lines are skipped, and
  a bare CR ending an unquoted field (Python's csv module writes one with lineterminator="\n";
  Polars drops it) is put back.

The common case costs one Polars read plus two byte counts (newlines and commas) that prove the
records Polars found are exactly the lines of the file. Only when the read fails or a count
disagrees does a slower record scanner run, to find where and why.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from amazon_reviews import contract

REJECT_SCHEMA = {
    "file": pl.String,
    "line": pl.Int64,
    "column": pl.String,
    "reason": pl.String,
    "value": pl.String,
}
# The `column` of a reject that concerns the whole record (its field count), not one value.
ROW = "(row)"

GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
# A header longer than this is taken to be an unbalanced quote swallowing the file.
_HEADER_LIMIT = 1 << 20
_PREVIEW = 200


class CsvFormatError(ValueError):
    """A CSV file cannot be read as CSV; nothing is loaded.

    The message reads ``<file>: line <n>[, column <name>]: ...`` and mentions "CSV".

    Attributes:
        file: The offending file.
        line: The 1-based physical line where the problem starts.
        column: The contract column concerned, or None when it does not apply.
    """

    def __init__(self, message: str, *, file: str | Path, line: int, column: str | None = None):
        super().__init__(message)
        self.file = str(file)
        self.line = line
        self.column = column

    def __reduce__(self):
        return (
            type(self),
            (str(self),),
            {"file": self.file, "line": self.line, "column": self.column},
        )


class CsvHeaderError(CsvFormatError):
    """A CSV header does not match the contract; the message names the file and the columns."""


def _error(
    cls: type[CsvFormatError], path: Path, line: int, detail: str, column: str | None = None
) -> CsvFormatError:
    where = f"line {line}" + (f", column {column}" if column else "")
    return cls(f"{path}: {where}: {detail}", file=path, line=line, column=column)


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
        CsvFormatError: when a header cannot be read (e.g. a corrupt gzip stream).
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


# --------------------------------------------------------------------------- bytes and header


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic.

    With `limit`, reading stops once that many (decompressed) bytes are in hand.

    Raises:
        CsvFormatError: the gzip stream is corrupt or ends early; the line named is the one
            being decompressed when it broke.
    """
    with path.open("rb") as fh:
        if fh.read(2) != GZIP_MAGIC:
            fh.seek(0)
            return fh.read() if limit is None else fh.read(limit)
        fh.seek(0)
        out: list[bytes] = []
        size = 0
        inflater = zlib.decompressobj(wbits=31)
        try:
            while limit is None or size < limit:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                while chunk:
                    part = inflater.decompress(chunk)
                    out.append(part)
                    size += len(part)
                    chunk = b""
                    # Concatenated gzip members (as `cat a.gz b.gz` makes) are one stream.
                    if inflater.eof and inflater.unused_data.strip(b"\x00"):
                        chunk = inflater.unused_data
                        inflater = zlib.decompressobj(wbits=31)
            complete = inflater.eof or (limit is not None and size >= limit)
            problem = None if complete else "the gzip stream ends early (truncated file)"
        except zlib.error as exc:
            problem = f"the gzip stream is corrupt ({exc})"
    data = b"".join(out)
    if problem:
        line = data.count(b"\n") + 1
        raise _error(CsvFormatError, path, line, f"unreadable CSV: {problem}")
    return data


@dataclass(frozen=True)
class _Header:
    columns: list[str]  # stripped names, in file order
    end: int  # offset just past the header's line end (a BOM included)
    lines: int  # physical lines the header spans (1 unless a quoted name holds a newline)


def _parse_header(path: Path, data: bytes, table: contract.Table) -> _Header:
    start = len(_BOM) if data.startswith(_BOM) else 0
    expected = ", ".join(table.column_names)
    if len(data) == start:
        raise _error(
            CsvHeaderError, path, 1, f"empty file, expected a header with columns {expected}"
        )
    # The header ends at the first newline outside quotes.
    end = start
    while True:
        nl = data.find(b"\n", end)
        if nl == -1:
            if len(data) >= _HEADER_LIMIT:
                raise _error(
                    CsvHeaderError,
                    path,
                    1,
                    f"header line not ended within {_HEADER_LIMIT} bytes (unbalanced quote?)",
                )
            end = len(data)
            break
        end = nl + 1
        if data.count(b'"', start, nl) % 2 == 0:
            break
    raw = data[start:end]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(
            CsvHeaderError,
            path,
            1 + raw.count(b"\n", 0, exc.start),
            f"header is not valid UTF-8 ({exc.reason} at byte {start + exc.start})",
        ) from None
    if "\r" in text.rstrip("\r\n"):
        raise _error(
            CsvHeaderError,
            path,
            1,
            "header holds a bare carriage return: lines seem to end with CR only; "
            "use LF or CRLF line ends",
        )
    if not text.strip("\r\n"):
        raise _error(
            CsvHeaderError, path, 1, f"blank first line, expected a header with columns {expected}"
        )
    try:
        header = next(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise _error(CsvHeaderError, path, 1, f"header is not valid CSV: {exc}") from None
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
            f"{path}: line 1 (header) for table {table.name}: " + "; ".join(problems),
            file=path,
            line=1,
        )
    return _Header(cols, end, raw.count(b"\n") or 1)


def check_header(path: Path, table: contract.Table) -> list[str]:
    """Read and check the header line; return the columns in file order.

    Only the first megabyte is read, so every file's header is checked before any is loaded.

    Raises:
        CsvHeaderError: the file is empty, or its header is not UTF-8 or does not match the
            contract (missing, unknown or repeated columns).
        CsvFormatError: the file is a corrupt gzip stream.
    """
    return _parse_header(path, _read_bytes(path, _HEADER_LIMIT), table).columns


# --------------------------------------------------------------------------- record scanner

_QUOTED = rb'"[^"]*(?:""[^"]*)*"'
# An unquoted field may hold quotes in pairs that enclose no separator or newline (`say "hi"`):
# Polars reads those as literal text, so the scanner does too.
_UNQUOTED = rb'[^,"\n]*(?:"[^,"\n]*"[^,"\n]*)*'
_FIELD = rb"(?:" + _QUOTED + rb"|" + _UNQUOTED + rb")"
_RECORD = re.compile(_FIELD + rb"(?:," + _FIELD + rb")*")
_QUOTED_RE = re.compile(_QUOTED)
_FIELD_RE = re.compile(_FIELD)


@dataclass(frozen=True)
class _Scan:
    """What the scanner found: per record its first line, and the odd ones."""

    lines: list[int]  # first physical line of every record, blank ones included
    blank: list[int]  # indexes of blank records (an empty line)
    ragged: dict[int, tuple[int, bytes]]  # index -> (field count, record) when the count is wrong
    # (index, field) of unquoted fields that end with a bare CR before a separator: Polars
    # drops that CR (Python's csv module writes such fields when lineterminator="\n").
    cr_cells: list[tuple[int, int]] = field(default_factory=list)


def _fields(record: bytes) -> list[tuple[int, int]]:
    """(start, end) of every field of a well-formed record."""
    spans = []
    pos = 0
    while True:
        m = _FIELD_RE.match(record, pos)
        spans.append((m.start(), m.end()))
        pos = m.end()
        if pos >= len(record) or record[pos] != ord(","):
            return spans
        pos += 1


def _scan(path: Path, data: bytes, header: _Header) -> _Scan:
    """Split the body into records with RFC 4180 quoting, as Polars does.

    Raises:
        CsvFormatError: a quote that opens a field is never closed, a quote stands inside an
            unquoted field, or a closing quote is followed by something other than a
            separator or a line end. The line named is where the offending field starts.
    """
    ncols = len(header.columns)
    lines: list[int] = []
    blank: list[int] = []
    ragged: dict[int, tuple[int, bytes]] = {}
    cr_cells: list[tuple[int, int]] = []
    pos, line, n = header.end, header.lines + 1, len(data)
    while pos < n:
        end = _RECORD.match(data, pos).end()
        if end == n or data[end] == 0x0A:
            nxt = end + 1
        elif data.startswith(b"\r\n", end) or (end + 1 == n and data[end] == 0x0D):
            nxt = end + 2
        else:
            raise _quote_error(path, data, header, pos, end, line)
        record = data[pos:end]
        index = len(lines)
        lines.append(line)
        commas = record.count(b",")
        if commas and b'"' in record:
            commas -= sum(q.count(b",") for q in _QUOTED_RE.findall(record))
        if commas + 1 != ncols:
            if not record.strip(b"\r"):
                blank.append(index)
            else:
                ragged[index] = (commas + 1, record[:_PREVIEW])
        elif b"\r," in record:
            for k, (a, b) in enumerate(_fields(record)[:-1]):
                if b > a and record[b - 1] == 0x0D and record[a] != 0x22:
                    cr_cells.append((index, k))
        line += record.count(b"\n") + 1
        pos = nxt
    return _Scan(lines, blank, ragged, cr_cells)


def _count_fields(data: bytes, ncols: int, lines: pl.Series, inner_commas: pl.Series) -> _Scan:
    """Field counts of the records Polars read, from comma positions (vectorised).

    A record's separators are the commas between its first byte and the next record's, less
    the commas inside its values. A record with no value and no separator is a blank line.
    """
    starts = _line_starts(data)
    first = starts[lines.to_numpy() - 1]
    after = np.append(first[1:], len(data))
    commas = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x2C)
    raw = np.searchsorted(commas, after) - np.searchsorted(commas, first)
    fields = raw - inner_commas.to_numpy() + 1
    blank: list[int] = []
    ragged: dict[int, tuple[int, bytes]] = {}
    for index in np.flatnonzero(fields != ncols).tolist():
        record = data[first[index] : after[index]].rstrip(b"\r\n")
        if raw[index] == 0 and not record.strip(b"\r"):
            blank.append(index)
        else:
            ragged[index] = (int(fields[index]), record[:_PREVIEW])
    return _Scan(lines.to_list(), blank, ragged)


def _quote_error(
    path: Path, data: bytes, header: _Header, pos: int, end: int, line: int
) -> CsvFormatError:
    """The error for a record that stops at `end` on something other than a line end."""
    record = data[pos : end + 1]
    spans = _fields(record)
    index = len(spans) - 1
    column = header.columns[index] if index < len(header.columns) else f"#{index + 1}"
    start = pos + spans[-1][0]  # the field being read when the record broke off
    field_line = line + data.count(b"\n", pos, start)
    if data[end] == ord('"') and start == end:
        return _error(
            CsvFormatError,
            path,
            field_line,
            "malformed CSV: this quoted field is never closed (unbalanced quote; a quote "
            "inside a quoted field must be doubled)",
            column,
        )
    if data[start] != ord('"'):
        return _error(
            CsvFormatError,
            path,
            field_line,
            "malformed CSV: quote character inside an unquoted field (quote the whole field "
            'and double the quote: "a ""b"" c")',
            column,
        )
    close_line = line + data.count(b"\n", pos, end)
    shown = data[end : end + 1].decode("latin-1")
    return _error(
        CsvFormatError,
        path,
        field_line,
        f"malformed CSV: the quoted field that starts here ends at line {close_line} with a "
        f"quote followed by {shown!r} instead of a separator or line end (an unbalanced "
        "quote, or a quote inside a quoted field that is not doubled)",
        column,
    )


# --------------------------------------------------------------------------- parsing values

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
# PostgreSQL cannot store year 0 or negative years as written by Polars, nor years past 9999
# as Polars writes them; the contract's timestamps are kept within years 1-9999 UTC.
_TS_MIN = datetime(1, 1, 1, tzinfo=UTC)
_TS_MAX = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def _timestamp_parsers() -> list:
    aware = [
        lambda s, f=f: s.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC")
        for f in _TS_FORMATS
    ]
    naive = [
        lambda s, f=f: s.str.to_datetime(f, strict=False, time_unit="us").dt.replace_time_zone(
            "UTC"
        )
        for f in _NAIVE_FORMATS
    ]

    def day(s: pl.Series) -> pl.Series:
        return (
            s.str.to_date("%Y-%m-%d", strict=False)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
        )

    return [*aware, *naive, day]


_TS_PARSERS = _timestamp_parsers()


def _parse_timestamp(s: pl.Series) -> pl.Series:
    """The first format that parses each value wins; later formats only see what is left."""
    out = _TS_PARSERS[0](s)
    for parser in _TS_PARSERS[1:]:
        todo = (out.is_null() & s.is_not_null()).arg_true()
        if todo.len() == 0:
            break
        out = out.scatter(todo, parser(s.gather(todo)))
    return out


def _parse(col: contract.Column, raw: pl.Series) -> pl.Series:
    """The vectorised parse of one text column to its contract type (null when invalid)."""
    kind = col.kind
    if kind in ("text", "json"):
        return raw
    s = raw.str.strip_chars()
    if kind == "int":
        out = s.cast(pl.Int64, strict=False).cast(col.dtype, strict=False)
    elif kind == "decimal":
        out = s.cast(col.dtype, strict=False)
    elif kind == "bool":
        low = pl.col(col.name).str.to_lowercase()
        out = (
            s.to_frame(col.name)
            .select(pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False))
            .to_series()
        )
    elif kind == "timestamp":
        out = _parse_timestamp(s)
    else:
        raise AssertionError(kind)
    return out.alias(col.name)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


# Python reads NaN and Infinity; jsonb does not.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


# Escapes that decode to strings jsonb refuses (NUL, lone UTF-16 surrogates); the Python check
# below runs only for values that hold one of them.
_SUSPECT_ESCAPE = r"\\u(?:0000|[dD][89a-fA-F])"


def _unstorable(value: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or any("\ud800" <= ch <= "\udfff" for ch in item):
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return False


def _json_problems(values: pl.Series, pg_type: str) -> list[str | None]:
    """Per value, why PostgreSQL `jsonb` would refuse it, or None."""
    suspect = values.str.contains(_SUSPECT_ESCAPE).fill_null(False)
    out: list[str | None] = []
    for v, check in zip(values, suspect, strict=True):
        if v is None:
            out.append(None)
            continue
        try:
            parsed = _DECODER.decode(v)
        except (ValueError, RecursionError):
            out.append(f"not valid JSON for {pg_type}")
            continue
        if check and _unstorable(parsed):
            out.append(f"JSON holds \\u0000 or an unpaired surrogate, which {pg_type} refuses")
        else:
            out.append(None)
    return out


# --------------------------------------------------------------------------- reading


def _polars_read(data: bytes, names: list[str], *, lossy: bool, ragged: bool) -> pl.DataFrame:
    raw = pl.read_csv(
        data,
        infer_schema=False,
        encoding="utf8-lossy" if lossy else "utf8",
        quote_char='"',
        truncate_ragged_lines=ragged,
        raise_if_empty=False,
    )
    if raw.width != len(names):
        raise ValueError(f"expected {len(names)} columns, Polars found {raw.width}")
    raw.columns = names
    return raw


def _line_starts(data: bytes) -> np.ndarray:
    """Offset of the first byte of every physical line (line n starts at index n - 1)."""
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
    return np.concatenate(([0], newlines + 1))


class _Rejects:
    """Reject lines collected per column, plus the rows they make bad."""

    def __init__(self, path: Path, lines: pl.Series, n: int) -> None:
        self.path = str(path)
        self.lines = lines
        self.bad = pl.Series([False] * n, dtype=pl.Boolean)
        self.frames: list[pl.DataFrame] = []

    def add(self, mask: pl.Series, column: str, reason: str | pl.Series, values: pl.Series):
        count = int(mask.sum())
        if not count:
            return
        reasons = (
            reason.filter(mask)
            if isinstance(reason, pl.Series)
            else pl.Series([reason] * count, dtype=pl.String)
        )
        self.frames.append(
            pl.DataFrame(
                {
                    "file": pl.Series([self.path] * count, dtype=pl.String),
                    "line": self.lines.filter(mask),
                    "column": pl.Series([column] * count, dtype=pl.String),
                    "reason": reasons,
                    "value": values.filter(mask).cast(pl.String).str.slice(0, _PREVIEW),
                },
                schema=REJECT_SCHEMA,
            )
        )
        self.bad = self.bad | mask

    def frame(self) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(schema=REJECT_SCHEMA)
        return pl.concat(self.frames).sort("line", maintain_order=True)


def _mask(n: int, rows: list[int]) -> pl.Series:
    out = np.zeros(n, dtype=bool)
    out[rows] = True
    return pl.Series(out)


def read_and_validate(tf: TableFile) -> ValidatedTable:
    """Read one CSV as text and split it into typed valid rows and per-cell rejects.

    Raises:
        CsvHeaderError: the file is empty or the header does not match the contract.
        CsvFormatError: the file cannot be split into records (an unbalanced or stray quote, a
            corrupt gzip stream); the message names the file, line and column.
    """
    t, path = tf.table, tf.path
    data = _read_bytes(path)
    header = _parse_header(path, data, t)
    cols = header.columns
    ncols = len(cols)
    body_lines = data.count(b"\n", header.end)
    body_commas = data.count(b",", header.end)

    scan: _Scan | None = None
    lossy = False
    try:
        raw = _polars_read(data, cols, lossy=False, ragged=False)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        # Bytes that are not UTF-8 only need a lossy read (the bad cells are found below);
        # anything else needs the scanner, which raises for quotes and finds long records.
        lossy = True
        try:
            raw = _polars_read(data, cols, lossy=True, ragged=False)
        except (pl.exceptions.PolarsError, ValueError):
            scan = _scan(path, data, header)
            try:
                raw = _polars_read(data, cols, lossy=True, ragged=bool(scan.ragged))
            except (pl.exceptions.PolarsError, ValueError):
                raise _error(
                    CsvFormatError, path, header.lines + 1, f"unreadable CSV: {_first_line(exc)}"
                ) from None
    n = raw.height
    inner = raw.select(
        pl.sum_horizontal(
            [pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in cols]
        ).alias("nl"),
        pl.sum_horizontal(
            [pl.col(c).str.count_matches(",", literal=True).fill_null(0) for c in cols]
        ).alias("commas"),
    )
    if scan is None:
        # Polars' records must be exactly the file's lines: every newline ends a record or is
        # inside a value. Every comma is a separator or inside a value, unless a record is
        # short (Polars pads it with nulls) or blank; only then are records counted one by one.
        ends_open = bool(n) and not data.endswith(b"\n")
        if body_lines != n + int(inner["nl"].sum()) - int(ends_open) or (
            data.find(b"\r,", header.end) != -1
        ):
            scan = _scan(path, data, header)
        else:
            lines = inner.select(
                (
                    pl.lit(header.lines + 1, pl.Int64)
                    + (pl.col("nl") + 1).cum_sum().shift(1, fill_value=0)
                ).alias("line")
            ).to_series()
            if body_commas != n * (ncols - 1) + int(inner["commas"].sum()):
                scan = _count_fields(data, ncols, lines, inner["commas"])
            else:
                scan = _Scan(lines.to_list(), [], {})
    if len(scan.lines) != n:
        raise _error(
            CsvFormatError,
            path,
            header.lines + 1,
            f"unreadable CSV: {len(scan.lines)} records by RFC 4180 quoting, {n} read by Polars",
        )
    lines = pl.Series("line", scan.lines, dtype=pl.Int64)
    if scan.cr_cells:
        raw = _restore_cr(raw, cols, scan.cr_cells)

    rejects = _Rejects(path, lines, n)
    skip = _mask(n, scan.blank)
    if scan.ragged:
        rows = sorted(scan.ragged)
        reasons: list[str | None] = [None] * n
        values: list[str | None] = [None] * n
        for index in rows:
            found, record = scan.ragged[index]
            reasons[index] = f"expected {ncols} fields as in the header, found {found}"
            values[index] = record.decode("utf-8", errors="replace")
        rejects.add(
            _mask(n, rows),
            ROW,
            pl.Series(reasons, dtype=pl.String),
            pl.Series(values, dtype=pl.String),
        )
    cell_bad = {c: rejects.bad.clone() for c in cols}
    if lossy:
        _reject_invalid_utf8(data, raw, lines, header, rejects, cell_bad, skip)
    if data.find(b"\x00", header.end) != -1:
        for c in cols:
            has_nul = raw[c].str.contains("\x00", literal=True).fill_null(False) & ~cell_bad[c]
            rejects.add(
                has_nul, c, "contains a NUL character, which PostgreSQL text cannot store", raw[c]
            )
            cell_bad[c] = cell_bad[c] | has_nul

    raw = raw.select(t.column_names)
    parsed = pl.DataFrame([_parse(c, raw[c.name]) for c in t.columns])
    for c in t.columns:
        if c.kind == "text":
            continue
        value = raw[c.name]
        if c.kind == "json":
            problems = pl.Series(_json_problems(value, c.pg_type), dtype=pl.String)
            rejects.add(problems.is_not_null() & ~cell_bad[c.name], c.name, problems, value)
            continue
        present = value.is_not_null() & (value.str.strip_chars() != "")
        invalid = present & parsed[c.name].is_null() & ~cell_bad[c.name]
        rejects.add(invalid, c.name, f"not a valid {c.pg_type}", value)
        if c.kind == "timestamp":
            ts = parsed[c.name]
            out_of_range = ((ts < _TS_MIN) | (ts > _TS_MAX)).fill_null(False) & ~cell_bad[c.name]
            rejects.add(out_of_range, c.name, f"{c.pg_type} out of range (years 1-9999)", value)
    bad = rejects.bad | skip
    for k in t.key:
        null_key = parsed[k].is_null() & ~bad
        rejects.add(null_key, k, "key is null (primary key)", raw[k])
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
        rejects.add(dup, ",".join(t.key), "duplicate primary key (first occurrence kept)", key_text)
    bad = rejects.bad | skip
    return ValidatedTable(t, path, parsed.filter(~bad), rejects.frame(), n - int(skip.sum()))


def _restore_cr(raw: pl.DataFrame, cols: list[str], cells: list[tuple[int, int]]) -> pl.DataFrame:
    """Put back the bare CR Polars dropped from the end of these unquoted fields."""
    by_column: dict[str, list[int]] = {}
    for index, k in cells:
        by_column.setdefault(cols[k], []).append(index)
    fixed = []
    for column, rows in by_column.items():
        at = pl.Series(rows, dtype=pl.UInt32)
        values = raw[column]
        fixed.append(values.scatter(at, values.gather(at).fill_null("") + "\r"))
    return raw.with_columns(fixed)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _reject_invalid_utf8(
    data: bytes,
    raw: pl.DataFrame,
    lines: pl.Series,
    header: _Header,
    rejects: _Rejects,
    cell_bad: dict[str, pl.Series],
    skip: pl.Series,
) -> None:
    """Reject the cells whose bytes are not UTF-8 (read lossily, they hold U+FFFD).

    A value may hold a real U+FFFD, so each candidate record is decoded again from its bytes.
    """
    cols = header.columns
    candidates = raw.select(
        pl.any_horizontal([pl.col(c).str.contains("\ufffd", literal=True) for c in cols])
        .fill_null(False)
        .alias("c")
    ).to_series()
    candidates = candidates & ~rejects.bad & ~skip
    if not candidates.any():
        return
    starts = _line_starts(data)
    record_lines = lines.to_list()
    bad_cells: dict[str, list[int]] = {c: [] for c in cols}
    detail: dict[tuple[str, int], str] = {}
    for index in candidates.arg_true().to_list():
        first = starts[record_lines[index] - 1]
        after = starts[record_lines[index + 1] - 1] if index + 1 < len(record_lines) else len(data)
        record = data[first:after].rstrip(b"\r\n")
        for column, (a, b) in zip(cols, _fields(record), strict=False):
            value = record[a:b]
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad_cells[column].append(index)
                bytes_ = value[exc.start : exc.end].hex(" ")
                detail[(column, index)] = f"not valid UTF-8 (bytes {bytes_})"
    n = raw.height
    for column, rows in bad_cells.items():
        if not rows:
            continue
        reasons = [None] * n
        for index in rows:
            reasons[index] = detail[(column, index)]
        mask = _mask(n, rows)
        rejects.add(mask, column, pl.Series(reasons, dtype=pl.String), raw[column])
        cell_bad[column] = cell_bad[column] | mask
