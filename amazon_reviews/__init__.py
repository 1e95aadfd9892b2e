"""Amazon Reviews data platform: a Dagster medallion lake built from the `amazon` schema."""

import os

# Polars' allocator (jemalloc) keeps freed pages for ten seconds by default; silver and gold
# free a chunk's memory every fraction of a second, so without this the process keeps the
# high-water mark of every chunk it has seen. Read when Polars loads, so it is set first.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
