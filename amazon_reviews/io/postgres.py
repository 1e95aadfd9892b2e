"""PostgreSQL access: URLs, connections with retries, the source DDL, and COPY loads.

Every connection to the source or to the instance database goes through `connect()`, so
TLS policy, timeouts, retries and password masking are applied in one place.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import polars as pl
import psycopg2
import psycopg2.extensions

from amazon_reviews import contract
from amazon_reviews.config import Settings, mask_text, mask_url
from amazon_reviews.io.embedded import INSTANCE_DB, SOURCE_DB, EmbeddedServer

log = logging.getLogger(__name__)
T = TypeVar("T")

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


class SourceUnavailable(ConnectionError):
    """The database could not be reached after every retry; the message holds no password."""


class SourceSchemaMissing(RuntimeError):
    """A contract table is missing from the source database."""


def embedded(settings: Settings) -> EmbeddedServer:
    return EmbeddedServer(settings.data_path, port=settings.embedded.port)


def _embedded_url(settings: Settings, database: str, start: bool) -> str:
    server = embedded(settings)
    if start:
        return server.ensure_running().url(database)
    info = server.status()
    if info is None:
        raise SourceUnavailable(
            f"the embedded PostgreSQL ({server.pgdata}) is not running; "
            "start it with `amazon-reviews db up`"
        )
    return info.url(database)


def source_url(settings: Settings, *, start: bool = True) -> str:
    """The source database URL: `NEON_DB_URL`, else the embedded server (started on demand
    unless `start` is False: probes must see a stopped server as down, not restart it)."""
    if settings.neon_db_url:
        return with_tls(settings.neon_db_url, settings.source.sslmode)
    return _embedded_url(settings, SOURCE_DB, start)


def instance_url(settings: Settings, *, start: bool = True) -> str:
    """The Dagster instance storage URL (`postgresql+psycopg2://`), embedded when unset."""
    if settings.dagster_pg_url:
        url = with_tls(settings.dagster_pg_url, settings.source.sslmode)
    else:
        url = _embedded_url(settings, INSTANCE_DB, start)
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed.
    scheme, _, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else url


def libpq_url(url: str) -> str:
    """A URL libpq accepts: no SQLAlchemy driver suffix in the scheme."""
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


def with_tls(url: str, forced: str | None = None) -> str:
    """Require TLS for non-local hosts unless the URL or the settings say otherwise."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if forced:
        query["sslmode"] = forced
    elif "sslmode" not in query and (parts.hostname or "") not in _LOCAL_HOSTS:
        query["sslmode"] = "require"
    return urlunsplit(parts._replace(query=urlencode(query)))


def retry(
    open_: Callable[[], T],
    url: str,
    settings: Settings,
    *,
    errors: tuple[type[BaseException], ...],
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `open_` until it succeeds, with exponential backoff and jitter between attempts.

    Neon suspends idle databases; the first connection after a suspend can fail while the
    compute starts, so a few retries ride out a cold start.

    Raises:
        SourceUnavailable: after the last attempt, with the masked URL and the last error.
    """
    cfg = settings.source
    tries = attempts or cfg.connect_attempts
    delay = cfg.backoff_initial_s
    last: BaseException | None = None
    for attempt in range(1, tries + 1):
        try:
            return open_()
        except errors as exc:
            last = exc
            if attempt == tries:
                break
            wait = min(cfg.backoff_max_s, delay) * (0.5 + random.random() / 2)
            log.warning(
                "connection to %s failed (attempt %d/%d), retrying in %.1fs: %s",
                mask_url(url),
                attempt,
                tries,
                wait,
                mask_text(str(exc).strip()),
            )
            sleep(wait)
            delay *= 2
    raise SourceUnavailable(
        f"cannot connect to {mask_url(url)} after {tries} attempt(s): "
        f"{mask_text(str(last).strip())}"
    )


def connect(
    url: str, settings: Settings, *, attempts: int | None = None
) -> psycopg2.extensions.connection:
    """Open a psycopg2 connection (UTF-8, connect timeout), retried as `retry` does."""

    def open_() -> psycopg2.extensions.connection:
        conn = psycopg2.connect(
            libpq_url(url), connect_timeout=max(1, round(settings.source.connect_timeout_s))
        )
        conn.set_client_encoding("UTF8")
        return conn

    return retry(open_, url, settings, errors=(psycopg2.OperationalError,), attempts=attempts)


@contextmanager
def session(url: str, settings: Settings, **kwargs) -> Iterator[psycopg2.extensions.connection]:
    """A connection that commits on success, rolls back on error and always closes."""
    conn = connect(url, settings, **kwargs)
    try:
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def create_source_schema(cur: psycopg2.extensions.cursor) -> None:
    """Create schema `amazon` and its tables from the contract (idempotent)."""
    for statement in contract.ddl():
        cur.execute(statement)


def missing_tables(cur: psycopg2.extensions.cursor) -> list[str]:
    """Contract tables absent from schema `amazon` (looked up by schema, not `search_path`)."""
    cur.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        (contract.SOURCE_SCHEMA,),
    )
    present = {r[0] for r in cur.fetchall()}
    return [t for t in contract.TABLES if t not in present]


def column_drift(cur: psycopg2.extensions.cursor) -> dict[str, list[str]]:
    """Per table, the differences between the live columns and the contract, in words."""
    cur.execute(
        "SELECT table_name, column_name, format_type(a.atttypid, a.atttypmod) "
        "FROM information_schema.columns c "
        "JOIN pg_attribute a ON a.attrelid = format('%%I.%%I', c.table_schema, c.table_name)"
        "::regclass AND a.attname = c.column_name "
        "WHERE c.table_schema = %s ORDER BY c.ordinal_position",
        (contract.SOURCE_SCHEMA,),
    )
    live: dict[str, dict[str, str]] = {}
    for tname, cname, ctype in cur.fetchall():
        live.setdefault(tname, {})[cname] = ctype
    drift: dict[str, list[str]] = {}
    for t in contract.TABLES.values():
        cols = live.get(t.name)
        if cols is None:
            drift[t.name] = ["table missing"]
            continue
        problems = []
        for c in t.columns:
            if c.name not in cols:
                problems.append(f"column {c.name} missing")
            elif _normal_type(cols[c.name]) != _normal_type(c.pg_type):
                problems.append(f"column {c.name} is {cols[c.name]}, contract says {c.pg_type}")
        problems += [f"column {n} not in contract" for n in cols if n not in t.column_names]
        if problems:
            drift[t.name] = problems
    return drift


def _normal_type(pg_type: str) -> str:
    aliases = {
        "integer": "int",
        "int4": "int",
        "int8": "bigint",
        "timestamp with time zone": "timestamptz",
        "bool": "boolean",
    }
    t = pg_type.replace(" ", "") if pg_type.startswith("numeric") else pg_type
    return aliases.get(t, t)


def missing_tables_error(url: str, missing: list[str]) -> SourceSchemaMissing:
    """The error for absent contract tables: names them and the commands that create them."""
    return SourceSchemaMissing(
        f"source {mask_url(url)} lacks table(s) "
        f"{', '.join(f'{contract.SOURCE_SCHEMA}.{m}' for m in missing)}; "
        "create and load them with `amazon-reviews init-db --csv-dir DIR` "
        "or `amazon-reviews generate --reviews N --load`"
    )


def table_counts(cur: psycopg2.extensions.cursor) -> dict[str, int]:
    counts = {}
    for t in contract.TABLES.values():
        cur.execute(f"SELECT count(*) FROM {t.qualified}")
        counts[t.name] = int(cur.fetchone()[0])
    return counts


CSV_DATETIME = "%Y-%m-%d %H:%M:%S%.f%z"


def frame_to_csv(frame: pl.DataFrame) -> bytes:
    """Encode a frame for `COPY ... (FORMAT csv)`: nulls unquoted-empty, UTC timestamps."""
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False, datetime_format=CSV_DATETIME, null_value="")
    return buf.getvalue()


def copy_frames(
    cur: psycopg2.extensions.cursor,
    table: contract.Table,
    frames: Iterable[pl.DataFrame],
    *,
    target: str | None = None,
) -> int:
    """COPY frames (contract columns, in order) into `target` (default: the source table)."""
    return copy_csv(cur, target or table.qualified, table.column_names, frames)


def copy_csv(
    cur: psycopg2.extensions.cursor,
    target: str,
    columns: Sequence[str],
    frames: Iterable[pl.DataFrame],
) -> int:
    """COPY the `columns` of each frame into `target` (a qualified, quoted name), as CSV;
    return the rows copied."""
    cols = ", ".join(contract.quote_ident(c) for c in columns)
    sql = f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT csv)"
    rows = 0
    for frame in frames:
        if frame.height == 0:
            continue
        cur.copy_expert(sql, io.BytesIO(frame_to_csv(frame.select(columns))))
        rows += frame.height
    return rows


def upsert_frames(
    cur: psycopg2.extensions.cursor,
    table: contract.Table,
    frames: Iterable[pl.DataFrame],
    *,
    keep_existing_values: bool = False,
) -> int:
    """Load frames through a temporary table and upsert on the key, so re-runs are idempotent.

    With `keep_existing_values`, a null in the new row keeps the stored value: an importer's
    product stub (key only) never blanks a product loaded earlier from full metadata.
    """
    staging = contract.quote_ident(f"_stage_{table.name}")
    cur.execute(
        f"CREATE TEMP TABLE {staging} (LIKE {table.qualified} INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    rows = copy_frames(cur, table, frames, target=staging)
    key = ", ".join(contract.quote_ident(k) for k in table.key)

    def merged(c: str) -> str:
        col = contract.quote_ident(c)
        if keep_existing_values:
            return f"{col} = COALESCE(EXCLUDED.{col}, {table.qualified}.{col})"
        return f"{col} = EXCLUDED.{col}"

    updates = ", ".join(merged(c) for c in table.column_names if c not in table.key)
    cur.execute(
        f"INSERT INTO {table.qualified} SELECT * FROM {staging} "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )
    cur.execute(f"DROP TABLE {staging}")
    return rows
