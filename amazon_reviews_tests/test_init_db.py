"""`init-db` against the real embedded PostgreSQL: DDL, loads, rejects, strict, headers, re-runs."""

import csv
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from amazon_reviews import contract
from amazon_reviews.config import Settings
from amazon_reviews.io.csv_import import CsvHeaderError
from amazon_reviews.io.postgres import column_drift, missing_tables
from amazon_reviews.io.source_load import StrictRejectError, init_db

REVIEW_HEADER = ",".join(contract.REVIEW.column_names)
PRODUCT_HEADER = ",".join(contract.PRODUCT.column_names)
GOOD_REVIEWS = [
    'R1,C1,A1,P1,5.0,Nice,"multi\nline text",3,true,2021-01-01 10:00:00+00,2021-01-01 10:00:00+00',
    "R2,C1,A2,P1,4,Ok,plain,0,false,2021-02-01T00:00:00Z,2021-02-01T00:00:00Z",
]


def _write(folder: Path, name: str, header: str, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _count(url: str, table: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM amazon.{table}")
        return cur.fetchone()[0]


def test_ddl_matches_the_contract(settings: Settings, source_url: str, tmp_path: Path) -> None:
    _write(tmp_path / "csv", "review", REVIEW_HEADER, GOOD_REVIEWS)
    init_db(settings, tmp_path / "csv")
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        assert missing_tables(cur) == []
        assert column_drift(cur) == {}
        cur.execute("ALTER TABLE amazon.review ADD COLUMN extra text")
        cur.execute("ALTER TABLE amazon.review ALTER COLUMN helpful_vote TYPE bigint")
        drift = column_drift(cur)
    assert drift == {
        "review": [
            "column helpful_vote is bigint, contract says int",
            "column extra not in contract",
        ]
    }


def test_valid_rows_load_and_bad_rows_are_rejected_with_line_and_column(
    settings: Settings, source_url: str, tmp_path: Path
) -> None:
    rows = [
        *GOOD_REVIEWS,
        "R3,C1,A1,P1,abc,Bad,x,3,true,2021-01-01,2021-01-01",
        "R4,C1,A1,P1,4,T,y,notint,true,2021-01-01,2021-01-01",
        "R1,C2,A1,P1,4,T,dup key,1,Y,2021-01-01,2021-01-01",
        ",C2,A1,P1,4,T,null key,1,N,2021-01-01,2021-01-01",
        "R5,C2,A1,P1,4,T,bad date,1,N,2021-13-01,2021-01-01",
    ]
    path = _write(tmp_path / "csv", "review", REVIEW_HEADER, rows)
    summary = init_db(settings, tmp_path / "csv")
    assert summary.read["review"] == 7
    assert summary.rejected["review"] == 5
    assert summary.loaded["review"] == 2
    assert _count(source_url, "review") == 2
    with open(summary.rejects_file, newline="") as fh:
        rejects = list(csv.DictReader(fh))
    # R1 spans lines 2-3 (a quoted newline), so R3 is on line 5.
    assert [(r["line"], r["column"]) for r in rejects] == [
        ("5", "rating"),
        ("6", "helpful_vote"),
        ("7", "review_id"),
        ("8", "review_id"),
        ("9", "created_at"),
    ]
    assert all(r["file"] == str(path) for r in rejects)
    assert "numeric(3,1)" in rejects[0]["reason"]
    assert "duplicate primary key" in rejects[2]["reason"]
    assert "null" in rejects[3]["reason"]


def test_strict_loads_nothing_when_anything_is_rejected(
    settings: Settings, source_url: str, tmp_path: Path
) -> None:
    _write(
        tmp_path / "csv",
        "review",
        REVIEW_HEADER,
        [*GOOD_REVIEWS, "R3,C1,A1,P1,abc,Bad,x,3,true,2021-01-01,2021-01-01"],
    )
    _write(tmp_path / "csv", "product", PRODUCT_HEADER, ["P1,T,Books,S,1.50,4.5,3,[],[],{},"])
    with pytest.raises(StrictRejectError, match="1 row"):
        init_db(settings, tmp_path / "csv", strict=True)
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        assert missing_tables(cur) == list(contract.TABLES)  # not even the schema was created


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (REVIEW_HEADER.replace(",helpful_vote", ""), "missing column(s) helpful_vote"),
        (REVIEW_HEADER + ",stars", "unknown column(s) stars"),
        (REVIEW_HEADER + ",rating", "repeated column(s) rating"),
    ],
)
def test_header_errors_name_the_file_and_columns_before_any_load(
    settings: Settings, source_url: str, tmp_path: Path, header: str, message: str
) -> None:
    _write(tmp_path / "csv", "product", PRODUCT_HEADER, ["P1,T,Books,S,1.50,4.5,3,[],[],{},"])
    path = _write(tmp_path / "csv", "review", header, [])
    with pytest.raises(CsvHeaderError) as err:
        init_db(settings, tmp_path / "csv")
    assert str(path) in str(err.value) and "line 1" in str(err.value)
    assert message in str(err.value)
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        assert missing_tables(cur) == list(contract.TABLES)  # product was not loaded either


def test_rerun_is_idempotent_and_replace_empties_first(
    settings: Settings, source_url: str, tmp_path: Path
) -> None:
    _write(tmp_path / "csv", "review", REVIEW_HEADER, GOOD_REVIEWS)
    init_db(settings, tmp_path / "csv")
    init_db(settings, tmp_path / "csv")
    assert _count(source_url, "review") == 2
    _write(tmp_path / "csv2", "review", REVIEW_HEADER, [GOOD_REVIEWS[1].replace(",Ok,", ",New,")])
    init_db(settings, tmp_path / "csv2")
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT review_id, title FROM amazon.review ORDER BY 1")
        assert cur.fetchall() == [("R1", "Nice"), ("R2", "New")]
    init_db(settings, tmp_path / "csv2", replace=True)
    assert _count(source_url, "review") == 1


def test_cli_reports_a_bad_row_with_file_line_and_column(env: dict, tmp_path: Path) -> None:
    _write(
        tmp_path / "csv",
        "review",
        REVIEW_HEADER,
        [*GOOD_REVIEWS, "R3,C1,A1,P1,abc,Bad,x,3,true,2021-01-01,2021-01-01"],
    )
    out = subprocess.run(
        [sys.executable, "-m", "amazon_reviews.cli", "init-db", "--csv-dir", str(tmp_path / "csv")],
        capture_output=True,
        text=True,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "review         3     1         2" in out.stdout
    rejects_file = out.stdout.split("reason): ")[1].split()[0]
    assert "review.csv,5,rating," in Path(rejects_file).read_text()

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "amazon_reviews.cli",
            "init-db",
            "--csv-dir",
            str(tmp_path / "csv"),
            "--strict",
        ],
        capture_output=True,
        text=True,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: --strict: 1 row(s) rejected, nothing loaded")
