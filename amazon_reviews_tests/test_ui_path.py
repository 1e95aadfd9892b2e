"""The UI path, for real: `dagster-webserver` and `dagster-daemon` as subprocesses on the
project's instance (QueuedRunCoordinator, PostgreSQL storage on the session's embedded server).

A run is launched through the webserver's GraphQL API with the mutation and execution params
the UI's launchpad sends, dequeued by the daemon, and its asset checks are read back through
GraphQL. The daemon also evaluates `daily_batch_schedule` for real: the cron is overridden to
every minute, so a tick creates a batch partition and a run within a minute or two.

One webserver + daemon pair serves the module; it has its own data folder, source database
and instance database, so its schedules and runs never mix with other tests' instance data.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from amazon_reviews import generate
from amazon_reviews.config import Settings, load_settings
from amazon_reviews.io.embedded import ServerInfo
from amazon_reviews.io.lake import LAYERS, Lake
from amazon_reviews.io.source_load import load_chunks
from amazon_reviews.partitions import BATCH_PARTITIONS_NAME
from amazon_reviews.runner import add_batch, instance_env

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "workspace.yaml"
BINDIR = Path(sys.executable).parent
REVIEWS = 500
LOCATION = "amazon_reviews"
REPOSITORY = "__repository__"
JOB = "daily_batch_job"
SCHEDULE = "daily_batch_schedule"
GOLD_KEY = ["gold", "fact_reviews"]
TICK_PARTITION = re.compile(r"^\d{8}T\d{4}00Z$")
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

# --- GraphQL documents (checked against the dagster-graphql 1.13 schema) -------------------

WORKSPACE_QUERY = """
query WorkspaceStatus {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

# The launchpad's mutation (LAUNCH_PIPELINE_EXECUTION_MUTATION in the UI); `launchRun` takes the
# same ExecutionParams and returns the same LaunchRunResult union.
LAUNCH_MUTATION = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { id runId pipelineName status } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
  }
}
"""

RUN_QUERY = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status tags { key value } }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

RUNS_QUERY = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status pipelineName tags { key value } } }
    ... on PythonError { message }
  }
}
"""

GOLD_CHECKS_QUERY = """
query GoldChecks($assetKey: AssetKeyInput!) {
  assetNodes(assetKeys: [$assetKey]) {
    assetKey { path }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name blocking jobNames } }
    }
  }
}
"""

CHECK_EXECUTIONS_QUERY = """
query CheckExecutions($assetKey: AssetKeyInput!, $checkName: String!, $partition: String) {
  assetCheckExecutions(
    assetKey: $assetKey, checkName: $checkName, partition: $partition, limit: 5
  ) {
    runId
    status
    partition
    evaluation { checkName success partition }
  }
}
"""

SCHEDULE_QUERY = """
query ScheduleState($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule {
      cronSchedule
      scheduleState {
        status
        ticks(limit: 5) { status timestamp runIds error { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

# --- the webserver + daemon pair ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _create_database(info: ServerInfo, name: str) -> None:
    conn = psycopg2.connect(info.url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (code servers and run workers included), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in the group
    except ProcessLookupError:
        pass
    proc.wait(10)


@dataclass
class Ui:
    url: str
    settings: Settings
    instance: Any
    logs: dict[str, Path]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        resp = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        resp.raise_for_status()
        body = resp.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def diagnostics(self) -> str:
        parts = []
        for name, path in self.logs.items():
            proc = self.procs.get(name)
            state = "not started" if proc is None else f"returncode={proc.poll()}"
            parts.append(f"--- {name} ({state}) stderr tail ---\n{_tail(path)}")
        return "\n".join(parts)

    @contextmanager
    def explained(self) -> Iterator[None]:
        """Re-raise a failure with both processes' stderr tails attached."""
        try:
            yield
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__}: {exc}\n{self.diagnostics()}", pytrace=True)

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float, every=2.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode} ({what})")
            try:
                last = probe()
            except (requests.RequestException, AssertionError) as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")

    def wait_for_run(self, run_id: str, timeout: float) -> dict:
        def done() -> dict | None:
            run = self.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
            assert run["__typename"] == "Run", run
            return run if run["status"] in TERMINAL else None

        return self.wait_for(f"run {run_id} to finish", done, timeout)


@pytest.fixture(scope="module")
def ui(pg_server: ServerInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """A loaded source, one registered instance, and the webserver + daemon on top of them.

    Mirrors conftest's `env` fixture at module scope, with a private instance database."""
    root = tmp_path_factory.mktemp("ui_path")
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    source_db, instance_db = f"src_ui_{tag}", f"dagster_ui_{tag}"
    _create_database(pg_server, source_db)
    _create_database(pg_server, instance_db)
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("AMAZON_REVIEWS") or key in (
                "NEON_DB_URL",
                "DAGSTER_PG_URL",
                "ALERT_WEBHOOK_URL",
                "PROMETHEUS_PUSHGATEWAY_URL",
                "DAGSTER_HOME",
            ):
                mp.delenv(key, raising=False)
        values = {
            "AMAZON_REVIEWS_HOME": str(REPO),
            "AMAZON_REVIEWS__DATA_DIR": str(root / "data"),
            "NEON_DB_URL": pg_server.url(source_db),
            "DAGSTER_PG_URL": pg_server.url(instance_db, driver="postgresql+psycopg2"),
            # Every minute, so the daemon's scheduler ticks while the module runs. Override
            # values are parsed as YAML, where a bare `*` starts an alias: quote it.
            "AMAZON_REVIEWS__SCHEDULE__CRON": '"* * * * *"',
        }
        for k, v in values.items():
            mp.setenv(k, v)
        settings = load_settings()
        for k, v in instance_env(settings).items():
            mp.setenv(k, v)
        child_env = {**os.environ, **values, **instance_env(settings)}
        child_env["PATH"] = f"{BINDIR}{os.pathsep}{child_env.get('PATH', '')}"

        from dagster import DagsterInstance

        # Created (and its tables migrated) here, before two processes race to do it.
        instance = DagsterInstance.get()
        load_chunks(settings, generate.generate(REVIEWS, seed=11), replace=True, upsert=False)

        port = _free_port()
        logs = {"webserver": root / "webserver.log", "daemon": root / "daemon.log"}
        commands = {
            "webserver": [
                str(BINDIR / "dagster-webserver"),
                *("-h", "127.0.0.1", "-p", str(port), "-w", str(WORKSPACE)),
            ],
            "daemon": [str(BINDIR / "dagster-daemon"), "run", "-w", str(WORKSPACE)],
        }
        handle = Ui(f"http://127.0.0.1:{port}", settings, instance, logs)
        try:
            for name, cmd in commands.items():
                with open(logs[name], "wb") as err:
                    handle.procs[name] = subprocess.Popen(
                        cmd,
                        cwd=REPO,
                        env=child_env,
                        stdin=subprocess.DEVNULL,
                        stdout=err,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            with handle.explained():
                handle.wait_for("the webserver", lambda: _server_info(handle.url), 120)
                handle.wait_for("the code location", lambda: _location_loaded(handle), 180)
            yield handle
        finally:
            for proc in handle.procs.values():
                _stop(proc)
            instance.dispose()


def _server_info(url: str) -> bool:
    return requests.get(f"{url}/server_info", timeout=5).status_code == 200


def _location_loaded(ui: Ui) -> bool:
    ws = ui.graphql(WORKSPACE_QUERY)["workspaceOrError"]
    assert ws["__typename"] == "Workspace", ws
    (entry,) = [e for e in ws["locationEntries"] if e["name"] == LOCATION]
    if entry["loadStatus"] != "LOADED":
        return False
    loaded = entry["locationOrLoadError"]
    if loaded["__typename"] != "RepositoryLocation":
        raise RuntimeError(f"code location failed to load: {loaded}")
    return True


def _gold_on_disk(settings: Settings, batch: str) -> None:
    lake = Lake(settings.data_path)
    assert all(lake.is_complete(layer, batch) for layer in LAYERS), [
        (layer, lake.is_complete(layer, batch)) for layer in LAYERS
    ]
    fact = lake.read("gold", batch, "fact_reviews")
    assert fact.height == lake.read("silver", batch, "review_enriched").height > 0


def _gold_checks_passed(ui: Ui, batch: str, run_id: str) -> list[str]:
    """Every check on gold/fact_reviews executed in `run_id` for `batch` and passed."""
    key = {"path": GOLD_KEY}
    (node,) = ui.graphql(GOLD_CHECKS_QUERY, {"assetKey": key})["assetNodes"]
    checks = node["assetChecksOrError"]
    assert checks["__typename"] == "AssetChecks", checks
    names = sorted(c["name"] for c in checks["checks"] if JOB in c["jobNames"])
    assert "rows_reconcile_with_silver" in names, names
    for name in names:
        executions = ui.graphql(
            CHECK_EXECUTIONS_QUERY, {"assetKey": key, "checkName": name, "partition": batch}
        )["assetCheckExecutions"]
        mine = [e for e in executions if e["runId"] == run_id]
        assert len(mine) == 1, (name, executions)
        (execution,) = mine
        assert execution["status"] == "SUCCEEDED", (name, execution)
        assert execution["partition"] == batch, (name, execution)
        assert execution["evaluation"]["success"] is True, (name, execution)
        assert execution["evaluation"]["partition"] == batch, (name, execution)
    return names


# --- tests ------------------------------------------------------------------------------------


def test_graphql_launch_materializes_partition_and_reports_checks(ui: Ui) -> None:
    batch = "20260110T030000Z"
    assert add_batch(ui.instance, batch)
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": JOB,
        },
        "runConfigData": {},
        "executionMetadata": {
            "tags": [
                {"key": "dagster/partition", "value": batch},
                {"key": "dagster/partition_set", "value": f"{JOB}_partition_set"},
            ]
        },
    }
    with ui.explained():
        launched = ui.graphql(LAUNCH_MUTATION, {"executionParams": params})
        result = launched["launchPipelineExecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        run_id = result["run"]["runId"]
        assert result["run"]["pipelineName"] == JOB
        # QueuedRunCoordinator: only the daemon can move the run on from QUEUED.
        run = ui.wait_for_run(run_id, timeout=240)
        assert run["status"] == "SUCCESS", run
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/partition"] == batch

        names = _gold_checks_passed(ui, batch, run_id)
        assert set(names) >= {
            "gold_present",
            "key_unique_not_null",
            "relevance_score_in_range",
            "rows_reconcile_with_silver",
        }, names
        _gold_on_disk(ui.settings, batch)


def test_daemon_ticks_the_schedule(ui: Ui) -> None:
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "scheduleName": SCHEDULE,
    }
    runs_filter = {
        "pipelineName": JOB,
        "tags": [{"key": "dagster/schedule_name", "value": SCHEDULE}],
    }

    def schedule_run() -> dict | None:
        result = ui.graphql(RUNS_QUERY, {"filter": runs_filter})["runsOrError"]
        assert result["__typename"] == "Runs", result
        for run in result["results"]:
            tags = {t["key"]: t["value"] for t in run["tags"]}
            if TICK_PARTITION.match(tags.get("dagster/partition", "")):
                return run
        return None

    with ui.explained():
        schedule = ui.graphql(SCHEDULE_QUERY, {"selector": selector})["scheduleOrError"]
        assert schedule["__typename"] == "Schedule", schedule
        assert schedule["cronSchedule"] == "* * * * *"
        assert schedule["scheduleState"]["status"] == "RUNNING"
        try:
            first = ui.wait_for("a run requested by a schedule tick", schedule_run, 150, every=3)
        except AssertionError as exc:
            state = ui.graphql(SCHEDULE_QUERY, {"selector": selector})["scheduleOrError"]
            raise AssertionError(f"{exc}\nschedule state: {state}") from None
        run = ui.wait_for_run(first["runId"], timeout=180)
        assert run["status"] == "SUCCESS", run
        tags = {t["key"]: t["value"] for t in run["tags"]}
        batch = tags["dagster/partition"]
        assert tags["batch_id"] == batch
        assert ui.instance.has_dynamic_partition(BATCH_PARTITIONS_NAME, batch)
        _gold_checks_passed(ui, batch, run["runId"])
        _gold_on_disk(ui.settings, batch)
