"""Prometheus metrics, rebuilt after each run from the sources of truth: the lake's manifests
and the Dagster instance's run records. Written to `data/metrics/amazon_reviews.prom` (the
node-exporter textfile format) and pushed to a Pushgateway when one is configured.

Being derived rather than accumulated, the file is the same whoever writes it (the CLI after
its run, or the run-status sensor for runs launched from the UI).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.core import HistogramMetricFamily

from amazon_reviews.config import Settings, mask_text
from amazon_reviews.io.lake import LAYERS, Lake

log = logging.getLogger(__name__)

PROM_FILE = "amazon_reviews.prom"
_SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))
_RECENT_RUNS = 200


def build_registry(lake: Lake, instance=None) -> CollectorRegistry:
    """Every metric, from the newest complete batch and the recent runs of the instance."""
    reg = CollectorRegistry()
    rows = Gauge(
        "amazon_reviews_rows",
        "Rows per layer and table in the newest complete batch",
        ["layer", "table"],
        registry=reg,
    )
    rejects = Gauge(
        "amazon_reviews_rejected_rows",
        "Silver rejects per table and reason in the newest complete batch",
        ["table", "reason"],
        registry=reg,
    )
    last_ok = Gauge(
        "amazon_reviews_last_successful_batch_timestamp_seconds",
        "When the newest batch with complete gold was written",
        registry=reg,
    )
    layer_seconds = Gauge(
        "amazon_reviews_layer_write_seconds",
        "Seconds to write each layer of the newest complete batch",
        ["layer"],
        registry=reg,
    )
    step_runs = Gauge(
        "amazon_reviews_step_runs",
        "Recent step executions by step and status",
        ["step", "status"],
        registry=reg,
    )
    step_seconds = Gauge(
        "amazon_reviews_step_duration_seconds",
        "Duration of each step in the newest finished run",
        ["step"],
        registry=reg,
    )
    runs = Gauge(
        "amazon_reviews_runs", "Recent runs by job and status", ["job", "status"], registry=reg
    )

    complete = [b for b in lake.batches("gold") if lake.is_complete("gold", b)]
    if complete:
        batch = max(complete, key=lambda b: lake.manifest("gold", b)["created_at"])
        for layer in LAYERS:
            m = lake.manifest(layer, batch) or {}
            for table, n in m.get("rows", {}).items():
                rows.labels(layer, table).set(n)
            layer_seconds.labels(layer).set(m.get("durations_s", {}).get("write", 0))
            if layer == "silver":
                for table, reasons in m.get("rejects", {}).items():
                    for reason, n in reasons.items():
                        rejects.labels(table, reason).set(n)
        created = datetime.fromisoformat(lake.manifest("gold", batch)["created_at"])
        last_ok.set(created.timestamp())
        scores = (
            lake.scan("gold", batch, "fact_reviews")
            .select("relevance_score")
            .collect()
            .get_column("relevance_score")
        )
        reg.register(_ScoreHistogram(scores))
    if instance is not None:
        _run_metrics(instance, runs, step_runs, step_seconds)
    return reg


class _ScoreHistogram:
    """relevance_score of the newest gold batch as a histogram, counted in one vectorised pass
    (observing a million values one by one would take seconds)."""

    def __init__(self, scores: pl.Series) -> None:
        self.cumulative = [(str(le), int((scores <= le).sum())) for le in _SCORE_BUCKETS]
        self.cumulative.append(("+Inf", scores.len()))
        self.total = float(scores.sum() or 0.0)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(
            "amazon_reviews_relevance_score",
            "relevance_score of the newest gold batch",
            buckets=self.cumulative,
            sum_value=self.total,
        )


def _run_metrics(instance, runs: Gauge, step_runs: Gauge, step_seconds: Gauge) -> None:
    from dagster import DagsterRunStatus, RunsFilter

    finished = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
    records = instance.get_runs(filters=RunsFilter(statuses=finished), limit=_RECENT_RUNS)
    by_job = Counter((r.job_name, r.status.value.lower()) for r in records)
    for (job, status), n in by_job.items():
        runs.labels(job, status).set(n)
    steps: Counter = Counter()
    for i, r in enumerate(records):
        for stat in instance.get_run_step_stats(r.run_id):
            status = stat.status.value.lower() if stat.status else "unknown"
            steps[(stat.step_key, status)] += 1
            if i == 0 and stat.end_time and stat.start_time:
                step_seconds.labels(stat.step_key).set(stat.end_time - stat.start_time)
    for (step, status), n in steps.items():
        step_runs.labels(step, status).set(n)


def publish(settings: Settings, instance=None) -> Path:
    """Write the textfile, and push to the Pushgateway when configured. Never raises on push."""
    reg = build_registry(Lake(settings.data_path), instance)
    out = settings.data_path / "metrics" / PROM_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(out), reg)  # writes a temp file and renames it
    if settings.prometheus_pushgateway_url:
        from prometheus_client import push_to_gateway

        try:
            push_to_gateway(
                settings.prometheus_pushgateway_url, job="amazon_reviews", registry=reg, timeout=5
            )
        except Exception as exc:
            log.warning("metrics push failed: %s", mask_text(str(exc)))
    return out
