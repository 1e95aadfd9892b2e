"""Loading the source database: `init-db` from CSVs, and chunked loads from the generator and
the importers. Every load runs in one transaction, so a failure leaves the tables as they were.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from amazon_reviews import contract
from amazon_reviews.config import Settings
from amazon_reviews.io import csv_import
from amazon_reviews.io.lake import atomic_write_bytes
from amazon_reviews.io.postgres import (
    CSV_DATETIME,
    copy_frames,
    create_source_schema,
    session,
    source_url,
    table_counts,
    upsert_frames,
)


class StrictRejectError(RuntimeError):
    """`--strict` and at least one row was rejected: nothing was loaded."""


@dataclass
class InitDbSummary:
    loaded: dict[str, int] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    rejects_file: Path | None = None
    table_rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def truncate_all(cur) -> None:
    names = ", ".join(t.qualified for t in contract.TABLES.values())
    cur.execute(f"TRUNCATE {names}")


def init_db(
    settings: Settings, csv_dir: Path, *, replace: bool = False, strict: bool = False
) -> InitDbSummary:
    """Create schema `amazon` and load `<table>.csv` files from `csv_dir` with COPY.

    Headers of every file are checked before anything is read or loaded. Invalid rows go to
    `<data>/rejects/init-db-<time>.csv` with file, line, column and reason; valid rows of all
    tables land in one transaction (none at all under `strict` when any row is rejected).

    Every file is read and validated before the one transaction opens, so an error leaves
    the tables exactly as they were.

    Raises:
        CsvHeaderError: a file is empty or its header does not match the contract (nothing
            loaded).
        CsvFormatError: a file cannot be split into records (an unbalanced or stray quote, a
            corrupt gzip stream); the message names file, line and column (nothing loaded).
        StrictRejectError: `strict` and some rows were rejected (nothing loaded).
    """
    started = time.perf_counter()
    plan = csv_import.find_files(csv_dir)
    validated = [csv_import.read_and_validate(tf) for tf in plan.files]
    summary = InitDbSummary()
    for v in validated:
        summary.read[v.table.name] = v.rows_read
        summary.rejected[v.table.name] = v.rejected
    all_rejects = [v.rejects for v in validated if v.rejects.height]
    if all_rejects:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = settings.data_path / "rejects" / f"init-db-{stamp}.csv"
        buf = pl.concat(all_rejects)
        atomic_write_bytes(path, buf.write_csv().encode())
        summary.rejects_file = path
    if strict and all_rejects:
        raise StrictRejectError(
            f"--strict: {sum(summary.rejected.values())} row(s) rejected, nothing loaded; "
            f"see {summary.rejects_file}"
        )
    url = source_url(settings)
    with session(url, settings) as conn, conn.cursor() as cur:
        create_source_schema(cur)
        if replace:
            truncate_all(cur)
        for v in validated:
            loader = copy_frames if replace else upsert_frames
            summary.loaded[v.table.name] = loader(cur, v.table, [v.valid])
        summary.table_rows = table_counts(cur)
    summary.seconds = time.perf_counter() - started
    return summary


def load_chunks(
    settings: Settings,
    chunks: Iterable[dict[str, pl.DataFrame]],
    *,
    replace: bool = False,
    upsert: bool = True,
) -> dict[str, int]:
    """Load generated or imported chunks (table -> frame) in one transaction.

    With `upsert`, each table goes through a staging table and `ON CONFLICT` so a key seen again
    is updated (re-running an import is idempotent); otherwise plain COPY, the fastest path,
    for tables known to be empty (after `replace`).
    """
    url = source_url(settings)
    loaded = {name: 0 for name in contract.TABLES}
    with session(url, settings) as conn, conn.cursor() as cur:
        create_source_schema(cur)
        if replace:
            truncate_all(cur)
        for chunk in chunks:
            if upsert and not replace and "review" in chunk and chunk["review"].height:
                # A re-imported review's images are replaced, not merged with stale ones.
                cur.execute(
                    f"DELETE FROM {contract.REVIEW_IMAGES.qualified} WHERE review_id = ANY(%s)",
                    (chunk["review"]["review_id"].to_list(),),
                )
            for name, frame in chunk.items():
                t = contract.table(name)
                if upsert and not replace:
                    loaded[name] += upsert_frames(cur, t, [frame], keep_existing_values=True)
                else:
                    loaded[name] += copy_frames(cur, t, [frame])
    return loaded


def source_is_empty(settings: Settings) -> bool:
    url = source_url(settings)
    with session(url, settings) as conn, conn.cursor() as cur:
        create_source_schema(cur)
        cur.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {contract.REVIEW.qualified})")
        return bool(cur.fetchone()[0])


def write_csv_chunks(out_dir: Path, chunks: Iterable[dict[str, pl.DataFrame]]) -> dict[str, int]:
    """Write chunks as `<table>.csv` files with contract headers (init-db's input format)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {name: 0 for name in contract.TABLES}
    handles = {name: open(out_dir / f"{name}.csv.tmp", "wb") for name in contract.TABLES}
    try:
        for name, fh in handles.items():
            fh.write((",".join(contract.table(name).column_names) + "\n").encode())
        for chunk in chunks:
            for name, frame in chunk.items():
                frame.write_csv(handles[name], include_header=False, datetime_format=CSV_DATETIME)
                rows[name] += frame.height
    finally:
        for fh in handles.values():
            fh.close()
    for name in handles:
        (out_dir / f"{name}.csv.tmp").replace(out_dir / f"{name}.csv")
    return rows
