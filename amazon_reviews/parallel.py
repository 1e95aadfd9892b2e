"""Ordered, bounded parallel map over chunks, for the Polars work of silver and gold.

Polars releases the GIL while it computes, so two threads on two cores clean two chunks at
once. Results come back in input order, and at most `threads` chunks are in flight, so memory
stays bounded by a few chunks whatever the table size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def ordered_map(fn: Callable[[In], Out], items: Iterable[In], threads: int) -> Iterator[Out]:
    """`map(fn, items)` on `threads` threads, in order, with at most `threads` items pending."""
    if threads <= 1:
        yield from map(fn, items)
        return
    pending: deque[Future[Out]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="chunk") as pool:
        try:
            for item in items:
                if len(pending) >= threads:
                    yield pending.popleft().result()
                pending.append(pool.submit(fn, item))
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
