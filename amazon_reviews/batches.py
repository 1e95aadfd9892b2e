"""Batch identifiers: validation, generation and parsing (no Dagster, no IO)."""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime

BATCH_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,63}$")
_GENERATED_FORMAT = "%Y%m%dT%H%M%SZ"


class InvalidBatchId(ValueError):
    """A batch id that could escape the lake folder or is otherwise malformed."""


class UnknownBatch(LookupError):
    """A batch id with no partition; the message lists the nearest existing ids."""


def validate_batch_id(batch_id: str) -> str:
    """Return `batch_id` if it matches `^[0-9A-Za-z][0-9A-Za-z_.-]{0,63}$`, else raise."""
    if not isinstance(batch_id, str) or not BATCH_ID_RE.match(batch_id) or ".." in batch_id:
        raise InvalidBatchId(
            f"invalid batch id {batch_id!r}: expected 1-64 characters of letters, digits, "
            "'_', '.', '-', starting with a letter or digit, and no '..' "
            "(generated ids look like 20260101T030000Z)"
        )
    return batch_id


def new_batch_id(now: datetime | None = None) -> str:
    """A batch id from a UTC time: `YYYYMMDDTHHMMSSZ`."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime(_GENERATED_FORMAT)


def batch_time_from_id(batch_id: str) -> datetime | None:
    """The UTC time encoded in a generated batch id, or None for a free-form id."""
    try:
        return datetime.strptime(batch_id, _GENERATED_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def unknown_batch(batch_id: str, known: list[str]) -> UnknownBatch:
    """An error naming the unknown id and the closest known ones."""
    near = difflib.get_close_matches(batch_id, known, n=3, cutoff=0.3) or sorted(known)[-3:]
    hint = f"; nearest existing: {', '.join(near)}" if near else "; no batch exists yet"
    return UnknownBatch(
        f"unknown batch {batch_id!r}{hint}. Create one with `amazon-reviews extract` "
        "or `amazon-reviews batches add ID`"
    )
