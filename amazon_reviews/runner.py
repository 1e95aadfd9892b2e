"""Running the platform through the real Dagster instance (the CLI's engine).

`instance_env()` computes the environment that makes this process, and any plain `dagster`
command, use the project's instance: `DAGSTER_HOME` under the data folder holding a copy of the
top-level `dagster.yaml`, and `DAGSTER_PG_URL` (embedded unless configured). Runs launched
here execute in this process and are recorded in that instance, so they appear in the UI.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from amazon_reviews import batches as batch_ids
from amazon_reviews.config import CONFIG_VAR, HOME_VAR, Settings
from amazon_reviews.io.lake import LAYERS, Lake
from amazon_reviews.io.postgres import instance_url, source_url

LAYER_COMMANDS = {"bronze": "extract", "silver": "transform", "gold": "model"}
MAIN_TABLE = {"bronze": "review", "silver": "review", "gold": "fact_reviews"}


def dagster_home(settings: Settings) -> Path:
    return settings.data_path / "dagster_home"


def instance_env(settings: Settings) -> dict[str, str]:
    """The variables that point Dagster (and this project) at one instance and one database."""
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    template = settings.home / "dagster.yaml"
    if not template.exists():
        raise FileNotFoundError(
            f"{template} not found: run from the project folder or set {HOME_VAR}"
        )
    target = home / "dagster.yaml"
    if not target.exists() or target.read_bytes() != template.read_bytes():
        shutil.copyfile(template, target)
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": instance_url(settings),
        HOME_VAR: str(settings.home),
        "AMAZON_REVIEWS__DATA_DIR": str(settings.data_path),
    }
    if not settings.neon_db_url:
        # The embedded source has no password, so exporting its URL reveals nothing.
        env["NEON_DB_URL"] = source_url(settings)
    if os.environ.get(CONFIG_VAR):
        env[CONFIG_VAR] = os.environ[CONFIG_VAR]
    return env


def get_instance(settings: Settings):
    """The project's Dagster instance (embedded storage started on demand)."""
    from dagster import DagsterInstance

    os.environ.update(instance_env(settings))
    return DagsterInstance.get()


def known_batches(instance) -> list[str]:
    from amazon_reviews.partitions import BATCH_PARTITIONS_NAME

    return list(instance.get_dynamic_partitions(BATCH_PARTITIONS_NAME))


def add_batch(instance, batch_id: str) -> bool:
    """Register a batch partition; return False when it already existed."""
    from amazon_reviews.partitions import BATCH_PARTITIONS_NAME

    batch_ids.validate_batch_id(batch_id)
    if instance.has_dynamic_partition(BATCH_PARTITIONS_NAME, batch_id):
        return False
    instance.add_dynamic_partitions(BATCH_PARTITIONS_NAME, [batch_id])
    return True


def require_batch(instance, batch_id: str) -> str:
    batch_ids.validate_batch_id(batch_id)
    known = known_batches(instance)
    if batch_id not in known:
        raise batch_ids.unknown_batch(batch_id, known)
    return batch_id


@dataclass
class RunOutcome:
    run_id: str
    batch_id: str
    job: str
    success: bool
    failed_steps: list[str]
    failed_checks: list[str]
    error: str | None
    seconds: float


def run_layers(
    settings: Settings,
    batch_id: str,
    layers: tuple[str, ...],
    *,
    instance=None,
    log_level: str = "WARNING",
) -> RunOutcome:
    """Materialise `layers` of one batch, with their checks, in this process, as a recorded run."""
    from dagster import AssetSelection

    from amazon_reviews.definitions import defs

    inst = instance or get_instance(settings)
    job_name = "daily_batch_job" if layers == LAYERS else f"{layers[0]}_job"
    if len(layers) not in (1, len(LAYERS)):
        raise ValueError(f"run one layer or all of them, not {layers}")
    job = defs.resolve_job_def(job_name)
    started = datetime.now(UTC)
    selection = AssetSelection.groups(*layers)
    result = job.execute_in_process(
        instance=inst,
        partition_key=batch_id,
        raise_on_error=False,
        asset_selection=list(selection.resolve(defs.resolve_asset_graph())),
        tags={"amazon_reviews/launched_by": "cli"},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    failed_steps = [
        e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE" and e.step_key
    ]
    failed_checks = []
    for e in result.all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            data = e.event_specific_data
            if not data.passed:
                failed_checks.append(f"{data.asset_key.to_user_string()}:{data.check_name}")
    error = None
    for e in result.all_events:
        if e.event_type_value == "STEP_FAILURE":
            err = e.event_specific_data.error
            while (
                err is not None
                and err.cause is not None
                and (
                    "DagsterExecution" in err.cls_name or err.cls_name == "RetryRequestedFromPolicy"
                )
            ):
                err = err.cause
            if err is not None:
                # Dagster's message already starts with the qualified class name.
                message = err.message.strip()
                error = (
                    message
                    if err.cls_name in message.split(":", 1)[0]
                    else (f"{err.cls_name}: {message}")
                )
            break
    return RunOutcome(
        run_id=result.run_id,
        batch_id=batch_id,
        job=job_name,
        success=result.success and not failed_checks,
        failed_steps=failed_steps,
        failed_checks=failed_checks,
        error=error,
        seconds=(datetime.now(UTC) - started).total_seconds(),
    )


@dataclass
class LayerState:
    layer: str
    complete: bool
    rows: int | None
    created_at: str | None


def batch_states(lake: Lake, batch_id: str) -> list[LayerState]:
    """Per layer: complete or not, total rows of its main tables, when it was written."""
    states = []
    for layer in LAYERS:
        m = lake.manifest(layer, batch_id)
        if m and m.get("status") == "complete":
            # The review grain is what people compare across layers (rejects are separate).
            rows = m.get("rows", {}).get(MAIN_TABLE[layer])
            states.append(LayerState(layer, True, rows, m.get("created_at")))
        else:
            states.append(LayerState(layer, False, None, None))
    return states
