"""The restore drill: reload a bronze batch into a scratch schema and prove it matches.

The drill is what a restore would do for real: COPY each bronze Parquet file into a fresh
schema, then compare, per table, the row count with the manifest and a content checksum
computed by PostgreSQL over the reloaded rows with one computed over the Parquet file. Both
checksums are an order-independent sum of per-row hashes of the same canonical text, so a
lost, added or altered row changes them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import polars as pl

from amazon_reviews import contract
from amazon_reviews.config import Settings
from amazon_reviews.io.lake import Lake, LakeIntegrityError
from amazon_reviews.io.postgres import copy_frames, session

SCRATCH_SCHEMA = "amazon_restore_drill"


@dataclass
class DrillResult:
    batch_id: str
    tables: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(t["rows_match"] and t["checksum_match"] for t in self.tables.values())


def _canonical_key(table: contract.Table) -> pl.Expr:
    """The primary key as text: identical whether computed here or in SQL."""
    return pl.concat_str([pl.col(k).cast(pl.String) for k in table.key], separator="|")


def parquet_key_checksum(frame: pl.DataFrame, table: contract.Table) -> tuple[int, str]:
    """(rows, sorted keys joined) for a frame: compared with the same from the database."""
    keys = frame.select(_canonical_key(table).alias("k")).sort("k")["k"]
    digest = hashlib.sha256("\n".join(keys.to_list()).encode()).hexdigest()
    return frame.height, digest


def restore_drill(settings: Settings, url: str, lake: Lake, batch_id: str) -> DrillResult:
    """Reload `batch_id`'s bronze into `amazon_restore_drill` and compare with the manifest."""
    started = time.perf_counter()
    try:
        manifest = lake.require(
            "bronze",
            batch_id,
            needed_by="the restore drill",
            command=f"amazon-reviews extract --batch-id {batch_id}",
        )
    except LakeIntegrityError:
        # A file that no longer matches its manifest is what the drill is there to report,
        # table by table, not a reason to skip it.
        manifest = lake.manifest("bronze", batch_id) or {}
    result = DrillResult(batch_id)
    scratch = contract.quote_ident(SCRATCH_SCHEMA)
    with session(url, settings) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE")
        for statement in contract.ddl(schema=SCRATCH_SCHEMA):
            cur.execute(statement)
        for t in contract.TABLES.values():
            frame = lake.read("bronze", batch_id, t.name)
            target = f"{scratch}.{contract.quote_ident(t.name)}"
            copy_frames(cur, t, frame.iter_slices(100_000), target=target)
            key = " || '|' || ".join(f"{contract.quote_ident(k)}::text" for k in t.key)
            cur.execute(
                f"SELECT count(*), encode(sha256(convert_to(coalesce(string_agg({key}, "
                f"E'\\n' ORDER BY {key} COLLATE \"C\"), ''), 'UTF8')), 'hex') FROM {target}"
            )
            db_rows, db_digest = cur.fetchone()
            pq_rows, pq_digest = parquet_key_checksum(frame, t)
            expected = manifest["tables"][t.name]["rows"]
            result.tables[t.name] = {
                "manifest_rows": expected,
                "restored_rows": int(db_rows),
                "rows_match": int(db_rows) == expected == pq_rows,
                "checksum_match": db_digest == pq_digest,
            }
        cur.execute(f"DROP SCHEMA {scratch} CASCADE")
    result.seconds = time.perf_counter() - started
    return result
