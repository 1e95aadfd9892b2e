"""The `amazon-reviews` command: database, loading, pipeline, batches and operations."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from amazon_reviews.config import ConfigError, Settings, load_settings, mask_text, mask_url

log = logging.getLogger("amazon_reviews")


class CliError(Exception):
    """An error the user can act on; printed without a traceback."""


def _settings() -> Settings:
    return load_settings()


def _print_table(rows: list[dict], columns: Sequence[str] | None = None) -> None:
    if not rows:
        print("(none)")
        return
    cols = list(columns or rows[0].keys())
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    print("  ".join("-" * widths[c] for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))


# --- database -------------------------------------------------------------------------------


def cmd_db(args: argparse.Namespace) -> int:
    from amazon_reviews.io.postgres import embedded

    settings = _settings()
    server = embedded(settings)
    if args.action == "up":
        info = server.ensure_running()
        print(f"embedded PostgreSQL running: pid {info.pid}, port {info.port}, data {info.pgdata}")
    elif args.action == "down":
        print("stopped" if server.stop() else "not running")
    elif args.action == "status":
        info = server.status()
        if info is None:
            print(f"embedded PostgreSQL not running (data {server.pgdata})")
            return 1
        print(f"embedded PostgreSQL running: pid {info.pid}, port {info.port}, data {info.pgdata}")
        if settings.neon_db_url:
            print(f"note: the source is NEON_DB_URL = {mask_url(settings.neon_db_url)}")
    elif args.action == "url":
        from amazon_reviews.io.postgres import source_url

        print(mask_url(source_url(settings)))
    return 0


# --- loading --------------------------------------------------------------------------------


def cmd_init_db(args: argparse.Namespace) -> int:
    from amazon_reviews.io.source_load import init_db

    summary = init_db(_settings(), Path(args.csv_dir), replace=args.replace, strict=args.strict)
    rows = [
        {
            "table": t,
            "read": summary.read.get(t, 0),
            "rejected": summary.rejected.get(t, 0),
            "loaded": summary.loaded.get(t, 0),
            "rows_now": summary.table_rows.get(t, 0),
        }
        for t in summary.table_rows
    ]
    _print_table(rows)
    if summary.rejects_file:
        print(f"rejected rows (file, line, column, reason): {summary.rejects_file}")
    print(f"init-db finished in {summary.seconds:.1f}s")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from amazon_reviews import generate
    from amazon_reviews.io.source_load import load_chunks, write_csv_chunks

    if not args.out and not args.load:
        raise CliError("choose where the data goes: --out DIR (CSV files) or --load (database)")
    started = time.perf_counter()
    report = generate.plan(args.reviews, seed=args.seed)
    chunks = generate.generate(args.reviews, seed=args.seed)
    if args.out:
        rows = write_csv_chunks(Path(args.out), chunks)
        where = f"CSV files in {args.out}"
    else:
        rows = load_chunks(_settings(), chunks, replace=args.replace, upsert=not args.replace)
        where = "the source database"
    print(f"generated into {where} in {time.perf_counter() - started:.1f}s:")
    _print_table([{"table": t, "rows": n} for t, n in rows.items()])
    print("dirty rows made (silver must reject exactly these):")
    _print_table([{"reject_reason": k, "rows": v} for k, v in report.dirty.items()])
    if args.report:
        Path(args.report).write_text(json.dumps(report.as_dict(), indent=2))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from amazon_reviews.importers import ImportReport, amazon2023, amazon_us_tsv
    from amazon_reviews.io.source_load import load_chunks

    report = ImportReport(files=[], lines_read=0, bad_lines=[], rows={})
    if args.format == "amazon2023":
        chunks = amazon2023.read(
            Path(args.reviews), Path(args.meta) if args.meta else None, report=report
        )
    else:
        chunks = amazon_us_tsv.read(Path(args.file), report=report)
    started = time.perf_counter()
    load_chunks(_settings(), chunks, upsert=True)
    print(
        f"imported {', '.join(report.files)}: {report.lines_read} line(s) read in "
        f"{time.perf_counter() - started:.1f}s"
    )
    _print_table([{"table": t, "rows": n} for t, n in report.rows.items()])
    if report.bad_lines:
        print(f"{len(report.bad_lines)} bad line(s) skipped:")
        for b in report.bad_lines[:20]:
            print(f"  {b.file}:{b.line}: {b.reason}")
        if len(report.bad_lines) > 20:
            print(f"  ... and {len(report.bad_lines) - 20} more")
    return 0


# --- pipeline -------------------------------------------------------------------------------


def _instance(settings: Settings):
    from amazon_reviews.runner import get_instance

    return get_instance(settings)


def _run(settings: Settings, batch: str, layers: tuple[str, ...], instance) -> int:
    from amazon_reviews.metrics import publish
    from amazon_reviews.runner import run_layers

    outcome = run_layers(settings, batch, layers, instance=instance)
    publish(settings, instance)
    status = "succeeded" if outcome.success else "FAILED"
    print(f"run {outcome.run_id} ({outcome.job}, batch {batch}) {status} in {outcome.seconds:.1f}s")
    if outcome.error:
        print(f"error: {mask_text(outcome.error)}", file=sys.stderr)
    for check in outcome.failed_checks:
        print(f"failed check: {check}", file=sys.stderr)
    return 0 if outcome.success else 1


def _new_or_given_batch(args: argparse.Namespace, instance) -> str:
    from amazon_reviews.batches import new_batch_id
    from amazon_reviews.runner import add_batch

    batch = args.batch_id or new_batch_id()
    add_batch(instance, batch)
    print(f"batch {batch}")
    return batch


def cmd_extract(args: argparse.Namespace) -> int:
    settings = _settings()
    instance = _instance(settings)
    batch = _new_or_given_batch(args, instance)
    return _run(settings, batch, ("bronze",), instance)


def _layer_command(layer: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        from amazon_reviews.io.lake import Lake
        from amazon_reviews.runner import LAYER_COMMANDS, require_batch

        settings = _settings()
        instance = _instance(settings)
        batch = require_batch(instance, args.batch_id)
        upstream = {"silver": "bronze", "gold": "silver"}[layer]
        Lake(settings.data_path).require(
            upstream,
            batch,
            needed_by=layer,
            command=f"amazon-reviews {LAYER_COMMANDS[upstream]} --batch-id {batch}",
        )
        return _run(settings, batch, (layer,), instance)

    return command


def cmd_run(args: argparse.Namespace) -> int:
    from amazon_reviews.io.lake import LAYERS

    settings = _settings()
    instance = _instance(settings)
    batch = _new_or_given_batch(args, instance)
    code = _run(settings, batch, LAYERS, instance)
    if code == 0:
        _print_gold_summary(settings, batch)
    return code


def _print_gold_summary(settings: Settings, batch: str) -> None:
    from amazon_reviews.io.lake import Lake
    from amazon_reviews.transforms.gold import score_histogram, top_products

    lake = Lake(settings.data_path)
    silver = lake.manifest("silver", batch) or {}
    print(f"\nbatch {batch}: rows per layer")
    rows = []
    for layer in ("bronze", "silver", "gold"):
        m = lake.manifest(layer, batch) or {}
        for table, n in sorted(m.get("rows", {}).items()):
            rows.append({"layer": layer, "table": table, "rows": n})
    _print_table(rows)
    rejects = [
        {"table": t, "reject_reason": r, "rows": n}
        for t, reasons in silver.get("rejects", {}).items()
        for r, n in reasons.items()
    ]
    print("\nsilver rejects by reason")
    _print_table(rejects)
    fact = lake.scan("gold", batch, "fact_reviews")
    print("\ngold relevance_score distribution")
    _print_table(score_histogram(fact).to_dicts())
    print("\ntop products")
    _print_table(top_products(fact).to_dicts())


def cmd_batches(args: argparse.Namespace) -> int:
    from amazon_reviews.io.lake import Lake
    from amazon_reviews.runner import add_batch, batch_states, known_batches

    settings = _settings()
    instance = _instance(settings)
    if args.action == "add":
        created = add_batch(instance, args.batch_id)
        print(f"batch {args.batch_id} {'added' if created else 'already exists'}")
        return 0
    lake = Lake(settings.data_path)
    now = datetime.now(UTC)
    rows = []
    for batch in sorted(set(known_batches(instance)) | set(lake.batches("bronze"))):
        row: dict = {"batch": batch}
        for s in batch_states(lake, batch):
            row[s.layer] = f"complete ({s.rows} reviews)" if s.complete else "-"
        m = lake.manifest("bronze", batch)
        if m:
            age = now - datetime.fromisoformat(m["created_at"])
            row["age"] = _age(age.total_seconds())
        else:
            row["age"] = "-"
        rows.append(row)
    _print_table(rows, ["batch", "bronze", "silver", "gold", "age"])
    return 0


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def cmd_env(args: argparse.Namespace) -> int:
    from amazon_reviews.runner import instance_env

    for key, value in instance_env(_settings()).items():
        if mask_url(value) != value:
            # Never print a password: a URL that holds one came from .env or the environment.
            print(f"# {key} holds a password and is not printed: export it from your .env")
            continue
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from amazon_reviews.io.source_load import source_is_empty

    settings = _settings()
    from amazon_reviews.io.postgres import embedded

    info = embedded(settings).ensure_running() if not settings.neon_db_url else None
    if info:
        print(f"embedded PostgreSQL on 127.0.0.1:{info.port} (data {info.pgdata})")
    if source_is_empty(settings):
        print(f"source is empty: generating {args.reviews} reviews")
        gen = argparse.Namespace(
            reviews=args.reviews, seed=42, out=None, load=True, replace=False, report=None
        )
        cmd_generate(gen)
    else:
        print("source already holds data: using it")
    code = cmd_run(argparse.Namespace(batch_id=None))
    print("\nopen the UI with: .venv/bin/amazon-reviews ui   (then http://127.0.0.1:3000)")
    return code


def cmd_ui(args: argparse.Namespace) -> int:
    from amazon_reviews.runner import instance_env

    env = {**os.environ, **instance_env(_settings())}
    cmd = [
        "dagster",
        "dev",
        "-w",
        str(Path(env["AMAZON_REVIEWS_HOME"]) / "workspace.yaml"),
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    print(f"starting: {' '.join(cmd)} (webserver and daemon)")
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.call(cmd, env=env)


def cmd_doctor(args: argparse.Namespace) -> int:
    from amazon_reviews.doctor import FAIL, render, run_doctor

    findings = run_doctor()
    print(render(findings))
    return 1 if any(f.status == FAIL for f in findings) else 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from amazon_reviews.io.lake import Lake
    from amazon_reviews.retention import apply_cleanup

    settings = _settings()
    report = apply_cleanup(
        Lake(settings.data_path),
        _instance(settings),
        older_than_days=args.older_than_days
        if args.older_than_days is not None
        else settings.retention.days,
        keep_last=args.keep_last if args.keep_last is not None else settings.retention.keep_last,
        dry_run=args.dry_run,
    )
    verb = "would remove" if args.dry_run else "removed"
    for batch in report.plan.delete:
        print(f"{verb} batch {batch}")
    for batch, why in sorted(report.plan.keep.items()):
        print(f"kept    batch {batch} ({why})")
    # The exact byte count too: small batches would otherwise print "0.0 MiB freed".
    print(
        f"{verb} {len(report.plan.delete)} batch(es), "
        f"{report.bytes_freed / 2**20:.1f} MiB ({report.bytes_freed} bytes) "
        f"{'to free' if args.dry_run else 'freed'}"
    )
    return 0


def cmd_rbac(args: argparse.Namespace) -> int:
    from amazon_reviews.io import rbac
    from amazon_reviews.io.postgres import create_source_schema, session, source_url

    settings = _settings()
    url = source_url(settings)
    with session(url, settings) as conn, conn.cursor() as cur:
        if args.action == "apply":
            create_source_schema(cur)
            n = rbac.apply(cur)
            print(f"applied {n} statements: roles {', '.join(rbac.ROLES)}")
            return 0
        rows, drifts = rbac.audit(cur)
    if args.verbose_audit:
        _print_table(rows)
    summary: dict[str, int] = {}
    for r in rows:
        summary[r["role"]] = summary.get(r["role"], 0) + 1
    print(f"checked {len(rows)} privileges for {len(summary)} role(s)")
    for d in drifts:
        print(f"DRIFT {d}")
    if drifts:
        print("fix: `amazon-reviews rbac apply` (docs/security.md)")
        return 1
    print("no drift: grants match the expected matrix")
    return 0


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amazon-reviews",
        description="Amazon reviews data platform: source database, bronze/silver/gold lake.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="the embedded PostgreSQL server: up, down, status, url")
    db.add_argument("action", choices=["up", "down", "status", "url"])
    db.set_defaults(func=cmd_db)

    init = sub.add_parser("init-db", help="create schema amazon and load <table>.csv files")
    init.add_argument("--csv-dir", required=True, help="folder holding product.csv, ...")
    init.add_argument("--replace", action="store_true", help="empty the tables first")
    init.add_argument("--strict", action="store_true", help="load nothing if any row is rejected")
    init.set_defaults(func=cmd_init_db)

    gen = sub.add_parser("generate", help="generate realistic data with known dirty rows")
    gen.add_argument("--reviews", type=int, required=True)
    gen.add_argument("--seed", type=int, default=42)
    where = gen.add_mutually_exclusive_group()
    where.add_argument("--out", help="write <table>.csv files into this folder")
    where.add_argument("--load", action="store_true", help="load into the source database")
    gen.add_argument("--replace", action="store_true", help="with --load: empty tables first")
    gen.add_argument("--report", help="write the generation report (dirty counts) as JSON")
    gen.set_defaults(func=cmd_generate)

    imp = sub.add_parser("import", help="import public Amazon review files")
    isub = imp.add_subparsers(dest="format", required=True, metavar="FORMAT")
    a23 = isub.add_parser("amazon2023", help="Amazon Reviews 2023 JSON lines (.gz or plain)")
    a23.add_argument("--reviews", required=True)
    a23.add_argument("--meta")
    tsv = isub.add_parser("amazon-us-tsv", help="the classic amazon_reviews_us TSV")
    tsv.add_argument("file")
    imp.set_defaults(func=cmd_import)

    for name, help_, func in (
        ("extract", "bronze: snapshot the source into a batch (new id unless given)", cmd_extract),
        ("run", "all layers for one batch (new id unless given)", cmd_run),
    ):
        c = sub.add_parser(name, help=help_)
        c.add_argument("--batch-id")
        c.set_defaults(func=func)
    for name, layer in (("transform", "silver"), ("model", "gold")):
        c = sub.add_parser(name, help=f"{layer}: materialise the {layer} layer of a batch")
        c.add_argument("--batch-id", required=True)
        c.set_defaults(func=_layer_command(layer))

    b = sub.add_parser("batches", help="list batches and their layers, or add one")
    bsub = b.add_subparsers(dest="action", required=True, metavar="ACTION")
    bsub.add_parser("list", help="per batch and layer: complete or not, rows, age")
    badd = bsub.add_parser("add", help="register a batch partition")
    badd.add_argument("batch_id")
    b.set_defaults(func=cmd_batches)

    env = sub.add_parser("env", help="print shell exports for plain `dagster` commands")
    env.set_defaults(func=cmd_env)

    demo = sub.add_parser("demo", help="embedded database, generated data, one full batch")
    demo.add_argument("--reviews", type=int, default=100_000)
    demo.set_defaults(func=cmd_demo)

    rb = sub.add_parser("rbac", help="roles and grants: apply them, or audit against them")
    rb.add_argument("action", choices=["apply", "audit"])
    rb.add_argument(
        "--all",
        dest="verbose_audit",
        action="store_true",
        help="audit: print every privilege, not only drift",
    )
    rb.set_defaults(func=cmd_rbac)

    doc = sub.add_parser("doctor", help="check configuration, databases, disk and batches")
    doc.set_defaults(func=cmd_doctor)

    clean = sub.add_parser("cleanup", help="delete old batches (files and partitions)")
    clean.add_argument("--older-than-days", type=int, help="default: retention.days")
    clean.add_argument("--keep-last", type=int, help="default: retention.keep_last")
    clean.add_argument("--dry-run", action="store_true", help="print, delete nothing")
    clean.set_defaults(func=cmd_cleanup)

    ui = sub.add_parser("ui", help="start the Dagster webserver and daemon (dagster dev)")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `amazon-reviews ... | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"error: {mask_text(str(exc))}", file=sys.stderr)
        return 2


def _is_user_error(exc: Exception) -> bool:
    from amazon_reviews.batches import InvalidBatchId, UnknownBatch
    from amazon_reviews.io.csv_import import CsvFormatError, CsvHeaderError
    from amazon_reviews.io.embedded import EmbeddedError
    from amazon_reviews.io.lake import LakeIntegrityError, LayerIncomplete
    from amazon_reviews.io.postgres import SourceSchemaMissing, SourceUnavailable
    from amazon_reviews.io.source_load import StrictRejectError

    known: tuple[type[Exception], ...] = (
        CliError,
        ConfigError,
        InvalidBatchId,
        UnknownBatch,
        CsvHeaderError,
        CsvFormatError,
        EmbeddedError,
        LayerIncomplete,
        LakeIntegrityError,
        SourceSchemaMissing,
        SourceUnavailable,
        StrictRejectError,
        FileNotFoundError,
    )
    from amazon_reviews.importers import ImportFormatError

    known += (ImportFormatError,)
    return isinstance(exc, known)


if __name__ == "__main__":
    sys.exit(main())
