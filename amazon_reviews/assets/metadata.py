"""Dagster metadata for lake tables: row count, column schema, URI (wiring helpers only)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from amazon_reviews.io.lake import TableWritten


def table_metadata(written: TableWritten, final_uri: str, **extra: Any) -> dict[str, Any]:
    """The standard metadata of one written table."""
    return {
        "dagster/row_count": written.rows,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, type_) for name, type_ in written.columns.items()]
        ),
        "dagster/uri": dg.MetadataValue.path(final_uri),
        "bytes": written.bytes,
        "sha256": written.sha256,
        **extra,
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A small markdown table from a list of dicts (same keys)."""
    if not rows:
        return "_none_"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
