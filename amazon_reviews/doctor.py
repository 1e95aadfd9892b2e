"""`amazon-reviews doctor`: every piece the platform needs, checked, each failure with its fix.

The doctor never starts or changes anything: a stopped embedded server is reported as down,
not restarted, so what it prints is the state the pipeline would meet.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from amazon_reviews import contract
from amazon_reviews.config import ConfigError, Settings, load_settings, mask_text, mask_url
from amazon_reviews.io.lake import LAYERS, Lake

OK, WARN, FAIL = "ok", "warn", "FAIL"
RUNBOOK = "docs/runbooks.md"
_MIN_FREE_BYTES = 1 << 30
_WARN_FREE_BYTES = 5 << 30


@dataclass
class Finding:
    check: str
    status: str
    detail: str
    fix: str = ""


def _source_checks(settings: Settings) -> list[Finding]:
    from amazon_reviews.io.postgres import (
        SourceUnavailable,
        column_drift,
        connect,
        missing_tables,
        source_url,
    )

    try:
        url = source_url(settings, start=False)
        conn = connect(url, settings, attempts=1)
    except SourceUnavailable as exc:
        fix = (
            f"{RUNBOOK}#database-connection-impossible: `amazon-reviews db up` "
            "(embedded), or check NEON_DB_URL, TLS and that the Neon project is awake"
        )
        return [Finding("source reachable", FAIL, str(exc), fix)]
    found = [Finding("source reachable", OK, mask_url(url))]
    try:
        with conn.cursor() as cur:
            missing = missing_tables(cur)
            if missing:
                found.append(
                    Finding(
                        "source tables",
                        FAIL,
                        f"missing in schema {contract.SOURCE_SCHEMA}: {', '.join(missing)}",
                        f"{RUNBOOK}#relation-not-found: `amazon-reviews init-db --csv-dir DIR` or "
                        "`amazon-reviews generate --reviews N --load`",
                    )
                )
                return found
            drift = column_drift(cur)
            if drift:
                found.append(
                    Finding(
                        "source schema matches contract",
                        FAIL,
                        "; ".join(f"{t}: {', '.join(p)}" for t, p in drift.items()),
                        f"{RUNBOOK}#model-step-fails-on-missing-columns",
                    )
                )
            else:
                found.append(
                    Finding(
                        "source schema matches contract",
                        OK,
                        f"{len(contract.TABLES)} tables, columns and types",
                    )
                )
            cur.execute("SHOW search_path")
            search_path = cur.fetchone()[0]
            cur.execute("SELECT to_regclass('review') IS NOT NULL")
            if not cur.fetchone()[0]:
                found.append(
                    Finding(
                        "search_path",
                        WARN,
                        f"search_path is {search_path!r}: unqualified `review` does not resolve "
                        "(the pipeline always writes amazon.review; ad-hoc SQL and old scripts "
                        "fail with 'relation \"review\" does not exist')",
                        f"{RUNBOOK}#relation-not-found: qualify names (amazon.review) or "
                        "`ALTER ROLE <you> SET search_path = amazon, public`",
                    )
                )
            else:
                found.append(Finding("search_path", OK, search_path))
    finally:
        conn.close()
    return found


def _data_dir_checks(settings: Settings) -> list[Finding]:
    path = settings.data_path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".doctor-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return [
            Finding(
                "data folder writable",
                FAIL,
                f"{path}: {exc.strerror}",
                f"{RUNBOOK}#disk-full: fix permissions or AMAZON_REVIEWS__DATA_DIR",
            )
        ]
    free = shutil.disk_usage(path).free
    status = FAIL if free < _MIN_FREE_BYTES else WARN if free < _WARN_FREE_BYTES else OK
    return [
        Finding("data folder writable", OK, str(path)),
        Finding(
            "free space",
            status,
            f"{free / 2**30:.1f} GiB free under {path}",
            ""
            if status == OK
            else f"{RUNBOOK}#disk-full: `amazon-reviews cleanup "
            "--older-than-days 7 --dry-run`, then without --dry-run",
        ),
    ]


def _instance_checks(settings: Settings) -> list[Finding]:
    from amazon_reviews.io.postgres import SourceUnavailable, connect, instance_url

    try:
        url = instance_url(settings, start=False)
        conn = connect(url, settings, attempts=1)
    except SourceUnavailable as exc:
        return [
            Finding(
                "instance storage reachable",
                FAIL,
                str(exc),
                f"{RUNBOOK}#database-connection-impossible: `amazon-reviews db up` or "
                "check DAGSTER_PG_URL",
            )
        ]
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('runs') IS NOT NULL")
            initialised = cur.fetchone()[0]
    finally:
        conn.close()
    detail = mask_url(url) + ("" if initialised else " (no runs yet: tables not created)")
    return [Finding("instance storage reachable", OK, detail)]


def _batch_checks(settings: Settings) -> list[Finding]:
    lake = Lake(settings.data_path)
    batches = sorted(set().union(*(lake.batches(layer) for layer in LAYERS)))
    if not batches:
        return [
            Finding(
                "latest batch",
                WARN,
                "no batch in the lake yet",
                "`amazon-reviews run` creates and runs one",
            )
        ]

    def written_at(batch: str) -> str:
        stamps = [(lake.manifest(layer, batch) or {}).get("created_at", "") for layer in LAYERS]
        return max(stamps)

    # Newest by when it was written, not by name: free-form ids do not sort by time.
    latest = max(batches, key=lambda b: (written_at(b), b))
    states = {layer: lake.is_complete(layer, latest) for layer in LAYERS}
    text = ", ".join(f"{layer} {'complete' if ok else 'missing'}" for layer, ok in states.items())
    if all(states.values()):
        return [Finding("latest batch", OK, f"{latest}: {text}")]
    return [
        Finding(
            "latest batch",
            FAIL,
            f"{latest}: {text}",
            f"{RUNBOOK}#incomplete-batch: `{lake.repair_command(latest)}`",
        )
    ]


def run_doctor(environ: dict[str, str] | None = None) -> list[Finding]:
    """Every check, in the order an operator would fix them."""
    try:
        settings = load_settings(environ)
    except ConfigError as exc:
        return [
            Finding(
                "configuration",
                FAIL,
                str(exc),
                f"{RUNBOOK}#configuration-error: fix the key named above",
            )
        ]
    findings = [Finding("configuration", OK, f"home {settings.home}, data {settings.data_path}")]
    steps: list[Callable[[Settings], list[Finding]]] = [
        _source_checks,
        _data_dir_checks,
        _instance_checks,
        _batch_checks,
    ]
    for step in steps:
        try:
            findings += step(settings)
        except Exception as exc:  # a doctor reports; it does not crash
            findings.append(
                Finding(
                    step.__name__.strip("_").replace("_", " "),
                    FAIL,
                    mask_text(f"{type(exc).__name__}: {exc}"),
                )
            )
    return findings


def render(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = []
    for f in findings:
        lines.append(f"[{f.status:>4}] {f.check.ljust(width)}  {mask_text(f.detail)}")
        if f.fix and f.status != OK:
            lines.append(f"       {' ' * width}  fix: {f.fix}")
    failed = sum(f.status == FAIL for f in findings)
    lines.append(f"\n{failed} failure(s), {sum(f.status == WARN for f in findings)} warning(s)")
    return os.linesep.join(lines)
