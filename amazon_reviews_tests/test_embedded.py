"""The embedded PostgreSQL: reuse, concurrent starts, stale pid recovery, stop."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from amazon_reviews.io.embedded import EmbeddedServer


def test_start_twice_and_from_two_processes_reuses_one_server(tmp_path: Path) -> None:
    code = (
        "import sys; from amazon_reviews.io.embedded import EmbeddedServer; "
        "print(EmbeddedServer(sys.argv[1]).ensure_running().pid)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    pids = {p.communicate(timeout=120)[0].strip() for p in procs}
    server = EmbeddedServer(tmp_path)
    try:
        assert len(pids) == 1
        info = server.ensure_running()
        assert str(info.pid) in pids
        with psycopg2.connect(info.url("amazon")) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone()[0] == "amazon"
        with psycopg2.connect(info.url("dagster")) as conn:
            assert conn.status is not None

        # A crash: the postmaster dies without removing its pid file.
        os.kill(info.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{info.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (info.pgdata / "postmaster.pid").exists()
        assert server.status() is None
        again = server.ensure_running()
        assert again.pid != info.pid
        with psycopg2.connect(again.url("amazon")) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        assert server.stop() is True
    assert server.status() is None
    assert server.stop() is False
