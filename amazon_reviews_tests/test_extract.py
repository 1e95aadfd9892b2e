"""Bronze extraction on the real embedded PostgreSQL: the source changing during an extract (the
Parquet encoders of earlier tables still running while later tables are read) never leaks into
bronze, and a failure on either side stops every thread and leaves no file."""

from __future__ import annotations

import errno
import threading
import time

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amazon_reviews import contract, generate
from amazon_reviews.config import Settings
from amazon_reviews.io import lake as lake_module
from amazon_reviews.io.extract import _conform, arrow_schema, select_sql
from amazon_reviews.io.lake import Lake
from amazon_reviews.io.postgres import SourceSchemaMissing, libpq_url, table_counts
from amazon_reviews.io.source_load import load_chunks
from amazon_reviews.layers import extract_bronze

# Changes made while the extract runs: rows deleted, updated and inserted in every table.
CHANGES = {
    "product": [
        "DELETE FROM amazon.product WHERE parent_asin IN "
        "(SELECT parent_asin FROM amazon.product ORDER BY parent_asin LIMIT 5)",
        "UPDATE amazon.product SET title = 'changed' WHERE parent_asin IN "
        "(SELECT parent_asin FROM amazon.product ORDER BY parent_asin DESC LIMIT 5)",
        "INSERT INTO amazon.product (parent_asin, title) VALUES ('NEW-P', 'new')",
    ],
    "customer": [
        "DELETE FROM amazon.customer WHERE customer_id IN "
        "(SELECT customer_id FROM amazon.customer ORDER BY customer_id LIMIT 5)",
        "INSERT INTO amazon.customer (customer_id) VALUES ('NEW-C')",
    ],
    "buyer": [
        "DELETE FROM amazon.buyer WHERE buyer_id IN "
        "(SELECT buyer_id FROM amazon.buyer ORDER BY buyer_id LIMIT 7)",
        "UPDATE amazon.buyer SET quantity = quantity + 1",
    ],
    "review": [
        "DELETE FROM amazon.review WHERE review_id IN "
        "(SELECT review_id FROM amazon.review ORDER BY review_id LIMIT 9)",
        "UPDATE amazon.review SET helpful_vote = helpful_vote + 100, text = 'changed'",
        "INSERT INTO amazon.review (review_id, text) VALUES ('NEW-R', 'new')",
    ],
    "review_images": ["DELETE FROM amazon.review_images"],
}
LOCKED = "buyer"  # the extract is held on this table while the source changes


def _load(settings: Settings, n: int) -> None:
    load_chunks(settings, generate.generate(n, seed=5), replace=True, upsert=False)


def _read_source(url: str) -> dict[str, pa.Table]:
    """Every table as one plain single-connection read gives it (the extraction query)."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(libpq_url(url)) as conn, conn.cursor() as cur:
        tables = {}
        for t in contract.TABLES.values():
            schema = arrow_schema(t)
            cur.execute(select_sql(t))
            batches = [_conform(b, schema) for b in cur.fetch_record_batch()]
            tables[t.name] = pa.Table.from_batches(batches, schema=schema)
        conn.rollback()
    return tables


def _counts(url: str) -> dict[str, int]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        counts = table_counts(cur)
    conn.close()
    return counts


def _wait_for_lock(url: str, table: str, worker: threading.Thread) -> None:
    """Until a backend of the extract waits for the lock on `table`."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        deadline = time.monotonic() + 60
        with conn.cursor() as cur:
            while True:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE %s AND pid <> pg_backend_pid()",
                    (f"%{table}%",),
                )
                if cur.fetchone()[0]:
                    return
                assert worker.is_alive(), "the extract ended before reaching the lock"
                assert time.monotonic() < deadline, f"the extract never reached {table}"
                time.sleep(0.05)
    finally:
        conn.close()


def _encoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("parquet-")]


def test_extract_is_one_snapshot_while_the_source_changes(
    settings: Settings, source_url: str
) -> None:
    _load(settings, 400)
    expected = _read_source(source_url)
    before = _counts(source_url)
    lake = Lake(settings.data_path)
    blocker = psycopg2.connect(source_url)
    changer = psycopg2.connect(source_url)
    changer.autocommit = True
    result: list = []
    errors: list[BaseException] = []

    def extract() -> None:
        try:
            result.append(extract_bronze(lake, settings, source_url, "changing"))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=extract)
    try:
        with blocker.cursor() as cur:
            cur.execute(f"LOCK TABLE amazon.{LOCKED} IN ACCESS EXCLUSIVE MODE")
        worker.start()
        # The snapshot is taken; tables before LOCKED are read (their encoders may still run),
        # the others are not yet. Change all of them, LOCKED in the lock holder's transaction.
        _wait_for_lock(source_url, LOCKED, worker)
        with changer.cursor() as cur:
            for name, statements in CHANGES.items():
                if name != LOCKED:
                    for sql in statements:
                        cur.execute(sql)
        with blocker.cursor() as cur:
            for sql in CHANGES[LOCKED]:
                cur.execute(sql)
        blocker.commit()
        worker.join(120)
    finally:
        blocker.rollback()
        blocker.close()
        changer.close()
    assert not worker.is_alive()
    assert not errors, errors
    writer, info = result[0]
    after = _counts(source_url)
    assert all(after[name] != before[name] for name in ("product", "review", "review_images"))

    # Counted in the snapshot, and bronze holds exactly those rows: the same values, in the
    # same order, as a single read of the source before it changed.
    assert info.source_rows == before
    for name, table in contract.TABLES.items():
        assert writer.tables[name].rows == before[name]
        got = pq.read_table(lake.batch_dir("bronze", "changing") / f"{name}.parquet")
        assert got.schema.equals(arrow_schema(table)), name
        assert got.equals(expected[name]), name
    assert lake.verify("bronze", "changing") == []
    assert not _encoder_threads()


def test_encoder_failure_stops_the_extract_with_no_thread_or_file_left(
    settings: Settings, source_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(settings, 300)
    lake = Lake(settings.data_path)
    real_write = lake_module.HashingFile.write
    failed: list[str] = []

    def first_file_full(self, data: bytes) -> int:
        # The first table's file fails at its first write: the reader is on the next tables by
        # the time its encoder reports it.
        if not failed:
            failed.append(self._fh.name)
        if self._fh.name == failed[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(lake_module.HashingFile, "write", first_file_full)
    with pytest.raises(OSError, match="No space left on device"):
        extract_bronze(lake, settings, source_url, "full")
    assert failed
    assert not _encoder_threads()
    assert not lake.batch_dir("bronze", "full").exists()
    assert not list((settings.data_path / "bronze" / ".staging").glob("*"))


def test_reader_failure_on_a_later_table_stops_the_encoders_of_earlier_ones(
    settings: Settings, source_url: str
) -> None:
    _load(settings, 300)
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE amazon.review_images DROP COLUMN attachment_type")
    conn.close()
    lake = Lake(settings.data_path)
    with pytest.raises(SourceSchemaMissing, match="attachment_type"):
        extract_bronze(lake, settings, source_url, "no-column")
    assert not _encoder_threads()
    assert not lake.batch_dir("bronze", "no-column").exists()
    assert not list((settings.data_path / "bronze" / ".staging").glob("*"))


def test_bronze_dictionary_encodes_only_columns_with_repeated_values(
    settings: Settings, source_url: str
) -> None:
    _load(settings, 300)
    lake = Lake(settings.data_path)
    extract_bronze(lake, settings, source_url, "encodings")
    meta = pq.read_metadata(lake.batch_dir("bronze", "encodings") / "review.parquet")
    names = meta.schema.names
    chunk = meta.row_group(0)
    dictionary = {n: chunk.column(names.index(n)).has_dictionary_page for n in names}
    # The key and the timestamps are (nearly) unique: plain; the others keep a dictionary.
    assert not dictionary["review_id"]
    assert not dictionary["created_at"] and not dictionary["updated_at"]
    assert dictionary["asin"] and dictionary["rating"] and dictionary["customer_id"]
