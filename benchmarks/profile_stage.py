"""Profile one benchmark stage: where its time goes (for docs/performance.md).

    python -m benchmarks.profile_stage NAME --reviews N [--data-dir DIR] [--top 25]
        [--profiler auto|cprofile|pyinstrument] [--save FILE] [--keep]

The stage runs in this process and the profiler covers exactly the region `benchmarks.run`
times (for `run`: `amazon-reviews run` called in-process, imports included). The source must
hold `generate(N, seed=42)` already: run `python -m benchmarks.run --reviews N` first with the
same data folder. Wall time and RSS printed here include the profiler's overhead; use
`benchmarks.run` for figures.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if not __package__:  # run as a script (python benchmarks/profile_stage.py): find the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import REPO, child_env, default_data_dir, ensure_upstream, run_child
from benchmarks.stage import STAGES, Clock, Context, check, proc_status_kib, run_stage


class CProfiler:
    name = "cProfile"

    def __init__(self) -> None:
        import cProfile

        self._profile = cProfile.Profile()

    def start(self) -> None:
        self._profile.enable()

    def stop(self) -> None:
        self._profile.disable()

    def report(self, top: int, save: Path | None) -> None:
        stats = pstats.Stats(self._profile, stream=sys.stdout)
        stats.strip_dirs().sort_stats("cumulative").print_stats(top)
        if save:
            self._profile.dump_stats(save)
            print(f"profile saved to {save} (python -m pstats {save})")


class Pyinstrument:
    name = "pyinstrument"

    def __init__(self) -> None:
        from pyinstrument import Profiler

        self._profiler = Profiler()

    def start(self) -> None:
        self._profiler.start()

    def stop(self) -> None:
        self._profiler.stop()

    def report(self, top: int, save: Path | None) -> None:
        print(self._profiler.output_text(unicode=False, color=False))
        if save:
            save.write_text(self._profiler.output_html())
            print(f"profile saved to {save}")


def make_profiler(kind: str) -> CProfiler | Pyinstrument:
    if kind in ("auto", "pyinstrument"):
        try:
            return Pyinstrument()
        except ImportError:
            if kind == "pyinstrument":
                raise SystemExit(
                    "pyinstrument is not installed (pip install pyinstrument)"
                ) from None
    return CProfiler()


def profile_cli_run(ctx: Context, clock: Clock) -> dict[str, Any]:
    """`amazon-reviews run --batch-id ID` in this process (the `run` stage starts a child)."""
    from amazon_reviews import cli

    with clock:
        code = cli.main(["run", "--batch-id", ctx.batch_id])
    check(code == 0, f"amazon-reviews run exited {code}")
    if not ctx.keep:
        for layer in ("bronze", "silver", "gold"):
            shutil.rmtree(ctx.data_dir / layer / f"batch={ctx.batch_id}", ignore_errors=True)
    return {
        "stage": "run",
        "seconds": clock.seconds,
        "peak_rss_kib": proc_status_kib("VmHWM"),
        "rss_before_kib": clock.rss_before_kib,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_stage", description=__doc__)
    p.add_argument("stage", choices=[*STAGES, "generate_load"])
    p.add_argument("--reviews", type=int, required=True)
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--top", type=int, default=25, help="entries to print (cProfile)")
    p.add_argument("--profiler", choices=["auto", "cprofile", "pyinstrument"], default="auto")
    p.add_argument("--save", type=Path, help="also save the profile (pstats, or pyinstrument html)")
    p.add_argument("--keep", action="store_true", help="keep the bench lake and the server")
    args = p.parse_args(argv)

    data_dir = (args.data_dir or default_data_dir(args.reviews)).resolve()
    os.environ.update({k: v for k, v in child_env(data_dir).items() if k.startswith("AMAZON")})
    setup = run_child("setup", data_dir, args.reviews)["detail"]
    try:
        if setup["counts"] != setup["expected"]:
            print(
                f"the source in {data_dir} does not hold generate({args.reviews}, seed=42); "
                f"run `python -m benchmarks.run --reviews {args.reviews} --data-dir {data_dir} "
                "--only copy_text --repeat 1` first",
                file=sys.stderr,
            )
            return 2
        expect = setup["counts"]
        ensure_upstream(args.stage, [], data_dir, args.reviews, expect)
        ctx = Context(
            data_dir=data_dir,
            reviews=args.reviews,
            expect=expect,
            keep=args.keep,
            batch_id=f"benchprof-{datetime.now(UTC):%Y%m%dT%H%M%S}",
        )
        profiler = make_profiler(args.profiler)
        clock = Clock(profiler)
        if args.stage == "run":
            result = profile_cli_run(ctx, clock)
        else:
            result = run_stage(args.stage, ctx, clock)
        print(
            json.dumps(
                {k: result[k] for k in ("stage", "seconds", "peak_rss_kib", "rss_before_kib")}
            )
        )
        print(
            f"\n{args.stage}: {result['seconds']:.3f} s under {profiler.name} "
            f"({args.reviews:,} reviews; profiler overhead included)"
        )
        if profiler.name == "cProfile" and args.stage in ("bronze", "copy_text", "copy_binary"):
            print(
                "note: cProfile sees the calling thread only; bronze's Parquet encoder thread "
                "shows up as waits (queue put, thread join), C code as the builtin that calls it"
            )
        print()
        profiler.report(args.top, args.save)
    finally:
        if not args.keep:
            shutil.rmtree(data_dir / "bench", ignore_errors=True)
            if not setup["was_running"]:
                subprocess.run(
                    [sys.executable, "-m", "amazon_reviews.cli", "db", "down"],
                    cwd=REPO,
                    env=child_env(data_dir),
                    capture_output=True,
                    check=False,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
