"""The lake on disk: `data/<layer>/batch=<id>/<table>.parquet` plus `manifest.json`, written last.

All lake writes go through this module. A batch is written into a staging folder beside the
layer, its manifest last, and then renamed into place, so a reader either sees a whole batch
or none; a crash leaves only a staging folder, which is never read and is swept later. Runs of
the same layer and batch take an exclusive file lock, so two never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from amazon_reviews.batches import validate_batch_id

LAYERS = ("bronze", "silver", "gold")
MANIFEST = "manifest.json"
_STAGING = ".staging"
_TRASH = ".trash"
_LOCKS = ".locks"


class LayerIncomplete(FileNotFoundError):
    """An upstream layer has no complete batch; the message says what to run."""


class LakeIntegrityError(RuntimeError):
    """A file does not match its manifest (rows, bytes or checksum)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class HashingFile:
    """A binary file that hashes what is written through it (for streamed Parquet writers)."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "wb")
        self._hash = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self.closed = True

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@dataclass
class TableWritten:
    name: str
    path: Path
    rows: int
    bytes: int
    sha256: str
    columns: dict[str, str]

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "file": f"{self.name}.parquet",
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "columns": self.columns,
        }


_PARQUET: dict[str, Any] = {"compression": "zstd", "compression_level": 1}


class ParquetStream:
    """One Parquet file encoded by its own thread from a bounded queue of tables.

    The caller hands over row groups and goes on with its next chunk while this thread encodes
    (pyarrow releases the GIL), so memory stays at `depth` queued tables. The file is hashed as
    it is written. An encoding error is raised to the caller at its next `put` or at `close`.
    """

    def __init__(self, path: Path, schema: pa.Schema, depth: int = 2, **options: Any) -> None:
        self.schema = schema
        self._sink = HashingFile(path)
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=depth)
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._encode,
            args=({**_PARQUET, **options},),
            name=f"parquet-{path.stem}",
            daemon=True,
        )
        self._thread.start()

    def _encode(self, options: dict[str, Any]) -> None:
        finished = False
        try:
            with pq.ParquetWriter(self._sink, self.schema, **options) as writer:
                while (table := self._queue.get()) is not None:
                    writer.write_table(table)
                finished = True
        except BaseException as exc:
            self._failure.append(exc)
            # Keep taking tables until the end marker, so a producer never blocks on a full
            # queue (unless the marker was already taken: then closing the file failed).
            while not finished and self._queue.get() is not None:
                pass

    def put(self, table: pa.Table) -> None:
        if self._failure:
            raise self._failure[0]
        self._queue.put(table.cast(self.schema))

    def close(self) -> str:
        """Finish the file; return its sha256."""
        self._queue.put(None)
        self._thread.join()
        self._sink.close()
        if self._failure:
            raise self._failure[0]
        return self._sink.hexdigest()

    def abort(self) -> None:
        """Stop after an error elsewhere (the staging folder holding the file is removed)."""
        with contextlib.suppress(BaseException):
            self.close()


def close_streams(streams: dict[str, ParquetStream]) -> dict[str, str]:
    """Close every stream (each waits for its encoder); return name -> sha256, or raise the
    first failure once all are closed, so no encoder thread outlives the call."""
    digests: dict[str, str] = {}
    failure: BaseException | None = None
    for name, stream in streams.items():
        try:
            digests[name] = stream.close()
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return digests


class FileSpill:
    """Chunks kept on disk between two passes, as LZ4 Arrow IPC: fast both ways, and read
    into memory rather than memory-mapped (mapped pages of every chunk would count against
    the process)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: list[Path] = []

    def put(self, frame: pl.DataFrame) -> None:
        path = self.root / f"{len(self.paths):06d}.arrow"
        frame.write_ipc(path, compression="lz4")
        self.paths.append(path)

    def get(self, index: int) -> pl.DataFrame:
        # Read with pyarrow into memory: Polars' IPC scans were measured keeping about 28 MB
        # per file allocated until the process ended (2.8 GB over a 10M-review table).
        with pa.OSFile(str(self.paths[index])) as fh:
            return pl.DataFrame(pa.ipc.open_file(fh).read_all())

    def scan(self, index: int) -> pl.LazyFrame:
        return self.get(index).lazy()

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class BatchWriter:
    """Collects the tables of one layer's batch in a staging folder."""

    lake: Lake
    layer: str
    batch: str
    staging: Path
    tables: dict[str, TableWritten] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def path_for(self, name: str) -> Path:
        p = self.staging / f"{name}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_frame(self, name: str, frame: pl.DataFrame | pl.LazyFrame) -> TableWritten:
        """Write a table (name may hold a sub-folder: `rejected/review`) as zstd Parquet."""
        path = self.path_for(name)
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(path, **_PARQUET)
        else:
            frame.write_parquet(path, statistics=True, **_PARQUET)
        return self.record(name, path)

    @contextlib.contextmanager
    def streams(self) -> Iterator[Callable[[str, pl.DataFrame], None]]:
        """Append frames to several tables at once: `emit(name, frame)` queues the frame as the
        next row group(s) of that table's file, which its own thread encodes (so several
        outputs, and the caller's next chunk, are worked on at once); the files are registered
        when the block ends. The first frame of a table fixes its schema; every table must get
        at least one frame (an empty one is fine)."""
        files: dict[str, ParquetStream] = {}

        def emit(name: str, frame: pl.DataFrame) -> None:
            # String views pass to Arrow without a copy of the text; the file keeps the plain
            # Parquet types only (no Arrow schema), so readers see ordinary strings.
            table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
            if name not in files:
                files[name] = ParquetStream(self.path_for(name), table.schema, store_schema=False)
            files[name].put(table)

        try:
            yield emit
        except BaseException:
            for stream in files.values():
                stream.abort()
            raise
        for name, digest in close_streams(files).items():
            self.record(name, self.path_for(name), sha256=digest)

    @contextlib.contextmanager
    def scratch(self) -> Iterator[FileSpill]:
        """Scratch files for intermediate chunks, beside the staging folder (never published,
        removed when the block ends; a crash leaves them with the staging folder)."""
        path = self.staging.with_name(self.staging.name + ".scratch")
        path.mkdir(parents=True)
        try:
            yield FileSpill(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def record(self, name: str, path: Path, *, sha256: str | None = None) -> TableWritten:
        """Register a file already written into the staging folder (streamed writers pass the
        digest they computed while writing, which spares reading the file again)."""
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
        written = TableWritten(
            name=name,
            path=path,
            rows=meta.num_rows,
            bytes=path.stat().st_size,
            sha256=sha256 or sha256_file(path),
            columns={f.name: str(f.type) for f in schema},
        )
        self.tables[name] = written
        return written


class Lake:
    """The local lake rooted at `root` (normally `<data_dir>`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def layer_dir(self, layer: str) -> Path:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; expected one of {LAYERS}")
        return self.root / layer

    def batch_dir(self, layer: str, batch: str) -> Path:
        return self.layer_dir(layer) / f"batch={validate_batch_id(batch)}"

    def table_path(self, layer: str, batch: str, name: str) -> Path:
        return self.batch_dir(layer, batch) / f"{name}.parquet"

    def manifest(self, layer: str, batch: str) -> dict[str, Any] | None:
        path = self.batch_dir(layer, batch) / MANIFEST
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    def is_complete(self, layer: str, batch: str) -> bool:
        m = self.manifest(layer, batch)
        return bool(m and m.get("status") == "complete")

    def batches(self, layer: str) -> list[str]:
        d = self.layer_dir(layer)
        if not d.exists():
            return []
        return sorted(
            p.name.removeprefix("batch=")
            for p in d.iterdir()
            if p.is_dir() and p.name.startswith("batch=")
        )

    def require(self, layer: str, batch: str, *, needed_by: str, command: str) -> dict[str, Any]:
        """The manifest of a complete batch, or an error saying which layer and what to run."""
        m = self.manifest(layer, batch)
        if not m or m.get("status") != "complete":
            raise LayerIncomplete(
                f"batch {batch!r} has no complete {layer} layer, which {needed_by} needs; "
                f"run `{command}` first"
            )
        # Cheap integrity gate (sizes and Parquet footers; the checks also verify sha256): a
        # file changed since its manifest was written must not flow downstream.
        problems = []
        for name, entry in m.get("tables", {}).items():
            p = self.table_path(layer, batch, name)
            if not p.exists():
                problems.append(f"{p} is missing")
            elif p.stat().st_size != entry["bytes"]:
                problems.append(f"{p} is {p.stat().st_size} bytes, manifest says {entry['bytes']}")
            else:
                try:
                    rows = pq.read_metadata(p).num_rows
                except (OSError, pa.ArrowException) as exc:
                    problems.append(f"{p} is not readable Parquet ({exc})")
                    continue
                if rows != entry["rows"]:
                    problems.append(f"{p} holds {rows} rows, manifest says {entry['rows']}")
        if problems:
            raise LakeIntegrityError(
                f"{layer} batch {batch!r} does not match its manifest: "
                + "; ".join(problems)
                + f". {needed_by} refuses it; re-run `{command}`"
            )
        return m

    def scan(self, layer: str, batch: str, name: str) -> pl.LazyFrame:
        return pl.scan_parquet(self.table_path(layer, batch, name))

    def read(self, layer: str, batch: str, name: str) -> pl.DataFrame:
        return pl.read_parquet(self.table_path(layer, batch, name))

    def iter_frames(self, layer: str, batch: str, name: str, rows: int) -> Iterator[pl.DataFrame]:
        """A table in chunks of at most `rows` rows, always the same chunks for the same file
        (an empty table gives one empty frame, so its schema still comes through).

        Each chunk is its own slice scan, which reads only the row groups it needs. (pyarrow's
        `iter_batches` was measured keeping about 10 MB per chunk allocated until the end of
        the file: 1.5 GB over a 10M-review table.)"""
        path = self.table_path(layer, batch, name)
        total = pq.read_metadata(path).num_rows
        if total == 0:
            yield pl.read_parquet(path)
        for offset in range(0, total, rows):
            yield pl.scan_parquet(path).slice(offset, rows).collect()

    @contextlib.contextmanager
    def lock(self, layer: str, batch: str) -> Iterator[None]:
        """Exclusive lock on one layer of one batch, across processes."""
        d = self.layer_dir(layer) / _LOCKS
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"batch={validate_batch_id(batch)}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def write_batch(
        self, layer: str, batch: str, manifest_extra: dict[str, Any] | None = None
    ) -> Iterator[BatchWriter]:
        """Stage a whole batch, then publish it atomically with its manifest written last.

        On any exception the staging folder is removed and a previous batch stays intact.
        """
        final = self.batch_dir(layer, batch)
        staging_root = self.layer_dir(layer) / _STAGING
        staging = staging_root / f"batch={batch}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        started = datetime.now(UTC)
        with self.lock(layer, batch):
            staging.mkdir(parents=True)
            try:
                writer = BatchWriter(self, layer, batch, staging, extra=dict(manifest_extra or {}))
                yield writer
                rows = {n: t.rows for n, t in sorted(writer.tables.items())}
                extra = {**writer.extra, "rows": rows}
                manifest = {
                    "layer": layer,
                    "batch_id": batch,
                    "status": "complete",
                    "created_at": datetime.now(UTC).isoformat(),
                    "started_at": started.isoformat(),
                    "code_version": code_version(),
                    "tables": {n: t.manifest_entry() for n, t in sorted(writer.tables.items())},
                    **extra,
                }
                manifest.setdefault("durations_s", {})["write"] = round(
                    (datetime.now(UTC) - started).total_seconds(), 3
                )
                atomic_write_bytes(
                    staging / MANIFEST, json.dumps(manifest, indent=2, default=str).encode()
                )
                _fsync_dir(staging)
                self._publish(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise

    def _publish(self, staging: Path, final: Path) -> None:
        trash = None
        if final.exists():
            trash = self.layer_dir(final.parent.name) / _TRASH / f"{final.name}.{uuid.uuid4().hex}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(final, trash)
        os.replace(staging, final)
        _fsync_dir(final.parent)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def delete_batch(self, layer: str, batch: str) -> int:
        """Remove one layer's batch; return the bytes freed."""
        d = self.batch_dir(layer, batch)
        if not d.exists():
            return 0
        freed = dir_size(d)
        with self.lock(layer, batch):
            trash = self.layer_dir(layer) / _TRASH / f"{d.name}.{uuid.uuid4().hex}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(d, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return freed

    def repair_command(self, batch: str) -> str:
        """The least work that completes a batch: resume from its newest complete layer (a new
        `run` would take a new snapshot of the source)."""
        if self.is_complete("silver", batch):
            return f"amazon-reviews model --batch-id {batch}"
        if self.is_complete("bronze", batch):
            return (
                f"amazon-reviews transform --batch-id {batch} && "
                f"amazon-reviews model --batch-id {batch}"
            )
        return f"amazon-reviews run --batch-id {batch}"

    def verify(self, layer: str, batch: str, tables: list[str] | None = None) -> list[str]:
        """Problems between the files and the manifest (bytes, checksum), in words; all tables,
        or only `tables`."""
        m = self.manifest(layer, batch)
        if m is None:
            return [f"{layer} batch {batch}: manifest.json missing"]
        problems = []
        for name, entry in m.get("tables", {}).items():
            if tables is not None and name not in tables:
                continue
            p = self.table_path(layer, batch, name)
            if not p.exists():
                problems.append(f"{layer}/{name}: file {p.name} missing")
                continue
            size = p.stat().st_size
            if size != entry["bytes"]:
                problems.append(
                    f"{layer}/{name}: {size} bytes on disk, manifest says {entry['bytes']}"
                )
            digest = sha256_file(p)
            if digest != entry["sha256"]:
                problems.append(
                    f"{layer}/{name}: sha256 {digest[:12]}… differs from manifest "
                    f"{entry['sha256'][:12]}…"
                )
        return problems


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("amazon-reviews")
    except PackageNotFoundError:
        return "unknown"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
