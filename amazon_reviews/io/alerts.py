"""Alert delivery: a structured log line, `data/alerts/alerts.jsonl`, and a Slack-compatible
webhook when `ALERT_WEBHOOK_URL` is set.

Delivery never raises: an alert is raised from sensors, and a failing channel must not take the
sensor down with it. A webhook failure is logged and recorded beside the alert in the JSONL
file, so the on-call can see that the chat channel missed it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from amazon_reviews.config import mask_text

log = logging.getLogger("amazon_reviews.alerts")

RUNBOOK = "docs/runbooks.md"


@dataclass
class Alert:
    """One alert: what happened, to what, and the runbook section that fixes it."""

    kind: str
    title: str
    message: str
    severity: str = "error"
    batch_id: str | None = None
    run_id: str | None = None
    runbook: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["message"] = mask_text(self.message)
        data["title"] = mask_text(self.title)
        return data

    def slack_payload(self) -> dict[str, Any]:
        icon = {"error": ":red_circle:", "warning": ":warning:", "info": ":large_green_circle:"}
        lines = [
            f"{icon.get(self.severity, '')} *{mask_text(self.title)}*",
            mask_text(self.message),
        ]
        if self.batch_id:
            lines.append(f"batch: `{self.batch_id}`")
        if self.run_id:
            lines.append(f"run: `{self.run_id}`")
        if self.runbook:
            lines.append(f"runbook: {self.runbook}")
        return {"text": "\n".join(lines)}


@dataclass
class Delivery:
    jsonl: bool
    webhook: str  # "sent", "failed: <reason>", or "not configured"


class AlertSink:
    """Where alerts go. Build one per evaluation; it holds no connection."""

    def __init__(
        self,
        alerts_dir: Path,
        webhook_url: str | None = None,
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.path = Path(alerts_dir) / "alerts.jsonl"
        self.webhook_url = webhook_url
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s

    def send(self, alert: Alert) -> Delivery:
        """Deliver to every channel; never raises."""
        webhook = "not configured"
        if self.webhook_url:
            webhook = self._post(alert)
        record = {**alert.record(), "webhook": webhook}
        log.warning("ALERT %s", json.dumps(record, sort_keys=True))
        ok = self._append(record)
        return Delivery(jsonl=ok, webhook=webhook)

    def _append(self, record: dict[str, Any]) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                fh.write(json.dumps(record, sort_keys=True) + "\n")
                fh.flush()
            return True
        except OSError as exc:
            log.error("could not append alert to %s: %s", self.path, exc)
            return False

    def _post(self, alert: Alert) -> str:
        body = json.dumps(alert.slack_payload()).encode()
        last = ""
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(
                self.webhook_url or "",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                    if 200 <= resp.status < 300:
                        return "sent"
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
                last = mask_text(str(getattr(exc, "reason", exc)))
            log.warning(
                "webhook %s failed (attempt %d/%d): %s",
                webhook_origin(self.webhook_url or ""),
                attempt,
                self.attempts,
                last,
            )
            if attempt < self.attempts:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        return f"failed: {last}"


def webhook_origin(url: str) -> str:
    """Scheme and host only: a webhook's path is its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/***"


def read_alerts(alerts_dir: Path) -> list[dict[str, Any]]:
    path = Path(alerts_dir) / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
