"""Settings: `config.yaml` < `.env` < environment, validated once; secrets from the environment.

Non-secret settings live in `config.yaml` and may be overridden by variables named
`AMAZON_REVIEWS__<SECTION>__<KEY>` (for example `AMAZON_REVIEWS__EXTRACT__CHUNK_ROWS=50000`),
either in `.env` or in the environment. Secrets (`NEON_DB_URL`, `DAGSTER_PG_URL`,
`ALERT_WEBHOOK_URL`, `PROMETHEUS_PUSHGATEWAY_URL`) are read from `.env` or the environment and
are refused in `config.yaml`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "AMAZON_REVIEWS__"
HOME_VAR = "AMAZON_REVIEWS_HOME"
CONFIG_VAR = "AMAZON_REVIEWS_CONFIG"
SECRET_VARS = ("NEON_DB_URL", "DAGSTER_PG_URL", "ALERT_WEBHOOK_URL", "PROMETHEUS_PUSHGATEWAY_URL")


class ConfigError(ValueError):
    """A setting is invalid; the message names the key, the value and what was expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSettings(_Section):
    connect_timeout_s: float = Field(10.0, gt=0)
    connect_attempts: int = Field(6, ge=1, le=50)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(8.0, gt=0)
    sslmode: str | None = Field(
        None, description="Forced sslmode; default: require for non-local hosts, as is locally."
    )

    @field_validator("sslmode")
    @classmethod
    def _sslmode(cls, v: str | None) -> str | None:
        allowed = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
        if v is not None and v not in allowed:
            raise ValueError(f"one of {sorted(allowed)}")
        return v


class EmbeddedSettings(_Section):
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port once, then keeps it")


class ExtractSettings(_Section):
    chunk_rows: int = Field(100_000, ge=1_000, le=10_000_000)
    compression: str = "zstd"
    compression_level: int = Field(1, ge=1, le=22)


class TransformSettings(_Section):
    max_text_chars: int = Field(10_000, ge=100)
    min_date: date = date(1995, 1, 1)
    chunk_rows: int = Field(100_000, ge=1, le=10_000_000)
    threads: int = Field(2, ge=1, le=64)


class ScoringWeights(_Section):
    helpfulness: float = Field(0.40, ge=0)
    verified: float = Field(0.20, ge=0)
    recency: float = Field(0.20, ge=0)
    text_quality: float = Field(0.20, ge=0)

    @model_validator(mode="after")
    def _positive_sum(self) -> ScoringWeights:
        if self.helpfulness + self.verified + self.recency + self.text_quality <= 0:
            raise ValueError("weights whose sum is positive (at least one weight above 0)")
        return self


class ModelSettings(_Section):
    weights: ScoringWeights = ScoringWeights()
    helpful_votes_saturation: int = Field(50, ge=1)
    recency_half_life_days: float = Field(365.0, gt=0)
    text_length_target: int = Field(400, ge=1)


class ScheduleSettings(_Section):
    cron: str = "0 3 * * *"
    timezone: str = "UTC"
    gold_deadline_minutes: int = Field(120, ge=1)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from dagster._utils.schedules import is_valid_cron_string

        if len(v.split()) != 5 or not is_valid_cron_string(v):
            raise ValueError("a valid five-field cron expression such as '0 3 * * *'")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("an IANA time zone such as 'UTC' or 'Europe/Paris'") from None
        return v


class RetentionSettings(_Section):
    days: int = Field(30, ge=1)
    keep_last: int = Field(3, ge=1)


class AlertSettings(_Section):
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_attempts: int = Field(3, ge=1, le=10)


class Settings(_Section):
    data_dir: Path = Path("data")
    source: SourceSettings = SourceSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()
    extract: ExtractSettings = ExtractSettings()
    transform: TransformSettings = TransformSettings()
    model: ModelSettings = ModelSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    retention: RetentionSettings = RetentionSettings()
    alerts: AlertSettings = AlertSettings()

    # Secrets: never in config.yaml, never printed unmasked.
    neon_db_url: str | None = Field(None, repr=False)
    dagster_pg_url: str | None = Field(None, repr=False)
    alert_webhook_url: str | None = Field(None, repr=False)
    prometheus_pushgateway_url: str | None = Field(None, repr=False)

    home: Path = Path(".")

    @property
    def data_path(self) -> Path:
        p = self.data_dir if self.data_dir.is_absolute() else self.home / self.data_dir
        return p.resolve()


def project_home(environ: Mapping[str, str] | None = None) -> Path:
    """The project folder: `$AMAZON_REVIEWS_HOME`, else the current directory."""
    env = os.environ if environ is None else environ
    return Path(env.get(HOME_VAR) or os.getcwd()).resolve()


def _set_path(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    node = tree
    for k in keys[:-1]:
        child = node.get(k)
        if not isinstance(child, dict):
            child = {}
            node[k] = child
        node = child
    node[keys[-1]] = value


def _env_value(value: str) -> Any:
    """A variable's value as YAML (so numbers and booleans type themselves), else as text:
    `* * * * *` is a YAML alias, not a cron expression, to a YAML parser."""
    if value == "":
        return None
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _merge_env(tree: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
            if keys:
                _set_path(tree, keys, _env_value(value))
        elif name in SECRET_VARS and value:
            tree[name.lower()] = value


def load_settings(
    environ: Mapping[str, str] | None = None, *, home: Path | None = None
) -> Settings:
    """Load and validate settings from `config.yaml`, `.env` and the environment.

    Args:
        environ: the environment to read (defaults to `os.environ`).
        home: the project folder (defaults to `project_home()`).

    Raises:
        ConfigError: naming the file or variable, the key, the value and what was expected.
    """
    env = dict(os.environ if environ is None else environ)
    root = home or project_home(env)
    config_path = Path(env.get(CONFIG_VAR) or root / "config.yaml")
    tree: dict[str, Any] = {}
    if config_path.exists():
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_path}: expected a mapping at the top level")
        for secret in SECRET_VARS:
            if secret.lower() in loaded:
                raise ConfigError(
                    f"{config_path}: key {secret.lower()!r} is a secret; "
                    f"set {secret} in the environment or .env instead"
                )
        tree.update(loaded)
    dotenv_path = root / ".env"
    if dotenv_path.exists():
        _merge_env(tree, {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    _merge_env(tree, env)
    tree["home"] = root
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            value = err.get("input")
            shown = mask_url(value) if isinstance(value, str) else value
            if err["type"] == "extra_forbidden":
                expected = "no such setting (unknown key; see config.yaml for the known ones)"
            else:
                expected = err["msg"].removeprefix("Value error, ")
            problems.append(f"{key} = {shown!r}: expected {expected}")
        raise ConfigError(
            f"invalid configuration ({config_path}, .env, {ENV_PREFIX}* variables):\n  "
            + "\n  ".join(problems)
        ) from None


_PASSWORD_IN_TEXT = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@\s]+@"
)
_PASSWORD_PARAM = re.compile(r"(?i)(password=)[^&\s]+")


def mask_url(url: str) -> str:
    """Hide the password in a URL: `postgresql://user:***@host/db`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    if parts.password is None:
        return _PASSWORD_PARAM.sub(r"\1***", url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}"
    return _PASSWORD_PARAM.sub(r"\1***", urlunsplit(parts._replace(netloc=netloc)))


def mask_text(text: str) -> str:
    """Hide every URL password (and `password=` parameter) inside free text."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD_IN_TEXT.sub(r"\g<scheme>\g<user>:***@", text))
