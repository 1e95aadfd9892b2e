"""End to end on the real embedded PostgreSQL and a real Dagster instance: generated data whose
dirty rows are known, through bronze, silver and gold, with exact counts."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psycopg2
import pytest

from amazon_reviews import contract, generate
from amazon_reviews.cli import main as cli_main
from amazon_reviews.config import Settings
from amazon_reviews.io.lake import LAYERS, Lake
from amazon_reviews.io.postgres import table_counts
from amazon_reviews.io.source_load import load_chunks
from amazon_reviews.runner import add_batch, run_layers
from amazon_reviews.transforms.silver import RULES

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"

REVIEWS = 3000
ALL = LAYERS


def _load(settings: Settings, n: int = REVIEWS) -> generate.GenerationReport:
    load_chunks(settings, generate.generate(n, seed=7), replace=True, upsert=False)
    return generate.plan(n, seed=7)


def _source_counts(url: str) -> dict[str, int]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        counts = table_counts(cur)
    conn.close()
    return counts


def _frame_digest(path: Path) -> str:
    frame = pl.read_parquet(path)
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()


def test_full_run_reconciles_every_layer_with_exact_reject_counts(
    settings: Settings, source_url: str, instance
) -> None:
    plan = _load(settings)
    batch = "20260102T030000Z"
    add_batch(instance, batch)
    outcome = run_layers(settings, batch, ALL, instance=instance)
    assert outcome.success, outcome.error or outcome.failed_checks
    lake = Lake(settings.data_path)

    # bronze = source, table by table, and the manifest recorded the same snapshot counts
    source = _source_counts(source_url)
    bronze = lake.manifest("bronze", batch)
    assert bronze["source"]["rows"] == source
    for name, n in source.items():
        assert lake.read("bronze", batch, name).height == n

    # exact rejects per reason: what the generator made dirty, nothing more, nothing less
    silver = lake.manifest("silver", batch)
    expected = {name: {} for name in RULES}
    for kind, n in plan.dirty.items():
        table = {"price_negative": "product", "orphan_review": "review_images"}.get(kind, "review")
        expected[table][kind] = n
    assert silver["rejects"] == expected

    # silver + rejected = bronze for every table; rejected rows carry their reason
    for name in contract.TABLES:
        clean = lake.read("silver", batch, name)
        rejected = lake.read("silver", batch, f"rejected/{name}")
        assert clean.height + rejected.height == source[name]
        assert rejected["reject_reason"].null_count() == 0

    # gold = review_enriched, one row per valid review, scores in range
    enriched = lake.read("silver", batch, "review_enriched")
    fact = lake.read("gold", batch, "fact_reviews")
    assert (
        fact.height
        == enriched.height
        == REVIEWS
        - sum(n for k, n in plan.dirty.items() if k not in ("price_negative", "orphan_review"))
    )
    assert fact["review_id"].is_unique().all()
    assert fact["relevance_score"].is_between(0, 1).all()
    assert fact["text_truncated"].sum() == plan.long_texts

    # every check ran for this partition and passed
    from amazon_reviews.definitions import defs

    records = outcome_checks(instance, outcome.run_id)
    assert len(records) == len(list(defs.resolve_asset_graph().asset_check_keys))
    assert all(passed for _, passed in records)


def outcome_checks(instance, run_id: str) -> list[tuple[str, bool]]:
    from dagster import DagsterEventType, EventRecordsFilter

    del EventRecordsFilter  # the run's own log is enough here
    events = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    return [
        (e.dagster_event.event_specific_data.check_name, e.dagster_event.event_specific_data.passed)
        for e in events
    ]


def test_same_batch_twice_gives_identical_gold(settings: Settings, instance) -> None:
    _load(settings, 1500)
    batch = "20260103T030000Z"
    add_batch(instance, batch)
    lake = Lake(settings.data_path)
    assert run_layers(settings, batch, ALL, instance=instance).success
    first = _frame_digest(lake.table_path("gold", batch, "fact_reviews"))
    assert run_layers(settings, batch, ALL, instance=instance).success
    assert _frame_digest(lake.table_path("gold", batch, "fact_reviews")) == first


def test_layer_commands_say_which_batch_layer_and_command(
    settings: Settings, instance, capsys: pytest.CaptureFixture
) -> None:
    add_batch(instance, "20260104T030000Z")
    assert cli_main(["transform", "--batch-id", "20260104T030000Z"]) == 2
    err = capsys.readouterr().err
    assert "batch '20260104T030000Z' has no complete bronze layer, which silver needs" in err
    assert "amazon-reviews extract --batch-id 20260104T030000Z" in err

    assert cli_main(["model", "--batch-id", "20260104T030000Z"]) == 2
    assert "no complete silver layer, which gold needs" in capsys.readouterr().err

    assert cli_main(["model", "--batch-id", "20260104T030001Z"]) == 2
    err = capsys.readouterr().err
    assert "unknown batch '20260104T030001Z'; nearest existing: 20260104T030000Z" in err

    assert cli_main(["extract", "--batch-id", "../etc"]) == 2
    assert "invalid batch id '../etc'" in capsys.readouterr().err


def test_missing_source_table_is_named_with_the_fix(
    settings: Settings, source_url: str, instance
) -> None:
    _load(settings, 200)
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE amazon.buyer")
    add_batch(instance, "missing-table")
    outcome = run_layers(settings, "missing-table", ("bronze",), instance=instance)
    assert not outcome.success
    assert "amazon.buyer" in outcome.error and "amazon-reviews init-db" in outcome.error
    assert not Lake(settings.data_path).batch_dir("bronze", "missing-table").exists()


def test_process_killed_during_extract_leaves_no_visible_batch(
    settings: Settings, source_url: str, env: dict, instance
) -> None:
    _load(settings, 2000)
    batch = "killed-extract"
    add_batch(instance, batch)
    lake = Lake(settings.data_path)
    staging = settings.data_path / "bronze" / ".staging"
    # Block the extract on the last table so it is killed with four files already staged.
    blocker = psycopg2.connect(source_url)
    cur = blocker.cursor()
    cur.execute("LOCK TABLE amazon.review_images IN ACCESS EXCLUSIVE MODE")
    proc = subprocess.Popen(
        [sys.executable, "-m", "amazon_reviews.cli", "extract", "--batch-id", batch],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if list(staging.glob(f"batch={batch}.*/review.parquet")):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        else:
            pytest.fail("extract never reached the review table")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        blocker.rollback()
        blocker.close()
    assert not lake.batch_dir("bronze", batch).exists()
    assert lake.batches("bronze") == []
    # the re-run succeeds and the leftover staging folder is never read
    outcome = run_layers(settings, batch, ("bronze",), instance=instance)
    assert outcome.success, outcome.error
    assert lake.is_complete("bronze", batch)


def test_plain_dagster_cli_materializes_a_batch(settings: Settings, env: dict, instance) -> None:
    _load(settings, 500)
    batch = "20260105T030000Z"
    add_batch(instance, batch)
    bindir = Path(sys.executable).parent
    script = (
        f'eval "$({bindir}/amazon-reviews env)" && '
        f"{bindir}/dagster asset materialize -m amazon_reviews.definitions --select '*' "
        f"--partition {batch}"
    )
    out = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lake = Lake(settings.data_path)
    assert all(lake.is_complete(layer, batch) for layer in LAYERS)
    assert lake.read("gold", batch, "fact_reviews").height == (
        lake.read("silver", batch, "review_enriched").height
    )


def test_two_runs_of_one_batch_never_interleave(settings: Settings, env: dict, instance) -> None:
    _load(settings, 1000)
    batch = "concurrent"
    add_batch(instance, batch)
    lake = Lake(settings.data_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "amazon_reviews.cli", "extract", "--batch-id", batch],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    # Each run published a whole batch in turn: the files match the last manifest exactly.
    assert lake.verify("bronze", batch) == []
    assert lake.is_complete("bronze", batch)
    assert not list((settings.data_path / "bronze" / ".staging").glob("*"))


@pytest.mark.skipif(
    not (REALDATA / "amazon2023_reviews_sample.jsonl").exists(),
    reason="../shared/realdata is not beside the repository",
)
def test_real_samples_reach_gold_with_every_valid_review(
    settings: Settings, source_url: str, instance
) -> None:
    from amazon_reviews.importers import ImportReport, amazon2023, amazon_us_tsv

    report = ImportReport()
    load_chunks(
        settings,
        amazon2023.read(
            REALDATA / "amazon2023_reviews_sample.jsonl",
            REALDATA / "amazon2023_meta_sample.jsonl",
            report=report,
        ),
    )
    load_chunks(
        settings, amazon_us_tsv.read(REALDATA / "amazon_reviews_us_sample.tsv", report=report)
    )
    source = _source_counts(source_url)
    assert source["review"] > 0 and source["review_images"] > 0
    batch = "20260106T030000Z"
    add_batch(instance, batch)
    outcome = run_layers(settings, batch, ALL, instance=instance)
    assert outcome.success, outcome.error or outcome.failed_checks
    lake = Lake(settings.data_path)
    rejected = lake.read("silver", batch, "rejected/review")
    fact = lake.read("gold", batch, "fact_reviews")
    # Every review is in gold unless a named rule rejected it; each reject is explained.
    assert fact.height + rejected.height == source["review"]
    assert rejected["reject_reason"].null_count() == 0
    assert set(rejected["reject_reason"]) <= set(RULES["review"])
    # Real text was cleaned: no <br /> and no common HTML entity survives into gold.
    assert not fact["text"].str.contains("<br").any()
    assert not fact["text"].str.contains("&quot;|&amp;|&#39;").any()
    assert fact.filter(pl.col("image_count") > 0).height > 0


def test_tampered_manifest_blocks_the_next_layer(settings: Settings, instance) -> None:
    import json

    _load(settings, 300)
    batch = "tampered-manifest"
    add_batch(instance, batch)
    assert run_layers(settings, batch, ("bronze",), instance=instance).success
    lake = Lake(settings.data_path)
    path = lake.batch_dir("bronze", batch) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tables"]["review"]["rows"] += 1
    path.write_text(json.dumps(manifest))
    outcome = run_layers(settings, batch, ("silver",), instance=instance)
    assert not outcome.success
    assert "does not match its manifest" in outcome.error
    assert "manifest says" in outcome.error
    assert not lake.batch_dir("silver", batch).exists()


def test_streamed_layers_equal_the_whole_frame_reference(
    settings: Settings, source_url: str
) -> None:
    """The optimised path (bronze by the threaded extract, silver and gold in small chunks on
    two threads, spill files, streamed Parquet) gives exactly what the plain in-memory
    transforms give on the whole bronze batch at once: same rows, same order, same values."""
    from datetime import datetime

    from polars.testing import assert_frame_equal

    from amazon_reviews.layers import extract_bronze, model_gold, scoring_params, transform_silver
    from amazon_reviews.transforms.gold import build_fact_reviews
    from amazon_reviews.transforms.silver import SilverSettings, build_silver

    plan = _load(settings)
    transform = settings.transform.model_copy(update={"chunk_rows": 419, "threads": 2})
    streamed = settings.model_copy(update={"transform": transform})
    lake = Lake(settings.data_path)
    batch = "20260105T030000Z"
    extract_bronze(lake, streamed, source_url, batch)
    transform_silver(lake, streamed, batch)
    model_gold(lake, streamed, batch)

    bronze = {t: lake.read("bronze", batch, t) for t in contract.TABLES}
    batch_time = datetime.fromisoformat(lake.manifest("bronze", batch)["batch_time"])
    cfg = SilverSettings(
        batch_time=batch_time,
        min_date=settings.transform.min_date,
        max_text_chars=settings.transform.max_text_chars,
    )
    reference = build_silver(bronze, cfg)  # one chunk, one thread, in memory
    assert reference.results["review"].clean.height > 4 * transform.chunk_rows
    assert (
        reference.reject_counts()["review"]["duplicate_content"] == plan.dirty["duplicate_content"]
    )
    for name, frame in reference.outputs().items():
        assert_frame_equal(lake.read("silver", batch, name), frame, check_dtypes=True)
    fact = build_fact_reviews(
        reference.review_enriched,
        batch_id=batch,
        batch_time=batch_time,
        params=scoring_params(settings),
    )
    assert_frame_equal(lake.read("gold", batch, "fact_reviews"), fact)
    assert (
        _frame_digest(lake.table_path("gold", batch, "fact_reviews"))
        == hashlib.sha256(fact.write_csv().encode()).hexdigest()
    )


def test_empty_source_runs_through_every_layer(
    settings: Settings, source_url: str, instance
) -> None:
    """A source whose tables exist but hold no rows (a fresh `init-db`) gives empty, typed
    tables in every layer and an empty served table, and every check passes."""
    _load(settings, 0)  # creates the tables
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(t.qualified for t in contract.TABLES.values())}")
    assert set(_source_counts(source_url).values()) == {0}
    batch = "20260106T030000Z"
    add_batch(instance, batch)
    outcome = run_layers(settings, batch, ALL, instance=instance)
    assert outcome.success, outcome.error or outcome.failed_checks
    lake = Lake(settings.data_path)
    for layer in LAYERS:
        assert set(lake.manifest(layer, batch)["rows"].values()) == {0}
    fact = lake.read("gold", batch, "fact_reviews")
    assert fact.height == 0 and "relevance_score" in fact.columns
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM amazon_gold.fact_reviews")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT rows FROM amazon_gold.batches WHERE batch_id = %s", (batch,))
        assert cur.fetchone()[0] == 0
