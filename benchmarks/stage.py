"""One benchmark stage, alone in this process: `python -m benchmarks.stage NAME [options]`.

`benchmarks.run` starts one such process per stage and repeat, so no stage inherits another's
heap, caches or imports. The process prints one JSON line on stdout: the wall seconds of the
work only (`Clock`: imports, settings and server start-up excluded), the peak RSS and what the
stage checked. A stage whose output is wrong (fewer rows than the source, say) exits non-zero
instead of reporting a time, so a broken stage cannot post a fast figure.

Only the standard library is imported at module level: the `run` stage measures the RSS of its
own child, and on Linux a child inherits the peak RSS of the process that started it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

SEED = 42
BATCH = "bench"  # the batch id of the bench lake (bronze, silver, gold)
STAGES = ("copy_text", "copy_binary", "bronze", "silver", "gold", "run", "baseline_pandas")
HELPERS = ("setup", "generate_load")
_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


class StageError(RuntimeError):
    """A stage produced wrong output: its time must not be reported."""


def check(ok: bool, message: str) -> None:
    """Like assert, but not stripped by `python -O`."""
    if not ok:
        raise StageError(message)


def proc_status_kib(field: str) -> int:
    """`VmRSS` (now) or `VmHWM` (peak) of this process, in KiB.

    VmHWM is the high-water mark of this process image only; `ru_maxrss` also carries the peak
    of the process that forked it (Linux keeps it across exec), so it is reported but not used.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise StageError(f"/proc/self/status has no {field}")


class Profiler(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class Clock:
    """Times the work inside `with clock:` (and profiles exactly that region if asked)."""

    def __init__(self, profiler: Profiler | None = None) -> None:
        self.profiler = profiler
        self.seconds: float | None = None
        self.rss_before_kib = 0
        self._started = 0.0

    def __enter__(self) -> Clock:
        check(self.seconds is None, "a stage may time one region only")
        self.rss_before_kib = proc_status_kib("VmRSS")
        if self.profiler is not None:
            self.profiler.start()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
        if self.profiler is not None:
            self.profiler.stop()


@dataclass
class Context:
    data_dir: Path  # AMAZON_REVIEWS__DATA_DIR: the embedded server and the `run` stage's lake
    reviews: int
    expect: dict[str, int]  # source rows per table, as counted by `setup`
    keep: bool = False
    batch_id: str | None = None  # the `run` stage's fresh batch id

    @property
    def work(self) -> Path:
        """The bench's own folder: the bench lake, temp lakes, logs."""
        return self.data_dir / "bench"

    @property
    def lake_root(self) -> Path:
        return self.work / "lake"

    def temp_dir(self, prefix: str) -> Path:
        parent = self.work / "tmp"
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _settings(ctx: Context):
    from amazon_reviews.config import load_settings

    settings = load_settings()
    check(
        settings.data_path == ctx.data_dir.resolve(),
        f"settings point at {settings.data_path}, not {ctx.data_dir} "
        "(AMAZON_REVIEWS__DATA_DIR is not reaching the stage)",
    )
    check(
        not settings.neon_db_url,
        "NEON_DB_URL is set (environment or .env): the benchmark reloads and reads the source "
        "and must only ever touch its own embedded server; unset it to benchmark",
    )
    return settings


def _expect(ctx: Context) -> dict[str, int]:
    check(bool(ctx.expect), "no --expect row counts given (benchmarks.run passes them)")
    return ctx.expect


# --- helpers run by benchmarks.run, not benchmarks themselves ---------------------------------


def setup(ctx: Context, clock: Clock) -> dict[str, Any]:
    """Start the embedded server, count the source rows (which also warms the OS cache) and
    compute what `generate(N, seed=42)` would hold."""
    import hashlib

    import psycopg2

    from amazon_reviews import generate as gen
    from amazon_reviews.io.postgres import (
        embedded,
        libpq_url,
        missing_tables,
        source_url,
        table_counts,
    )

    settings = _settings(ctx)
    was_running = embedded(settings).status() is not None
    url = source_url(settings)
    conn = psycopg2.connect(libpq_url(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
            missing = missing_tables(cur)
            counts = {} if missing else table_counts(cur)
    finally:
        conn.close()
    plan = gen.plan(ctx.reviews, seed=SEED)
    expected = {
        "product": plan.products,
        "customer": plan.customers,
        "buyer": plan.buyers,
        "review": plan.reviews,
        "review_images": plan.images,
    }
    return {
        "rows": sum(counts.values()),
        "was_running": was_running,
        "server_version": version,
        "counts": counts,
        "expected": expected,
        "generator_sha256": hashlib.sha256(Path(gen.__file__).read_bytes()).hexdigest(),
    }


def generate_load(ctx: Context, clock: Clock) -> dict[str, Any]:
    """`load_chunks(settings, generate(N, seed=42), replace=True, upsert=False)`, timed."""
    from amazon_reviews.generate import generate
    from amazon_reviews.io.postgres import source_url
    from amazon_reviews.io.source_load import load_chunks

    settings = _settings(ctx)
    source_url(settings)  # server start-up is not part of the load
    with clock:
        loaded = load_chunks(settings, generate(ctx.reviews, seed=SEED), replace=True, upsert=False)
    check(loaded == _expect(ctx), f"loaded {loaded}, generate's plan says {ctx.expect}")
    return {"rows": sum(loaded.values()), "tables": loaded}


# --- the stages ---------------------------------------------------------------------------------


class NullSink:
    """A file-like sink for `copy_expert` that keeps only counts (and the binary framing)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.writes = 0
        self.head = b""
        self.tail = b""

    def write(self, data: bytes) -> int:
        if not self.head:
            self.head = bytes(data[:16])
        self.bytes += len(data)
        self.writes += 1
        self.tail = data
        return len(data)


def _copy(ctx: Context, clock: Clock, *, binary: bool) -> dict[str, Any]:
    """`COPY amazon.<t> TO STDOUT` of every table into a null sink: what the source can give."""
    import psycopg2

    from amazon_reviews import contract
    from amazon_reviews.io.postgres import libpq_url, source_url

    expect = _expect(ctx)
    url = libpq_url(source_url(_settings(ctx)))
    options = " (FORMAT binary)" if binary else ""
    sinks: dict[str, NullSink] = {}
    seconds: dict[str, float] = {}
    with clock:
        conn = psycopg2.connect(url)
        try:
            with conn.cursor() as cur:
                for t in contract.TABLES.values():
                    sink = sinks[t.name] = NullSink()
                    started = time.perf_counter()
                    cur.copy_expert(f"COPY {t.qualified} TO STDOUT{options}", sink)
                    seconds[t.name] = time.perf_counter() - started
        finally:
            conn.close()
    tables = {}
    for name, sink in sinks.items():
        if binary:
            check(
                sink.head.startswith(_BINARY_SIGNATURE) and sink.tail.endswith(b"\xff\xff"),
                f"COPY BINARY of {name}: no PGCOPY header or trailer",
            )
        else:
            # psycopg2 hands the sink one CopyData message per row; each text row ends in a
            # newline (newlines inside values are escaped), so messages count rows exactly.
            check(
                sink.writes == expect[name],
                f"COPY of {name} gave {sink.writes} rows, the source holds {expect[name]}",
            )
        tables[name] = {
            "rows": expect[name],
            "bytes": sink.bytes,
            "messages": sink.writes,
            "seconds": round(seconds[name], 4),
        }
    return {
        "rows": sum(expect.values()),
        "bytes": sum(s.bytes for s in sinks.values()),
        "tables": tables,
    }


def copy_text(ctx: Context, clock: Clock) -> dict[str, Any]:
    return _copy(ctx, clock, binary=False)


def copy_binary(ctx: Context, clock: Clock) -> dict[str, Any]:
    return _copy(ctx, clock, binary=True)


def bronze(ctx: Context, clock: Clock) -> dict[str, Any]:
    """`layers.extract_bronze` into a fresh lake, as `assets/bronze.py` calls it; the batch
    then replaces the bench lake's bronze (outside the timing) for `silver` to read."""
    # extract_snapshot imports the ADBC DB-API on its first call, which pulls in pyarrow.dataset
    # (and pandas, when installed: about 0.3 s); imports are not part of the timed work.
    import adbc_driver_postgresql.dbapi  # noqa: F401

    from amazon_reviews import contract
    from amazon_reviews.io.lake import Lake
    from amazon_reviews.io.postgres import source_url
    from amazon_reviews.layers import extract_bronze

    expect = _expect(ctx)
    settings = _settings(ctx)
    url = source_url(settings)
    tmp = ctx.temp_dir("bronze-")
    store = Lake(tmp)
    with clock:
        # The function the bronze asset calls (its MaterializeResult metadata aside).
        writer, info = extract_bronze(store, settings, url, BATCH)
    check(set(writer.tables) == set(contract.TABLES), f"bronze wrote {sorted(writer.tables)}")
    for name, written in writer.tables.items():
        check(
            written.rows == info.source_rows[name] == expect[name],
            f"bronze/{name} holds {written.rows} rows; the snapshot counted "
            f"{info.source_rows[name]}, the source holds {expect[name]}",
        )
    shared = Lake(ctx.lake_root).batch_dir("bronze", BATCH)
    shutil.rmtree(shared, ignore_errors=True)
    shared.parent.mkdir(parents=True, exist_ok=True)
    os.replace(store.batch_dir("bronze", BATCH), shared)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "rows": sum(w.rows for w in writer.tables.values()),
        "parquet_bytes": sum(w.bytes for w in writer.tables.values()),
        "tables": {n: {"rows": w.rows, "parquet_bytes": w.bytes} for n, w in writer.tables.items()},
        "durations_s": info.durations_s,
    }


def _drop(ctx: Context, layer: str) -> None:
    """Remove the bench lake's batch of `layer` (before the timing: the real run never replaces
    a batch of its own layer on the way)."""
    shutil.rmtree(ctx.lake_root / layer / f"batch={BATCH}", ignore_errors=True)


def silver(ctx: Context, clock: Clock) -> dict[str, Any]:
    """The bench lake's bronze to silver, as `assets/silver.py` does it."""
    from amazon_reviews import contract
    from amazon_reviews.io.lake import Lake
    from amazon_reviews.layers import transform_silver

    expect = _expect(ctx)
    settings = _settings(ctx)
    store = Lake(ctx.lake_root)
    _drop(ctx, "silver")
    with clock:
        # The function the silver asset calls (its MaterializeResult metadata aside).
        done, rejects = transform_silver(store, settings, BATCH)
    writer, bronze = done.writer, done.upstream
    bronze_rows = {t: bronze["tables"][t]["rows"] for t in contract.TABLES}
    check(bronze_rows == expect, f"the bench bronze holds {bronze_rows}, the source {expect}")
    for t in contract.TABLES:
        kept, rejected = writer.tables[t].rows, writer.tables[f"rejected/{t}"].rows
        check(
            kept + rejected == bronze_rows[t],
            f"silver/{t}: {kept} kept + {rejected} rejected != {bronze_rows[t]} bronze rows",
        )
    return {
        "rows": sum(bronze_rows.values()),
        "parquet_bytes": sum(w.bytes for w in writer.tables.values()),
        "tables": {n: w.rows for n, w in sorted(writer.tables.items())},
        "rejects": rejects,
    }


def gold(ctx: Context, clock: Clock) -> dict[str, Any]:
    """The bench lake's silver to gold, as `assets/gold.py` `fact_reviews` does it (serving to
    PostgreSQL, `fact_reviews_pg`, is left to the `run` stage)."""
    from amazon_reviews.assets.metadata import markdown_table
    from amazon_reviews.io.lake import Lake
    from amazon_reviews.layers import model_gold
    from amazon_reviews.transforms.gold import score_histogram, score_mean, top_products

    settings = _settings(ctx)
    store = Lake(ctx.lake_root)
    _drop(ctx, "gold")
    with clock:
        # The function the gold asset calls, plus the metadata the asset computes.
        done, fact = model_gold(store, settings, BATCH)
        written = done.writer.tables["fact_reviews"]
        mean = score_mean(fact)
        markdown_table(score_histogram(fact).to_dicts())
        markdown_table(top_products(fact).to_dicts())
    silver = done.upstream
    enriched = silver["tables"]["review_enriched"]["rows"]
    check(
        written.rows == enriched,
        f"gold/fact_reviews holds {written.rows} rows, silver/review_enriched {enriched}",
    )
    check(
        silver["tables"]["review"]["rows"] + silver["tables"]["rejected/review"]["rows"]
        == _expect(ctx)["review"],
        "the bench silver does not come from the current source",
    )
    return {"rows": enriched, "parquet_bytes": written.bytes, "score_mean": round(mean, 4)}


def run(ctx: Context, clock: Clock) -> dict[str, Any]:
    """The full CLI, `amazon-reviews run --batch-id ID`, as a child process: Dagster start-up,
    every layer with its checks and serving. Peak RSS is the child's (`os.wait4`)."""
    expect = _expect(ctx)
    batch = ctx.batch_id
    check(bool(batch), "the run stage needs --batch-id (a fresh one per repeat)")
    script = Path(sys.executable).with_name("amazon-reviews")
    command = (
        [str(script), "run", "--batch-id", batch]
        if script.exists()
        else [sys.executable, "-m", "amazon_reviews.cli", "run", "--batch-id", batch]
    )
    logs = ctx.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"run-{batch}.log"
    with open(log_path, "wb") as log:
        with clock:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    output = log_path.read_text(errors="replace")
    tail = "\n".join(output.splitlines()[-15:])
    check(child.returncode == 0, f"`{' '.join(command)}` exited {child.returncode}:\n{tail}")
    manifests = {}
    for layer in ("bronze", "silver", "gold"):
        path = ctx.data_dir / layer / f"batch={batch}" / "manifest.json"
        check(path.exists(), f"the run left no {layer} manifest ({path})")
        manifests[layer] = json.loads(path.read_text())
        check(manifests[layer].get("status") == "complete", f"{layer} batch {batch} incomplete")
    check(
        manifests["bronze"]["rows"] == expect,
        f"the run's bronze holds {manifests['bronze']['rows']}, the source {expect}",
    )
    reported = re.search(r"\) succeeded in ([0-9.]+)s", output)
    if not ctx.keep:
        for layer in ("bronze", "silver", "gold"):
            shutil.rmtree(ctx.data_dir / layer / f"batch={batch}", ignore_errors=True)
            (ctx.data_dir / layer / ".locks" / f"batch={batch}.lock").unlink(missing_ok=True)
        log_path.unlink(missing_ok=True)
    return {
        "rows": sum(expect.values()),
        "peak_rss_kib": usage.ru_maxrss,
        "batch_id": batch,
        "dagster_run_seconds": float(reported.group(1)) if reported else None,
        "gold_rows": manifests["gold"]["rows"],
    }


def baseline_pandas(ctx: Context, clock: Clock) -> dict[str, Any]:
    """The naive baseline: `pandas.read_sql` of the review table, then `to_parquet`."""
    import pandas as pd
    import pyarrow.parquet  # noqa: F401 - to_parquet imports it on first use
    import sqlalchemy as sa
    import sqlalchemy.dialects.postgresql.psycopg2

    from amazon_reviews.io.postgres import libpq_url, source_url

    expect = _expect(ctx)
    url = "postgresql+psycopg2://" + libpq_url(source_url(_settings(ctx))).split("://", 1)[1]
    tmp = ctx.temp_dir("pandas-")
    path = tmp / "review.parquet"
    with clock:
        engine = sa.create_engine(url)
        try:
            df = pd.read_sql("SELECT * FROM amazon.review", engine)
        finally:
            engine.dispose()
        df.to_parquet(path)
    rows = len(df)
    size = path.stat().st_size
    shutil.rmtree(tmp, ignore_errors=True)
    check(rows == expect["review"], f"pandas read {rows} reviews, the source holds {expect}")
    return {"rows": rows, "parquet_bytes": size}


STAGE_FUNCS: dict[str, Callable[[Context, Clock], dict[str, Any]]] = {
    "setup": setup,
    "generate_load": generate_load,
    "copy_text": copy_text,
    "copy_binary": copy_binary,
    "bronze": bronze,
    "silver": silver,
    "gold": gold,
    "run": run,
    "baseline_pandas": baseline_pandas,
}


def run_stage(name: str, ctx: Context, clock: Clock) -> dict[str, Any]:
    """Run one stage in this process; the result as `benchmarks.run` reads it."""
    os.environ["AMAZON_REVIEWS__DATA_DIR"] = str(ctx.data_dir)
    detail = STAGE_FUNCS[name](ctx, clock)
    if name != "setup":
        check(clock.seconds is not None, f"stage {name} did not time its work")
    self_peak = proc_status_kib("VmHWM")
    return {
        "stage": name,
        "seconds": clock.seconds,
        "rows": detail.pop("rows"),
        "peak_rss_kib": detail.pop("peak_rss_kib", self_peak),
        "self_peak_rss_kib": self_peak,
        "rss_before_kib": clock.rss_before_kib,
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "detail": detail,
    }


def context_parser(**kwargs: Any) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(**kwargs)
    p.add_argument("--data-dir", type=Path, required=True, help="the benchmark's data folder")
    p.add_argument("--reviews", type=int, required=True, help="reviews in the source")
    p.add_argument("--expect", default="{}", help="JSON: table -> source rows")
    p.add_argument("--batch-id", help="the run stage's fresh batch id")
    p.add_argument("--keep", action="store_true", help="keep what the stage wrote")
    return p


def context_from(args: argparse.Namespace) -> Context:
    return Context(
        data_dir=args.data_dir.resolve(),
        reviews=args.reviews,
        expect=json.loads(args.expect),
        keep=args.keep,
        batch_id=args.batch_id,
    )


def main(argv: list[str] | None = None) -> int:
    p = context_parser(prog="python -m benchmarks.stage", description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=[*HELPERS, *STAGES])
    args = p.parse_args(argv)
    try:
        result = run_stage(args.stage, context_from(args), Clock())
    except Exception:
        traceback.print_exc()
        return 1
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
