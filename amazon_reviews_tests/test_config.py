"""Settings: precedence, validation errors, secrets, URL masking and TLS policy."""

from pathlib import Path

import pytest

from amazon_reviews.config import ConfigError, load_settings, mask_text, mask_url
from amazon_reviews.io.postgres import instance_url, with_tls


def _home(tmp_path: Path, config: str = "", dotenv: str = "") -> Path:
    (tmp_path / "config.yaml").write_text(config)
    if dotenv:
        (tmp_path / ".env").write_text(dotenv)
    return tmp_path


def test_defaults_without_any_file(tmp_path: Path) -> None:
    s = load_settings({}, home=tmp_path)
    assert s.extract.chunk_rows == 100_000
    assert s.data_path == (tmp_path / "data").resolve()
    assert s.neon_db_url is None


def test_precedence_config_then_dotenv_then_environment(tmp_path: Path) -> None:
    home = _home(
        tmp_path,
        config=(
            "extract:\n  chunk_rows: 5000\nretention:\n  days: 10\nschedule:\n  cron: '0 1 * * *'\n"
        ),
        dotenv="AMAZON_REVIEWS__EXTRACT__CHUNK_ROWS=6000\nAMAZON_REVIEWS__RETENTION__DAYS=11\n",
    )
    s = load_settings({"AMAZON_REVIEWS__EXTRACT__CHUNK_ROWS": "7000"}, home=home)
    assert s.extract.chunk_rows == 7000  # environment beats .env
    assert s.retention.days == 11  # .env beats config.yaml
    assert s.schedule.cron == "0 1 * * *"  # config.yaml beats the default


def test_secrets_come_from_dotenv_or_environment(tmp_path: Path) -> None:
    home = _home(tmp_path, dotenv="NEON_DB_URL=postgresql://u:dotenvpw@h/db\n")
    assert load_settings({}, home=home).neon_db_url == "postgresql://u:dotenvpw@h/db"
    s = load_settings({"NEON_DB_URL": "postgresql://u:envpw@h/db"}, home=home)
    assert s.neon_db_url == "postgresql://u:envpw@h/db"
    assert "envpw" not in repr(s)


def test_secret_in_config_yaml_is_refused(tmp_path: Path) -> None:
    home = _home(tmp_path, config="neon_db_url: postgresql://u:pw@h/db\n")
    with pytest.raises(ConfigError, match=r"neon_db_url.*secret.*NEON_DB_URL"):
        load_settings({}, home=home)


@pytest.mark.parametrize(
    ("env", "key", "value", "expected"),
    [
        (
            {"AMAZON_REVIEWS__EXTRACT__CHUNK_ROWS": "ten"},
            "extract.chunk_rows",
            "'ten'",
            "valid integer",
        ),
        (
            {"AMAZON_REVIEWS__SCHEDULE__CRON": "every day"},
            "schedule.cron",
            "'every day'",
            "five-field cron",
        ),
        (
            {"AMAZON_REVIEWS__SCHEDULE__TIMEZONE": "Mars/Base"},
            "schedule.timezone",
            "'Mars/Base'",
            "IANA time zone",
        ),
        ({"AMAZON_REVIEWS__RETENTION__DAYS": "0"}, "retention.days", "0", "greater than or equal"),
        ({"AMAZON_REVIEWS__EXTRACT__CHUNKROWS": "5"}, "extract.chunkrows", "5", "unknown key"),
    ],
)
def test_bad_value_names_key_value_and_expectation(
    tmp_path: Path, env: dict, key: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env, home=tmp_path)
    message = str(err.value)
    assert f"{key} = {value}" in message
    assert expected in message


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    home = _home(tmp_path, config="extract: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: not valid YAML"):
        load_settings({}, home=home)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://user:s3cret@host/db", "postgresql://user:***@host/db"),
        (
            "postgresql+psycopg2://u:p%40ss@h:5432/d?sslmode=require",
            "postgresql+psycopg2://u:***@h:5432/d?sslmode=require",
        ),
        ("postgresql://host/db?password=s3cret&x=1", "postgresql://host/db?password=***&x=1"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_text_hides_passwords_inside_messages() -> None:
    text = 'could not connect to "postgresql://amazon:hunter2@ep-x.neon.tech/db": timeout'
    assert "hunter2" not in mask_text(text)
    assert "amazon:***@ep-x.neon.tech" in mask_text(text)


def test_tls_required_for_remote_hosts_only() -> None:
    assert "sslmode=require" in with_tls("postgresql://u:p@ep-x.neon.tech/db")
    assert "sslmode" not in with_tls("postgresql://u@127.0.0.1:5432/db")
    assert "sslmode=disable" in with_tls("postgresql://u@remote/db?sslmode=disable")
    assert "sslmode=verify-full" in with_tls("postgresql://u@remote/db", "verify-full")


def test_instance_url_uses_psycopg2_driver(tmp_path: Path) -> None:
    s = load_settings({"DAGSTER_PG_URL": "postgresql://d:pw@127.0.0.1/dagster"}, home=tmp_path)
    assert instance_url(s) == "postgresql+psycopg2://d:pw@127.0.0.1/dagster"


def test_environment_values_that_are_not_yaml_are_taken_as_text(tmp_path: Path) -> None:
    s = load_settings({"AMAZON_REVIEWS__SCHEDULE__CRON": "* * * * *"}, home=tmp_path)
    assert s.schedule.cron == "* * * * *"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"AMAZON_REVIEWS__SCHEDULE__CRON": "99 3 * * *"}, "schedule.cron"),
        (
            {
                "AMAZON_REVIEWS__MODEL__WEIGHTS__HELPFULNESS": "0",
                "AMAZON_REVIEWS__MODEL__WEIGHTS__VERIFIED": "0",
                "AMAZON_REVIEWS__MODEL__WEIGHTS__RECENCY": "0",
                "AMAZON_REVIEWS__MODEL__WEIGHTS__TEXT_QUALITY": "0",
            },
            "model.weights",
        ),
    ],
)
def test_values_that_would_only_fail_later_fail_at_start(
    tmp_path: Path, env: dict, key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(env, home=tmp_path)
