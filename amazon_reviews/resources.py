"""Thin resources: the source database, the lake and the alert channels.

Settings are loaded when a run starts, not when the code location is imported, so loading
definitions never touches the environment, the network or the disk.
"""

import dagster as dg

from amazon_reviews.config import Settings, load_settings
from amazon_reviews.io.alerts import AlertSink
from amazon_reviews.io.lake import Lake
from amazon_reviews.io.postgres import source_url


class SourceDatabase(dg.ConfigurableResource):
    """The source PostgreSQL: `NEON_DB_URL`, else the embedded server under the data folder."""

    def settings(self) -> Settings:
        return load_settings()

    def url(self) -> str:
        return source_url(self.settings())


class LakeResource(dg.ConfigurableResource):
    """The Parquet lake under the data folder (`data/<layer>/batch=<id>/`)."""

    def settings(self) -> Settings:
        return load_settings()

    def lake(self) -> Lake:
        return Lake(self.settings().data_path)


class AlertsResource(dg.ConfigurableResource):
    """Alert channels: the log, `data/alerts/alerts.jsonl`, and `ALERT_WEBHOOK_URL` if set."""

    def sink(self) -> AlertSink:
        return alert_sink(load_settings())


def alert_sink(settings: Settings) -> AlertSink:
    return AlertSink(
        settings.data_path / "alerts",
        settings.alert_webhook_url,
        timeout_s=settings.alerts.webhook_timeout_s,
        attempts=settings.alerts.webhook_attempts,
    )
