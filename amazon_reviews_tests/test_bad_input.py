r"""Bad input (DESIGN §9): a clear error naming file, line and column, and nothing already loaded
is lost.

The corpus is in ``data/bad`` (``csv/<case>/<table>.csv`` for ``init-db``, ``jsonl/`` and
``tsv/`` for the importers); the 5 MB fields are made at test time. Every case first loads
``data/bad/preload`` (reviews, products, customers) with ``init-db``, then runs the bad input
and checks that the preloaded rows are all still there, unchanged (count and an md5 over their
text), also when the bad input raises.

Decisions. (a) = an error the CLI prints as ``error: ...`` with exit 2, raised before anything
is loaded, naming the file and line (and column for CSV); (b) = the record is rejected (CSV: a
line in the rejects file with line, column and reason) or skipped as a bad line (importers:
line and reason), and the other records load.

=====================  ========================================  ==========================
input                  case                                      decision
=====================  ========================================  ==========================
init-db CSV            header: missing / unknown column          (a) CsvHeaderError, line 1
init-db CSV            header not UTF-8                          (a) CsvHeaderError, line 1
init-db CSV            empty file (0 bytes)                      (a) "empty file, expected a
                                                                 header"
init-db CSV            header only                               0 rows, no error
init-db CSV            lines end with a bare CR                  (a) CsvHeaderError: the
                                                                 header holds a CR
init-db CSV            wrong types (numeric, int, boolean,       (b) line + column + "not a
                       timestamptz), year 0, rating 100          valid <type>" / "out of
                                                                 range"
init-db CSV            invalid UTF-8 in one row                  (b) "not valid UTF-8" at the
                                                                 record's line and the cell's
                                                                 column; a real U+FFFD is kept
init-db CSV            unbalanced quote                          (a) CsvFormatError at the
                                                                 line and column where the
                                                                 unclosed quoted field starts
init-db CSV            quote inside an unquoted field            (a) CsvFormatError, line and
                                                                 column (Polars cannot split
                                                                 such a file reliably)
init-db CSV            NUL byte                                  (b) line + column: PostgreSQL
                                                                 text cannot hold NUL
init-db CSV            jsonb value with \u0000, a lone            (b) line + column; a valid
                       surrogate, NaN or broken JSON             surrogate pair loads
init-db CSV            too few / too many fields                 (b) column "(row)", "expected
                                                                 11 fields ... found N"
init-db CSV            blank lines                               skipped; line numbers of
                                                                 later rows stay right
init-db CSV            5 MB field in ``text``                    loaded as is (PostgreSQL takes
                                                                 it; silver truncates later)
init-db CSV            UTF-8 BOM                                 header recognised, rows load
init-db CSV            CRLF line ends                            rows load, no stray CR, line
                                                                 numbers right
init-db CSV            unquoted field ending in a bare CR (as    loaded with its CR (Polars
                       Python's csv writes with "\n" line ends)   drops it; it is put back)
init-db CSV            truncated gzip (.csv.gz)                  (a) CsvFormatError naming the
                                                                 line being decompressed
amazon2023 JSONL       broken JSON, unbalanced quote, trailing   (b) bad line with its number
                       garbage, not an object
amazon2023 JSONL       wrong JSON types, out of range numbers,   (b) bad line naming the field
                       null required field (reviews and meta)
amazon2023 JSONL       invalid UTF-8; NUL (escaped or raw); lone (b) bad line; a valid
                       surrogate                                 surrogate pair loads
amazon2023 JSONL       BOM, CRLF                                 loaded
amazon2023 JSONL       empty file (0 bytes)                      0 rows, no error (an empty
                                                                 JSON-lines file is valid)
amazon2023 JSONL       5 MB ``text``                             loaded
amazon2023 JSONL       truncated gzip                            (a) ImportFormatError naming
                                                                 file and line, raised mid-
                                                                 stream: the import's one
                                                                 transaction rolls back, so
                                                                 none of its rows is committed
amazon_us TSV          header missing a column                   (a) ImportFormatError, line 1
amazon_us TSV          empty file (0 bytes)                      (a) "empty file: no header"
amazon_us TSV          header only                               0 rows, no error
amazon_us TSV          wrong types, out of range, non-ASCII      (b) bad line naming the field
                       digits, empty review_id
amazon_us TSV          invalid UTF-8, NUL, wrong field count     (b) bad line
amazon_us TSV          unbalanced quotes                         loaded: the format has no
                                                                 quoting, quotes are text
amazon_us TSV          BOM, CRLF, 5 MB body                      loaded
amazon_us TSV          truncated gzip                            (a) as for JSON lines
=====================  ========================================  ==========================

Property tests (hypothesis): the CSV validator against rows written by Python's csv module
with random quoting, line ends, embedded newlines, quotes and commas (every corrupted cell
rejected at its exact line and column, every other row kept with its values), and the
amazon2023 reader against random objects with random wrong types (never raises, every bad
object is a bad line with its number, every good one maps to its contract row).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import hypothesis
import polars as pl
import psycopg2
import pytest
from hypothesis import strategies as st

from amazon_reviews import cli, contract
from amazon_reviews.config import Settings
from amazon_reviews.importers import ImportFormatError, ImportReport, amazon2023, amazon_us_tsv
from amazon_reviews.io import csv_import
from amazon_reviews.io.csv_import import CsvFormatError, CsvHeaderError
from amazon_reviews.io.source_load import init_db, load_chunks

BAD = Path(__file__).resolve().parent / "data" / "bad"
PRELOAD = BAD / "preload"
PRELOADED_TABLES = ("review", "product", "customer")


# --------------------------------------------------------------------------- the preload


@dataclass
class Preloaded:
    """What `data/bad/preload` put in the source, to check that it survives."""

    url: str
    keys: dict[str, list[str]]
    digest: dict[str, tuple[int, str]]
    totals: dict[str, int]

    def snapshot(self) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
        with psycopg2.connect(self.url) as conn, conn.cursor() as cur:
            digest = {}
            for name in PRELOADED_TABLES:
                t = contract.table(name)
                key = contract.quote_ident(t.key[0])
                cur.execute(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.{key}), ''))"
                    f" FROM {t.qualified} t WHERE t.{key} = ANY(%s)",
                    (self.keys[name],),
                )
                count, md5 = cur.fetchone()
                digest[name] = (int(count), md5)
            totals = {}
            for t in contract.TABLES.values():
                cur.execute(f"SELECT count(*) FROM {t.qualified}")
                totals[t.name] = int(cur.fetchone()[0])
        return digest, totals

    def assert_intact(self, *, nothing_added: bool = False) -> None:
        """Every preloaded row is still there, unchanged; with `nothing_added`, no new row."""
        digest, totals = self.snapshot()
        assert digest == self.digest
        if nothing_added:
            assert totals == self.totals

    def new_keys(self, table: str) -> set[str]:
        t = contract.table(table)
        key = contract.quote_ident(t.key[0])
        with psycopg2.connect(self.url) as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT {key} FROM {t.qualified} WHERE NOT {key} = ANY(%s)", (self.keys[table],)
            )
            return {r[0] for r in cur.fetchall()}


@pytest.fixture
def preloaded(settings: Settings, source_url: str) -> Preloaded:
    summary = init_db(settings, PRELOAD)
    assert summary.rejects_file is None
    keys = {}
    for name in PRELOADED_TABLES:
        frame = pl.read_csv(PRELOAD / f"{name}.csv", infer_schema=False)
        keys[name] = frame[contract.table(name).key[0]].to_list()
    loaded = Preloaded(source_url, keys, {}, {})
    loaded.digest, loaded.totals = loaded.snapshot()
    assert {name: loaded.digest[name][0] for name in PRELOADED_TABLES} == {
        name: len(keys[name]) for name in PRELOADED_TABLES
    }
    return loaded


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(argv)
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- init-db: errors


@dataclass(frozen=True)
class CsvError:
    case: str
    file: str
    error: type[Exception]
    line: int
    column: str | None
    message: str


CSV_ERRORS = [
    CsvError(
        "header_missing_column",
        "review.csv",
        CsvHeaderError,
        1,
        None,
        "missing column(s) helpful_vote",
    ),
    CsvError(
        "header_unknown_column", "review.csv", CsvHeaderError, 1, None, "unknown column(s) stars"
    ),
    CsvError("header_not_utf8", "review.csv", CsvHeaderError, 1, None, "header is not valid UTF-8"),
    CsvError("empty", "review.csv", CsvHeaderError, 1, None, "empty file, expected a header with"),
    CsvError("cr_line_ends", "review.csv", CsvHeaderError, 1, None, "bare carriage return"),
    CsvError(
        "unbalanced_quote",
        "review.csv",
        CsvFormatError,
        3,
        "text",
        "quoted field is never closed",
    ),
    CsvError(
        "stray_quote",
        "review.csv",
        CsvFormatError,
        3,
        "title",
        "quote character inside an unquoted field",
    ),
    CsvError(
        "truncated_gzip",
        "review.csv.gz",
        CsvFormatError,
        181,
        None,
        "the gzip stream ends early",
    ),
]


@pytest.mark.parametrize("case", CSV_ERRORS, ids=lambda c: c.case)
def test_init_db_refuses_an_unreadable_file_before_loading_anything(
    case: CsvError,
    settings: Settings,
    preloaded: Preloaded,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = BAD / "csv" / case.case
    path = folder / case.file
    with pytest.raises(case.error) as excinfo:
        init_db(settings, folder)
    err = excinfo.value
    assert isinstance(err, CsvFormatError)
    where = f"line {case.line}" + (f", column {case.column}" if case.column else "")
    assert str(err).startswith(f"{path}: {where}")
    assert case.message in str(err)
    assert (err.file, err.line, err.column) == (str(path), case.line, case.column)
    preloaded.assert_intact(nothing_added=True)

    code, stderr = run_cli(["init-db", "--csv-dir", str(folder)], capsys)
    assert code == 2
    assert stderr.startswith(f"error: {path}: {where}")
    preloaded.assert_intact(nothing_added=True)


def test_a_valid_file_next_to_a_broken_one_is_not_loaded_either(
    settings: Settings, preloaded: Preloaded
) -> None:
    folder = BAD / "csv" / "unbalanced_quote"
    assert (
        csv_import.read_and_validate(
            csv_import.TableFile(contract.PRODUCT, folder / "product.csv")
        ).valid.height
        == 1
    )
    with pytest.raises(CsvFormatError):
        init_db(settings, folder)
    assert preloaded.new_keys("product") == set()
    preloaded.assert_intact(nothing_added=True)


def test_the_cli_process_prints_the_error_and_exits_2(
    env: dict[str, str], preloaded: Preloaded
) -> None:
    folder = BAD / "csv" / "unbalanced_quote"
    out = subprocess.run(
        [sys.executable, "-m", "amazon_reviews.cli", "init-db", "--csv-dir", str(folder)],
        capture_output=True,
        text=True,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {folder / 'review.csv'}: line 3, column text: ")
    assert "Traceback" not in out.stderr
    preloaded.assert_intact(nothing_added=True)


# --------------------------------------------------------------------------- init-db: rows


@dataclass(frozen=True)
class CsvRows:
    case: str
    table: str
    rejects: tuple[tuple[int, str, str], ...]  # (line, column, part of the reason)
    loaded: frozenset[str]
    read: int
    check: Callable[[str], None] | None = None


def _values(url: str, sql: str) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def _crlf_values(url: str) -> None:
    rows = _values(
        url, "SELECT review_id, title, text FROM amazon.review WHERE review_id LIKE 'R%'"
    )
    assert sorted(rows) == [("R1", "T", "plain"), ("R2", "T", "two\r\nlines"), ("R4", "T", "last")]


def _bom_values(url: str) -> None:
    rows = _values(url, "SELECT review_id, text FROM amazon.review WHERE review_id LIKE 'R%'")
    assert sorted(rows) == [("R1", "fine"), ("R2", "with, comma")]


def _utf8_values(url: str) -> None:
    rows = dict(_values(url, "SELECT review_id, text FROM amazon.review WHERE review_id LIKE 'R%'"))
    assert rows["R3"] == "a real \ufffd replacement character"
    assert rows["R1"] == "first\nrecord"


def _bare_cr_values(url: str) -> None:
    rows = _values(
        url, "SELECT review_id, title, text FROM amazon.review WHERE review_id LIKE 'R%'"
    )
    assert sorted(rows) == [("R1", "ends with CR\r", "\r"), ("R2", "T", "mid\rdle")]


def _json_values(url: str) -> None:
    rows = dict(_values(url, "SELECT parent_asin, features::text FROM amazon.product"))
    assert rows["P5"] == '["\U0001f600"]'


CSV_ROWS = [
    CsvRows("header_only", "review", (), frozenset(), 0),
    CsvRows("bom", "review", (), frozenset({"R1", "R2"}), 2, _bom_values),
    CsvRows(
        "crlf",
        "review",
        ((5, "rating", "not a valid numeric(3,1)"),),
        frozenset({"R1", "R2", "R4"}),
        4,
        _crlf_values,
    ),
    CsvRows("bare_cr", "review", (), frozenset({"R1", "R2"}), 2, _bare_cr_values),
    CsvRows(
        "blank_lines",
        "review",
        ((4, "rating", "not a valid numeric(3,1)"),),
        frozenset({"R1", "R3"}),
        3,
    ),
    CsvRows(
        "wrong_types",
        "review",
        (
            (3, "rating", "not a valid numeric(3,1)"),
            (6, "helpful_vote", "not a valid int"),
            (7, "verified_purchase", "not a valid boolean"),
            (8, "created_at", "not a valid timestamptz"),
            (8, "updated_at", "not a valid timestamptz"),
            (9, "rating", "not a valid numeric(3,1)"),
            (10, "created_at", "out of range"),
            (10, "updated_at", "out of range"),
        ),
        frozenset({"R1", "R3", "R8"}),
        9,
    ),
    CsvRows(
        "invalid_utf8",
        "review",
        ((4, "text", "not valid UTF-8 (bytes e9)"), (6, "title", "not valid UTF-8 (bytes ff)")),
        frozenset({"R1", "R3", "R4"}),
        5,
        _utf8_values,
    ),
    CsvRows(
        "nul_byte",
        "review",
        ((3, "text", "NUL"), (4, "title", "NUL")),
        frozenset({"R1", "R4"}),
        4,
    ),
    CsvRows(
        "ragged_rows",
        "review",
        (
            (3, "(row)", "expected 11 fields as in the header, found 3"),
            (4, "(row)", "expected 11 fields as in the header, found 12"),
        ),
        frozenset({"R1", "R4"}),
        4,
    ),
    CsvRows(
        "jsonb_refused",
        "product",
        (
            (3, "details", "\\u0000"),
            (4, "categories", "not valid JSON"),
            (5, "features", "not valid JSON"),
            (7, "categories", "unpaired surrogate"),
        ),
        frozenset({"P1", "P5"}),
        6,
        _json_values,
    ),
]


@pytest.mark.parametrize("case", CSV_ROWS, ids=lambda c: c.case)
def test_init_db_rejects_bad_rows_with_line_and_column_and_loads_the_rest(
    case: CsvRows, settings: Settings, preloaded: Preloaded
) -> None:
    path = BAD / "csv" / case.case / f"{case.table}.csv"
    summary = init_db(settings, path.parent)
    assert summary.read[case.table] == case.read
    if case.rejects:
        with open(summary.rejects_file, newline="", encoding="utf-8") as fh:
            rejects = list(csv.DictReader(fh))
        assert [(int(r["line"]), r["column"]) for r in rejects] == [
            (line, column) for line, column, _ in case.rejects
        ]
        for r, (_, _, reason) in zip(rejects, case.rejects, strict=True):
            assert reason in r["reason"]
            assert r["file"] == str(path)
    else:
        assert summary.rejects_file is None
    assert preloaded.new_keys(case.table) == case.loaded
    assert summary.loaded[case.table] == len(case.loaded)
    if case.check:
        case.check(preloaded.url)
    preloaded.assert_intact()


def test_init_db_loads_a_5_mb_text_field(
    settings: Settings, preloaded: Preloaded, tmp_path: Path
) -> None:
    big = ('5 MB, with "quotes", commas,\nnewlines and ünïcödé ✓ ' * 120_000)[:5_000_000]
    folder = tmp_path / "csv"
    folder.mkdir()
    with open(folder / "review.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(contract.REVIEW.column_names)
        for rid, text in (("R1", big), ("R2", "small")):
            writer.writerow([rid, "C1", "A1", "P1", "4", "T", text, "1", "t", "2022-01-01", ""])
    assert (folder / "review.csv").stat().st_size > 5_000_000
    summary = init_db(settings, folder)
    assert summary.loaded["review"] == 2 and summary.rejects_file is None
    rows = _values(
        preloaded.url,
        "SELECT review_id, char_length(text), md5(text) FROM amazon.review "
        "WHERE review_id IN ('R1', 'R2') ORDER BY 1",
    )
    assert rows[0] == ("R1", len(big), hashlib.md5(big.encode()).hexdigest())
    preloaded.assert_intact()


# --------------------------------------------------------------------------- importers


def _import(settings: Settings, chunks: Iterator[dict[str, pl.DataFrame]]) -> dict[str, int]:
    """What `amazon-reviews import` does: every chunk in one upserting transaction."""
    return load_chunks(settings, chunks, upsert=True)


@dataclass(frozen=True)
class ImportRows:
    file: str
    bad: tuple[tuple[int, str], ...]  # (line, part of the reason)
    loaded: frozenset[str]  # amazon2023: customer ids (user_id); TSV: review ids
    meta: str | None = None
    products: frozenset[str] = field(default_factory=frozenset)


IMPORT_ROWS = [
    ImportRows(
        "jsonl/broken_lines.jsonl",
        (
            (2, "invalid JSON"),
            (3, "invalid JSON"),
            (4, "invalid JSON: Extra data"),
            (6, "expected a JSON object, got array"),
            (7, "invalid JSON"),
        ),
        frozenset({"U1", "U8"}),
    ),
    ImportRows(
        "jsonl/wrong_types.jsonl",
        (
            (2, "rating: expected number, got string"),
            (3, "timestamp: expected integer, got string"),
            (4, "helpful_vote: expected integer, got number"),
            (5, "verified_purchase: expected boolean, got string"),
            (6, "images: expected array, got object"),
            (7, "title: expected string, got array"),
            (8, "user_id: expected string, got number"),
            (9, "rating: 1e+30 out of range"),
            (10, "helpful_vote: 1000000000000 out of range"),
            (11, "required field 'rating' is null"),
            (12, "images[0].small_image_url: expected string, got number"),
        ),
        frozenset({"U1", "U13"}),
    ),
    ImportRows("jsonl/invalid_utf8.jsonl", ((2, "invalid UTF-8"),), frozenset({"U1", "U3"})),
    ImportRows(
        "jsonl/nul.jsonl",
        ((2, "NUL"), (3, "Invalid control character"), (4, "unpaired UTF-16 surrogate")),
        frozenset({"U1", "U5"}),
    ),
    ImportRows("jsonl/bom.jsonl", (), frozenset({"U1", "U2"})),
    ImportRows("jsonl/crlf.jsonl", (), frozenset({"U1", "U2"})),
    ImportRows("jsonl/empty.jsonl", (), frozenset()),
    ImportRows(
        "jsonl/bom.jsonl",
        (
            (2, "categories: expected array, got string"),
            (3, "details: expected object, got array"),
            (4, "rating_number: expected integer, got string"),
            (5, "parent_asin: expected string, got number"),
            (6, "average_rating: 1e+300 out of range"),
            (7, "price: expected number or string, got object"),
        ),
        frozenset({"U1", "U2"}),
        meta="jsonl/meta_wrong_types.jsonl",
        products=frozenset({"JP1", "JP8"}),
    ),
    ImportRows("tsv/header_only.tsv", (), frozenset()),
    ImportRows(
        "tsv/wrong_types.tsv",
        (
            (3, "star_rating: not a number"),
            (4, "helpful_votes: not an integer"),
            (5, "verified_purchase: expected Y or N"),
            (6, "review_date: day is out of range"),
            (7, "star_rating: '9999999999999999999999999999999999999999' out of range"),
            (8, "helpful_votes: 9999"),
            (9, "star_rating: not a number"),
            (10, "review_id: empty"),
        ),
        frozenset({"T1", "T9"}),
    ),
    ImportRows("tsv/invalid_utf8.tsv", ((3, "invalid UTF-8"),), frozenset({"T1", "T3"})),
    ImportRows("tsv/nul.tsv", ((3, "NUL"),), frozenset({"T1", "T3"})),
    ImportRows("tsv/bom.tsv", (), frozenset({"T1", "T2"})),
    ImportRows("tsv/crlf.tsv", (), frozenset({"T1", "T2"})),
    ImportRows("tsv/quotes.tsv", (), frozenset({"T1", "T2"})),
    ImportRows(
        "tsv/ragged.tsv",
        ((3, "expected 15 tab-separated fields, got 16"), (4, "got 3")),
        frozenset({"T1", "T4"}),
    ),
]


def _reader(path: Path, meta: Path | None, report: ImportReport, chunk_rows: int = 50_000):
    if path.parent.name == "tsv":
        return amazon_us_tsv.read(path, report=report, chunk_rows=chunk_rows)
    return amazon2023.read(path, meta, report=report, chunk_rows=chunk_rows)


@pytest.mark.parametrize(
    "case", IMPORT_ROWS, ids=lambda c: c.file + (f"+{Path(c.meta).name}" if c.meta else "")
)
def test_importers_skip_bad_lines_with_their_numbers_and_load_the_rest(
    case: ImportRows, settings: Settings, preloaded: Preloaded
) -> None:
    path = BAD / case.file
    meta = BAD / case.meta if case.meta else None
    report = ImportReport()
    _import(settings, _reader(path, meta, report))
    bad_file = str(meta) if meta else str(path)
    assert [(b.file, b.line) for b in report.bad_lines] == [(bad_file, n) for n, _ in case.bad]
    for b, (_, reason) in zip(report.bad_lines, case.bad, strict=True):
        assert reason in b.reason
    if path.parent.name == "tsv":
        assert preloaded.new_keys("review") == case.loaded
    else:
        assert preloaded.new_keys("customer") == case.loaded
    if case.products:
        titled = _values(
            preloaded.url, "SELECT parent_asin FROM amazon.product WHERE title IS NOT NULL"
        )
        assert {p for (p,) in titled} - set(preloaded.keys["product"]) == case.products
    preloaded.assert_intact()


@pytest.mark.parametrize(
    ("file", "line"), [("jsonl/truncated.jsonl.gz", 256), ("tsv/truncated.tsv.gz", 179)]
)
def test_truncated_gzip_fails_naming_the_file_and_commits_nothing_of_the_import(
    file: str, line: int, settings: Settings, preloaded: Preloaded
) -> None:
    path = BAD / file
    report = ImportReport()
    with pytest.raises(ImportFormatError) as excinfo:
        _import(settings, _reader(path, None, report, chunk_rows=10))
    assert str(excinfo.value).startswith(f"{path}: line {line}: truncated gzip stream")
    # Chunks were upserted before the stream broke; the transaction took them back.
    assert report.rows["review"] >= 100
    preloaded.assert_intact(nothing_added=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["amazon2023", "--reviews", "jsonl/truncated.jsonl.gz"], "line 256: truncated gzip"),
        (["amazon-us-tsv", "tsv/truncated.tsv.gz"], "line 179: truncated gzip"),
        (["amazon-us-tsv", "tsv/empty.tsv"], "line 1: empty file: no header line"),
        (["amazon-us-tsv", "tsv/wrong_header.tsv"], "line 1: header is missing column(s)"),
    ],
)
def test_import_cli_prints_file_errors_and_exits_2(
    argv: list[str],
    message: str,
    preloaded: Preloaded,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [str(BAD / a) if "/" in a else a for a in argv]
    code, stderr = run_cli(["import", *argv], capsys)
    assert code == 2
    assert stderr.startswith(f"error: {argv[-1]}: {message}")
    preloaded.assert_intact(nothing_added=True)


def test_importers_load_a_5_mb_field(
    settings: Settings, preloaded: Preloaded, tmp_path: Path
) -> None:
    big = ('5 MB\twith tabs? no: ünïcödé ✓ and "quotes" ' * 150_000)[:5_000_000]
    big_tsv = big.replace("\t", " ")
    jsonl = tmp_path / "big.jsonl.gz"
    line = {
        "rating": 4.0,
        "asin": "BA1",
        "parent_asin": "BP1",
        "user_id": "BIG",
        "timestamp": 1_650_000_000_000,
        "text": big,
    }
    jsonl.write_bytes(gzip.compress(json.dumps(line, ensure_ascii=False).encode() + b"\n"))
    tsv = tmp_path / "big.tsv"
    header = "\t".join(amazon_us_tsv.COLUMNS)
    row = ["US", "BIGC", "TBIG", "BA2", "BP2", "t", "Toys", "5", "0", "0", "N", "Y", "h"]
    tsv.write_text(f"{header}\n" + "\t".join([*row, big_tsv, "2015-08-31"]) + "\n", "utf-8")
    report = ImportReport()
    _import(settings, amazon2023.read(jsonl, report=report))
    _import(settings, amazon_us_tsv.read(tsv, report=report))
    assert report.bad_lines == []
    rows = dict(
        _values(
            preloaded.url,
            "SELECT customer_id, char_length(text) FROM amazon.review "
            "WHERE customer_id IN ('BIG', 'BIGC')",
        )
    )
    assert rows == {"BIG": len(big), "BIGC": len(big_tsv)}
    preloaded.assert_intact()


# --------------------------------------------------------------------------- properties: CSV

# A character no generated value holds; in the file it becomes bytes that are not UTF-8.
_NOT_UTF8 = "\ue000"
# Text made of pieces that stress CSV and JSON: separators, quotes, every kind of line end,
# a real U+FFFD, and any other character but NUL and lone surrogates.
_PIECE = st.sampled_from(
    [",", '"', "\n", "\r\n", "\r", " ", "\t", '""', "\ufffd", "é", "✓"]
) | st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00" + _NOT_UTF8)
_TEXT = st.lists(_PIECE, max_size=12).map("".join)
_NAME = st.lists(_PIECE, min_size=1, max_size=12).map("".join)
_TS_FORMATS = (
    ("%Y-%m-%d %H:%M:%S.%f+00", lambda d: d),
    ("%Y-%m-%dT%H:%M:%SZ", lambda d: d.replace(microsecond=0)),
    ("%Y-%m-%d", lambda d: d.replace(hour=0, minute=0, second=0, microsecond=0)),
    ("%Y-%m-%dT%H:%M:%S.%f", lambda d: d),
)
# column -> (a value that is invalid there, the reason it gets)
_CORRUPTIONS = {
    "rating": ("4.5 stars", "not a valid numeric(3,1)"),
    "helpful_vote": ("1.5", "not a valid int"),
    "verified_purchase": ("maybe", "not a valid boolean"),
    "created_at": ("2022-02-30 10:00:00", "not a valid timestamptz"),
    "text": ("nul\x00byte", "NUL"),
    "title": (f"caf{_NOT_UTF8}", "not valid UTF-8"),
    "customer_id": (f"{_NOT_UTF8}", "not valid UTF-8"),
}


@st.composite
def review_rows(draw: st.DrawFn) -> list[tuple[dict[str, object], str | None, list[str]]]:
    rows = []
    for i in range(draw(st.integers(1, 12))):
        when = datetime(1990, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=draw(st.integers(0, 4_000_000_000_000_000))
        )
        fmt, expect_ts = draw(st.sampled_from(_TS_FORMATS))
        rating = Decimal(draw(st.integers(-999, 999))) / 10
        helpful = draw(st.integers(-(2**31), 2**31 - 1))
        verified = draw(st.booleans())
        values = {
            "review_id": f"R{i}",
            "customer_id": draw(_TEXT),
            "asin": draw(_TEXT),
            "parent_asin": draw(_TEXT),
            "rating": rating,
            "title": draw(_TEXT),
            "text": draw(_TEXT),
            "helpful_vote": helpful,
            "verified_purchase": verified,
            "created_at": expect_ts(when),
            "updated_at": expect_ts(when),
        }
        cells = {
            **{k: v for k, v in values.items() if isinstance(v, str)},
            "rating": draw(st.sampled_from(["{}", " {} ", "{}"])).format(rating),
            "helpful_vote": str(helpful),
            "verified_purchase": draw(
                st.sampled_from(
                    ["true", "t", "Y", "yes", "1"] if verified else ["false", "f", "N", "no", "0"]
                )
            ),
            "created_at": when.strftime(fmt),
            "updated_at": when.strftime(fmt),
        }
        corrupt = draw(st.none() | st.sampled_from(sorted(_CORRUPTIONS)))
        if corrupt:
            cells[corrupt] = _CORRUPTIONS[corrupt][0]
        order = contract.REVIEW.column_names
        rows.append((values, corrupt, [cells[c] for c in order]))
    return rows


def _blank_is_null(value: object) -> object:
    """An empty field reads as null, a quoted empty one as "": both mean no text."""
    return None if value == "" else value


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(
    rows=review_rows(),
    eol=st.sampled_from(["\n", "\r\n"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    bom=st.booleans(),
)
def test_csv_validator_rejects_exactly_the_corrupted_cells_at_their_line_and_column(
    rows: list[tuple[dict[str, object], str | None, list[str]]],
    eol: str,
    quoting: int,
    bom: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator=eol, quoting=quoting)
    writer.writerow(contract.REVIEW.column_names)
    first_lines = []
    for _, _, cells in rows:
        first_lines.append(buf.getvalue().count("\n") + 1)
        writer.writerow(cells)
    data = buf.getvalue().encode("utf-8").replace(_NOT_UTF8.encode(), b"\xff")
    path = tmp_path_factory.mktemp("prop") / "review.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)

    result = csv_import.read_and_validate(csv_import.TableFile(contract.REVIEW, path))

    assert result.rows_read == len(rows)
    expected_rejects = {
        (line, corrupt) for (_, corrupt, _), line in zip(rows, first_lines, strict=True) if corrupt
    }
    got = {(r["line"], r["column"]) for r in result.rejects.iter_rows(named=True)}
    assert got == expected_rejects
    for r in result.rejects.iter_rows(named=True):
        assert _CORRUPTIONS[r["column"]][1] in r["reason"]
        assert r["file"] == str(path)
    valid = {r["review_id"]: r for r in result.valid.iter_rows(named=True)}
    assert set(valid) == {v["review_id"] for v, corrupt, _ in rows if not corrupt}
    for values, corrupt, _ in rows:
        if corrupt:
            continue
        got_row = valid[values["review_id"]]
        for column, value in values.items():
            assert _blank_is_null(got_row[column]) == _blank_is_null(value), column


# --------------------------------------------------------------------------- properties: JSONL

_JSON_SCALAR = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT
_JSON = st.recursive(
    _JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


# field -> JSON kinds it accepts (null accepted only where listed)
_FIELD_KINDS = {
    "user_id": {"string"},
    "asin": {"string"},
    "parent_asin": {"string"},
    "rating": {"number"},
    "timestamp": {"number"},
    "title": {"string", "null"},
    "text": {"string", "null"},
    "helpful_vote": {"number", "null"},
    "verified_purchase": {"boolean", "null"},
    "images": {"array", "null"},
}
_OUT_OF_RANGE = {
    "rating": st.sampled_from([100, -100, 1e30, 10**40, 99.96]),
    "timestamp": st.sampled_from([10**20, -(10**20), 1.5]),
    "helpful_vote": st.sampled_from([2**31, -(2**31) - 1, 0.5, 1e300]),
}


@st.composite
def review_objects(draw: st.DrawFn, index: int) -> tuple[dict[str, object], bool]:
    obj: dict[str, object] = {
        "user_id": draw(_NAME),
        "asin": draw(_NAME),
        "parent_asin": draw(_NAME),
        "rating": draw(st.integers(-99, 99) | st.sampled_from([4.5, 0.5, -2.5, 1.0])),
        "timestamp": 1_600_000_000_000 + index,
    }
    for key, strategy in (
        ("title", _TEXT | st.none()),
        ("text", _TEXT | st.none()),
        ("helpful_vote", st.integers(-(2**31), 2**31 - 1) | st.none()),
        ("verified_purchase", st.booleans() | st.none()),
        ("images", st.lists(st.fixed_dictionaries({"large_image_url": _TEXT}), max_size=2)),
    ):
        if draw(st.booleans()):
            obj[key] = draw(strategy)
    how = draw(st.sampled_from(["valid", "valid", "wrong type", "out of range", "missing"]))
    if how == "wrong type":
        key = draw(st.sampled_from(sorted(_FIELD_KINDS)))
        obj[key] = draw(_JSON.filter(lambda v, key=key: _json_kind(v) not in _FIELD_KINDS[key]))
    elif how == "out of range":
        key = draw(st.sampled_from(sorted(_OUT_OF_RANGE)))
        obj[key] = draw(_OUT_OF_RANGE[key])
    elif how == "missing":
        del obj[draw(st.sampled_from(["user_id", "asin", "parent_asin", "rating", "timestamp"]))]
    return obj, how == "valid"


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(
    objects=st.integers(1, 10).flatmap(lambda n: st.tuples(*(review_objects(i) for i in range(n)))),
    ascii_only=st.booleans(),
    eol=st.sampled_from([b"\n", b"\r\n"]),
    chunk_rows=st.integers(1, 4),
)
def test_amazon2023_reader_turns_wrong_types_into_bad_lines_and_maps_the_rest(
    objects: tuple[tuple[dict[str, object], bool], ...],
    ascii_only: bool,
    eol: bytes,
    chunk_rows: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("prop") / "reviews.jsonl"
    path.write_bytes(
        b"".join(json.dumps(o, ensure_ascii=ascii_only).encode() + eol for o, _ in objects)
    )
    report = ImportReport()
    reviews = [
        chunk["review"] for chunk in amazon2023.read(path, report=report, chunk_rows=chunk_rows)
    ]
    review = pl.concat(reviews) if reviews else contract.REVIEW.polars_schema.to_frame()
    assert [b.line for b in report.bad_lines] == [
        i for i, (_, ok) in enumerate(objects, start=1) if not ok
    ]
    assert review.schema == contract.REVIEW.polars_schema
    by_id = {r["review_id"]: r for r in review.iter_rows(named=True)}
    good = [o for o, ok in objects if ok]
    assert len(by_id) == len(good)
    for o in good:
        rid = amazon2023.review_id(o["user_id"], o["asin"], o["timestamp"])
        row = by_id[rid]
        created = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=o["timestamp"])
        assert row == {
            "review_id": rid,
            "customer_id": o["user_id"],
            "asin": o["asin"],
            "parent_asin": o["parent_asin"],
            "rating": Decimal(str(o["rating"])).quantize(Decimal("0.1")),
            "title": o.get("title"),
            "text": o.get("text"),
            "helpful_vote": o.get("helpful_vote"),
            "verified_purchase": o.get("verified_purchase"),
            "created_at": created,
            "updated_at": created,
        }
