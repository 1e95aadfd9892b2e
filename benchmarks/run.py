"""The benchmark suite (see benchmarks/README.md):

    python -m benchmarks.run --reviews N [--repeat R] [--data-dir DIR] [--keep] [--only NAME,...]

Every measurement runs in its own child process (`benchmarks.stage`), `--repeat` times; the
child reports its wall seconds and peak RSS. This process imports only the standard library, so
it stays small: on Linux a child's `ru_maxrss` starts at its parent's peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.stage import BATCH, SEED, STAGES

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
MARKER = "bench-source.json"  # in the data dir: what the source was loaded with
MB = 1_000_000  # decimal megabytes, for throughput and RSS alike
KIB = 1024
ONE_M, TEN_M = 1_000_000, 10_000_000
# Stages that handle only the review table (for bytes per second); the others handle all.
REVIEW_ONLY = {"gold", "baseline_pandas"}
PACKAGES = (
    "polars",
    "pyarrow",
    "adbc-driver-postgresql",
    "adbc-driver-manager",
    "psycopg2-binary",
    "pandas",
    "sqlalchemy",
    "dagster",
)


class ChildFailed(RuntimeError):
    """A stage process exited non-zero or printed no result."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_data_dir(reviews: int) -> Path:
    return REPO / "benchmarks" / f".data-{reviews}"


def child_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["AMAZON_REVIEWS__DATA_DIR"] = str(data_dir)
    env["AMAZON_REVIEWS_HOME"] = str(REPO)
    return env


def run_child(
    stage: str,
    data_dir: Path,
    reviews: int,
    *,
    expect: dict[str, int] | None = None,
    batch_id: str | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """Run `python -m benchmarks.stage STAGE` and return its JSON result."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.stage",
        stage,
        "--data-dir",
        str(data_dir),
        "--reviews",
        str(reviews),
        "--expect",
        json.dumps(expect or {}),
    ]
    if batch_id:
        command += ["--batch-id", batch_id]
    if keep:
        command.append("--keep")
    proc = subprocess.run(
        command, cwd=REPO, env=child_env(data_dir), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        raise ChildFailed(f"{stage} exited {proc.returncode}:\n{tail}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                continue
            if result.get("stage") == stage:
                return result
    raise ChildFailed(f"{stage} printed no result line")


def read_marker(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / MARKER).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def bench_lake_ready(data_dir: Path, layer: str) -> bool:
    return (data_dir / "bench" / "lake" / layer / f"batch={BATCH}" / "manifest.json").exists()


def ensure_upstream(
    stage: str, selected: list[str], data_dir: Path, reviews: int, expect: dict[str, int]
) -> list[str]:
    """Build (untimed) the bench lake layers `stage` reads when they are missing and their own
    stage is not selected; return the stages so run."""
    needs = {"silver": ["bronze"], "gold": ["bronze", "silver"]}.get(stage, [])
    done = []
    for layer in needs:
        if layer in selected or bench_lake_ready(data_dir, layer):
            continue
        log(f"  (preparing the bench lake's {layer}, untimed)")
        run_child(layer, data_dir, reviews, expect=expect)
        done.append(layer)
    return done


# --- machine information --------------------------------------------------------------------


def _proc_field(path: str, key: str) -> str | None:
    try:
        with open(path) as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine_info() -> dict[str, Any]:
    mem_kb = _proc_field("/proc/meminfo", "MemTotal")
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "nproc": os.cpu_count(),
        "nproc_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "mem_total_gb": round(int(mem_kb.split()[0]) * 1024 / 1e9, 1) if mem_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }


# --- summary ----------------------------------------------------------------------------------


def summarize(name: str, runs: list[dict[str, Any]], text_bytes: dict[str, int]) -> dict:
    seconds = [r["seconds"] for r in runs]
    best = min(seconds)
    nbytes = text_bytes.get("review" if name in REVIEW_ONLY else "*")
    return {
        "best_s": best,
        "median_s": statistics.median(seconds),
        "runs_s": seconds,
        "rows": runs[0]["rows"],
        "rows_per_s": runs[0]["rows"] / best if best else None,
        "bytes": nbytes,
        "mb_per_s": nbytes / MB / best if nbytes and best else None,
        "peak_rss_mb": max(r["peak_rss_kib"] for r in runs) * KIB / MB,
        "rss_before_work_mb": max(r["rss_before_kib"] for r in runs) * KIB / MB,
        "detail": runs[-1]["detail"],
    }


def add_ratios(stages: dict[str, dict]) -> None:
    copy = stages.get("copy_text", {}).get("best_s")
    bronze = stages.get("bronze", {}).get("best_s")
    pandas = stages.get("baseline_pandas", {}).get("best_s")
    for name, s in stages.items():
        if name == "generate_load":
            continue
        s["vs_copy_text"] = s["best_s"] / copy if copy else None
        s["vs_bronze"] = s["best_s"] / bronze if bronze and name in ("silver", "gold") else None
        if name == "silver+gold" and bronze:
            s["vs_bronze"] = s["best_s"] / bronze
        s["vs_pandas"] = s["best_s"] / pandas if pandas else None


def silver_plus_gold(stages: dict[str, dict]) -> dict | None:
    s, g = stages.get("silver"), stages.get("gold")
    if not s or not g:
        return None
    best = s["best_s"] + g["best_s"]
    return {
        "best_s": best,
        "median_s": s["median_s"] + g["median_s"],
        "rows": s["rows"],
        "rows_per_s": s["rows"] / best,
        "bytes": s["bytes"],
        "mb_per_s": s["bytes"] / MB / best if s["bytes"] else None,
        "peak_rss_mb": max(s["peak_rss_mb"], g["peak_rss_mb"]),
        "rss_before_work_mb": max(s["rss_before_work_mb"], g["rss_before_work_mb"]),
        "detail": {"sum_of": ["silver", "gold"], "peak_rss": "the larger of the two"},
    }


def targets(stages: dict[str, dict], reviews: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def target(
        name: str,
        value: float | None,
        limit: float,
        figure: str,
        why: str = "",
        *,
        strict: bool = False,
    ) -> None:
        if value is None:
            out.append({"target": name, "status": "n/a", "figure": why or "not measured"})
        else:
            met = value < limit if strict else value <= limit
            out.append({"target": name, "status": "met" if met else "MISSED", "figure": figure})

    def best(name: str) -> float | None:
        return stages.get(name, {}).get("best_s")

    def rss(name: str) -> float | None:
        return stages.get(name, {}).get("peak_rss_mb")

    b, c, sg = best("bronze"), best("copy_text"), best("silver+gold")
    ratio = b / c if b and c else None
    target(
        "bronze <= 1.25x copy_text",
        ratio,
        1.25,
        f"{ratio:.2f}x ({b:.3f} s vs {c:.3f} s)" if ratio else "",
        "needs bronze and copy_text",
    )
    r = rss("bronze")
    target("bronze peak RSS <= 300 MB", r, 300, f"{r:.0f} MB" if r else "")
    sg_ratio = sg / b if sg and b else None
    target(
        "silver+gold <= bronze time",
        sg_ratio,
        1.0,
        f"{sg:.3f} s vs {b:.3f} s ({sg_ratio:.2f}x)" if sg_ratio else "",
        "needs silver, gold and bronze",
    )
    r = rss("silver+gold")
    target("silver+gold peak RSS <= 2 GB", r, 2000, f"{r:.0f} MB" if r else "")
    run_s = best("run")
    for n, limit in ((ONE_M, 20), (TEN_M, 120)):
        label = f"run <= {limit} s at {n // ONE_M}M reviews"
        if reviews != n:
            target(label, None, limit, "", f"n/a at {reviews:,} reviews")
        else:
            target(label, run_s, limit, f"{run_s:.1f} s" if run_s else "")
    g = best("generate_load")
    label = "generate_load of 10M < 300 s"
    if reviews != TEN_M:
        target(label, None, 300, "", f"n/a at {reviews:,} reviews")
    else:
        figure = f"{g:.1f} s" if g else ""
        target(label, g, 300, figure, "source reused, not loaded this run", strict=True)
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    pk = m["packages"]
    print(
        f"\nbenchmark: {report['reviews']:,} reviews, repeat {report['repeat']}, "
        f"started {report['started_at']}, git {m['git_commit']}"
        f"{' (dirty)' if m['git_dirty'] else ''}"
    )
    print(
        f"machine: {m['nproc']} CPUs ({m['nproc_usable']} usable), {m['cpu_model']}, "
        f"{m['mem_total_gb']} GB RAM, Linux {m['kernel']}"
    )
    print(
        f"software: PostgreSQL {report['source']['server_version']}, Python {m['python']}, "
        f"polars {pk['polars']}, pyarrow {pk['pyarrow']}, "
        f"adbc-driver-postgresql {pk['adbc-driver-postgresql']}, pandas {pk['pandas']}, "
        f"dagster {pk['dagster']}"
    )
    la = report["load_avg_start"]
    src = report["source"]
    print(f"load average at start: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    copy_mb = src.get("copy_text_bytes_total")
    print(
        f"source ({'reused' if src['reused'] else 'generated and loaded by this run'}): "
        + ", ".join(f"{t} {n:,}" for t, n in src["rows"].items())
        + (f"; COPY text {copy_mb / MB:,.1f} MB" if copy_mb else "")
    )
    header = [
        "stage",
        "best s",
        "median s",
        "rows",
        "rows/s",
        "MB/s",
        "peak RSS MB",
        "x copy_text",
        "x bronze",
        "x pandas",
    ]
    rows = []
    for name, s in report["stages"].items():
        rows.append(
            [
                name,
                _fmt(s["best_s"], ".3f"),
                _fmt(s["median_s"], ".3f"),
                _fmt(s["rows"], ",d"),
                _fmt(s["rows_per_s"], ",.0f"),
                _fmt(s["mb_per_s"], ".1f"),
                _fmt(s["peak_rss_mb"], ".0f"),
                _fmt(s.get("vs_copy_text"), ".2f"),
                _fmt(s.get("vs_bronze"), ".2f"),
                _fmt(s.get("vs_pandas"), ".2f"),
            ]
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print()
    for i, r in enumerate([header, *rows]):
        cells = [
            c.ljust(w) if j == 0 else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        print("  ".join(cells))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(
        "\nrows/s and MB/s use the best time; MB = 10^6 bytes of the COPY text of the tables the "
        "stage handles (gold and baseline_pandas: review only)"
    )
    run = report["stages"].get("run")
    if run and run["detail"].get("dagster_run_seconds") is not None:
        print(
            f"run (last repeat): the job itself took {run['detail']['dagster_run_seconds']:.1f} s "
            "as the CLI reports it; the rest is CLI start-up, Dagster instance, summary"
        )
    if la[0] > 0.5 * (m["nproc_usable"] or 1):
        print(f"warning: load average {la[0]:.2f} at start on {m['nproc_usable']} CPUs; noisy")
    print("\ntargets")
    width = max(len(t["target"]) for t in report["targets"])
    for t in report["targets"]:
        print(f"  {t['target'].ljust(width)}  {t['status']:<6}  {t['figure']}")
    for name, error in report["failures"].items():
        print(f"\nFAILED {name}: {error}")


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--reviews", type=int, required=True, help="reviews in the source (N)")
    p.add_argument("--repeat", type=int, default=3, help="runs per stage (default 3)")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="data folder (default benchmarks/.data-N); gets its own embedded PostgreSQL",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the bench lake, the run batches and a server this run started",
    )
    p.add_argument(
        "--only",
        help=f"comma-separated stages (default all: {','.join(STAGES)}); "
        "generate_load forces a reload of the source",
    )
    args = p.parse_args(argv)
    if args.reviews < 0 or args.repeat < 1:
        p.error("--reviews must be >= 0 and --repeat >= 1")
    names = [n.strip() for n in (args.only or "").split(",") if n.strip()]
    unknown = sorted(set(names) - {*STAGES, "generate_load"})
    if unknown:
        p.error(f"unknown stage(s) {unknown}; known: {', '.join([*STAGES, 'generate_load'])}")
    args.only = names or list(STAGES)
    return args


def prepare_source(
    data_dir: Path, reviews: int, setup: dict[str, Any], force: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Reuse the source when the marker and the counts say it holds generate(N, seed=42);
    else load it (timed). Return the marker and the generate_load result, if one ran."""
    marker = read_marker(data_dir)
    reasons = []
    if force:
        reasons.append("generate_load was asked for")
    if marker is None:
        reasons.append(f"no {MARKER}")
    elif (marker.get("reviews"), marker.get("seed")) != (reviews, SEED):
        reasons.append(f"marker says {marker.get('reviews')} reviews, seed {marker.get('seed')}")
    elif marker.get("generator_sha256") != setup["generator_sha256"]:
        reasons.append("amazon_reviews/generate.py changed since the load")
    if setup["counts"] != setup["expected"]:
        reasons.append(f"source holds {setup['counts'] or 'no tables'}")
    if not reasons:
        return marker, None
    log(f"loading generate({reviews:,}, seed={SEED}) ({'; '.join(reasons)}); this is timed")
    (data_dir / MARKER).unlink(missing_ok=True)
    shutil.rmtree(data_dir / "bench", ignore_errors=True)  # lake from another source
    loaded = run_child("generate_load", data_dir, reviews, expect=setup["expected"])
    after = run_child("setup", data_dir, reviews)["detail"]
    if after["counts"] != after["expected"]:
        raise ChildFailed(f"after the load the source holds {after['counts']}")
    log(f"  generate_load: {loaded['seconds']:.1f} s")
    marker = {
        "reviews": reviews,
        "seed": SEED,
        "generator_sha256": setup["generator_sha256"],
        "rows": after["counts"],
        "loaded_at": datetime.now(UTC).isoformat(),
        "generate_load_s": loaded["seconds"],
    }
    write_json(data_dir / MARKER, marker)
    return marker, loaded


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n, repeat, selected = args.reviews, args.repeat, args.only
    load_start = os.getloadavg()
    started = datetime.now(UTC)
    wall_start = time.perf_counter()
    data_dir = (args.data_dir or default_data_dir(n)).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log(f"benchmark {n:,} reviews x{repeat}, data {data_dir}, stages {','.join(selected)}")
    stages_run = [s for s in STAGES if s in selected]
    results: dict[str, list[dict[str, Any]]] = {}
    failures: dict[str, str] = {}
    prepared: list[str] = []
    setup: dict[str, Any] | None = None
    code = 0
    try:
        setup = run_child("setup", data_dir, n)["detail"]
        marker, loaded = prepare_source(data_dir, n, setup, "generate_load" in selected)
        expect = marker["rows"]
        if loaded:
            results["generate_load"] = [loaded]
        if "copy_text" not in stages_run and not marker.get("copy_text_bytes"):
            log("  (measuring COPY text bytes once, untimed)")
            res = run_child("copy_text", data_dir, n, expect=expect)
            marker["copy_text_bytes"] = {t: d["bytes"] for t, d in res["detail"]["tables"].items()}
            write_json(data_dir / MARKER, marker)
        for name in stages_run:
            try:
                prepared += ensure_upstream(name, selected, data_dir, n, expect)
            except ChildFailed as exc:
                failures[name] = f"preparing its input: {exc}"
                log(f"  {name}: FAILED preparing its input\n{exc}")
                continue
            for i in range(repeat):
                batch_id = None
                if name == "run":
                    batch_id = f"benchrun-{datetime.now(UTC):%Y%m%dT%H%M%S}-{i + 1}"
                try:
                    res = run_child(
                        name, data_dir, n, expect=expect, batch_id=batch_id, keep=args.keep
                    )
                except ChildFailed as exc:
                    failures[name] = str(exc)
                    log(f"  {name} {i + 1}/{repeat}: FAILED\n{exc}")
                    break
                results.setdefault(name, []).append(res)
                log(
                    f"  {name} {i + 1}/{repeat}: {res['seconds']:.3f} s, "
                    f"peak RSS {res['peak_rss_kib'] * KIB / MB:.0f} MB"
                )
            if name == "copy_text" and name in results:
                tables = results[name][0]["detail"]["tables"]
                marker["copy_text_bytes"] = {t: d["bytes"] for t, d in tables.items()}
                write_json(data_dir / MARKER, marker)
    except ChildFailed as exc:
        log(f"setup failed:\n{exc}")
        failures["setup"] = str(exc)
        code = 2
    finally:
        if not args.keep:
            shutil.rmtree(data_dir / "bench", ignore_errors=True)
        if setup is not None and not setup["was_running"] and not args.keep:
            subprocess.run(
                [sys.executable, "-m", "amazon_reviews.cli", "db", "down"],
                cwd=REPO,
                env=child_env(data_dir),
                capture_output=True,
                check=False,
            )
    if code:
        return code

    text_bytes = dict(marker.get("copy_text_bytes") or {})
    if text_bytes:
        text_bytes["*"] = sum(text_bytes.values())
    stages: dict[str, dict] = {}
    for name in ["generate_load", *STAGES]:
        if name in results:
            stages[name] = summarize(name, results[name], text_bytes)
        if name == "gold" and (sg := silver_plus_gold(stages)):
            stages["silver+gold"] = sg
    add_ratios(stages)
    report = {
        "reviews": n,
        "repeat": repeat,
        "seed": SEED,
        "started_at": started.isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - wall_start, 1),
        "data_dir": str(data_dir),
        "selected": selected,
        "machine": machine_info(),
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg(),
        "source": {
            "reused": "generate_load" not in results,
            "server_version": setup["server_version"],
            "rows": expect,
            "copy_text_bytes": marker.get("copy_text_bytes"),
            "copy_text_bytes_total": text_bytes.get("*"),
        },
        "stages": stages,
        "targets": targets(stages, n),
        "prepared_untimed": prepared,
        "failures": failures,
        "runs": results,
    }
    print_report(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{started:%Y%m%dT%H%M%S}-{n}.json"
    write_json(out, report)
    print(f"\nresults: {out.relative_to(REPO)}")
    if args.keep:
        print(
            f"kept: {data_dir / 'bench'} and the embedded server (stop it with "
            f"AMAZON_REVIEWS__DATA_DIR={data_dir} amazon-reviews db down)"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
