"""The source contract: schema `amazon`, its tables, columns, types and keys.

This module is the single source of truth for the source database. The DDL, the CSV header
checks of `init-db`, the generator, the importers, the bronze extraction and the bronze schema
check are all derived from it; no other module spells a source column or a SQL type.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

SOURCE_SCHEMA = "amazon"
GOLD_SCHEMA = "amazon_gold"


@dataclass(frozen=True)
class Column:
    """One source column: its name, its PostgreSQL type and the Polars type it is read as."""

    name: str
    pg_type: str
    dtype: pl.DataType

    @property
    def kind(self) -> str:
        """A coarse kind used by validators: text, int, decimal, bool, timestamp, json."""
        base = self.pg_type.split("(")[0]
        return {
            "text": "text",
            "int": "int",
            "bigint": "int",
            "numeric": "decimal",
            "boolean": "bool",
            "timestamptz": "timestamp",
            "jsonb": "json",
        }[base]


@dataclass(frozen=True)
class Table:
    """One source table: ordered columns and its primary key."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})

    @property
    def qualified(self) -> str:
        return f"{quote_ident(SOURCE_SCHEMA)}.{quote_ident(self.name)}"


UTC_TS = pl.Datetime("us", "UTC")


def _text(name: str) -> Column:
    return Column(name, "text", pl.String())


def _ts(name: str) -> Column:
    return Column(name, "timestamptz", UTC_TS)


PRODUCT = Table(
    "product",
    (
        _text("parent_asin"),
        _text("title"),
        _text("main_category"),
        _text("store"),
        Column("price", "numeric(10,2)", pl.Decimal(10, 2)),
        Column("average_rating", "numeric(2,1)", pl.Decimal(2, 1)),
        Column("rating_number", "int", pl.Int32()),
        Column("categories", "jsonb", pl.String()),
        Column("features", "jsonb", pl.String()),
        Column("details", "jsonb", pl.String()),
        _ts("updated_at"),
    ),
    ("parent_asin",),
)

CUSTOMER = Table(
    "customer",
    (
        _text("customer_id"),
        _text("display_name"),
        _text("country"),
        _ts("created_at"),
        _ts("updated_at"),
    ),
    ("customer_id",),
)

BUYER = Table(
    "buyer",
    (
        Column("buyer_id", "bigint", pl.Int64()),
        _text("customer_id"),
        _text("asin"),
        _text("parent_asin"),
        _ts("purchased_at"),
        Column("quantity", "int", pl.Int32()),
        Column("unit_price", "numeric(10,2)", pl.Decimal(10, 2)),
    ),
    ("buyer_id",),
)

REVIEW = Table(
    "review",
    (
        _text("review_id"),
        _text("customer_id"),
        _text("asin"),
        _text("parent_asin"),
        Column("rating", "numeric(3,1)", pl.Decimal(3, 1)),
        _text("title"),
        _text("text"),
        Column("helpful_vote", "int", pl.Int32()),
        Column("verified_purchase", "boolean", pl.Boolean()),
        _ts("created_at"),
        _ts("updated_at"),
    ),
    ("review_id",),
)

REVIEW_IMAGES = Table(
    "review_images",
    (
        _text("review_id"),
        Column("ordinal", "int", pl.Int32()),
        _text("small_image_url"),
        _text("medium_image_url"),
        _text("large_image_url"),
        _text("attachment_type"),
    ),
    ("review_id", "ordinal"),
)

# Load order matters only for humans reading logs; there are no foreign keys (orphans are
# a content problem that silver quarantines, not something the source refuses).
TABLES: dict[str, Table] = {t.name: t for t in (PRODUCT, CUSTOMER, BUYER, REVIEW, REVIEW_IMAGES)}


def table(name: str) -> Table:
    """Return the contract table called `name`, or fail naming the known tables."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}") from None


def quote_ident(name: str) -> str:
    """Quote a SQL identifier. Identifiers only ever come from this contract."""
    return '"' + name.replace('"', '""') + '"'


def create_table_sql(t: Table, *, schema: str = SOURCE_SCHEMA) -> str:
    """The CREATE TABLE statement for one contract table in `schema`."""
    cols = ",\n    ".join(f"{quote_ident(c.name)} {c.pg_type}" for c in t.columns)
    key = ", ".join(quote_ident(k) for k in t.key)
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_ident(schema)}.{quote_ident(t.name)} (\n"
        f"    {cols},\n    PRIMARY KEY ({key})\n)"
    )


def ddl(*, schema: str = SOURCE_SCHEMA) -> list[str]:
    """Every statement that creates the source schema and its tables, in order."""
    return [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}"] + [
        create_table_sql(t, schema=schema) for t in TABLES.values()
    ]
