"""What started a scheduled run, and its idempotency key, from each platform's event.

The key identifies the *scheduled time*, never a delivery attempt: Pub/Sub and
EventBridge deliver at least once, and every delivery of one scheduled time must map to
the same key.

- Google Cloud: Cloud Scheduler publishes one Pub/Sub message per scheduled time and
  Pub/Sub redelivers that same message (same publish time) until it is acknowledged; the
  key is the schedule name (message attribute ``schedule``) and the publish time to the
  minute. The CloudEvent id is the message id, which a scheduler retry would change.
- AWS: EventBridge Scheduler's Input carries ``<aws.scheduler.schedule-arn>`` and
  ``<aws.scheduler.scheduled-time>``; the key is both. The execution id is per attempt.
- HTTP ``POST /retrain`` and the CLI: the caller's ``Idempotency-Key`` / ``--key``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from segmentation import InvalidInput


@dataclass(frozen=True)
class Trigger:
    """One delivery of a run: where it came from, its key, and whether it is forced."""

    source: str  # "cloud_scheduler", "eventbridge", "http" or "cli"
    key: str
    scheduled_at: str | None = None
    force: bool = False

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "key": self.key,
            "scheduled_at": self.scheduled_at,
            "force": self.force,
        }


def _minute(stamp: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise InvalidInput(field, "an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise InvalidInput(field, "a time with a UTC offset")
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _payload(encoded: str | None) -> dict:
    if not encoded:
        return {}
    try:
        doc = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInput("message.data", "base64 of a JSON object") from None
    if not isinstance(doc, dict):
        raise InvalidInput("message.data", "base64 of a JSON object")
    return doc


def from_pubsub(data: dict) -> Trigger:
    """A Cloud Scheduler run from a Pub/Sub ``messagePublished`` CloudEvent's data."""
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise InvalidInput("message", "a Pub/Sub message")
    attributes = message.get("attributes") or {}
    schedule = str(attributes.get("schedule", "retrain"))
    scheduled = _minute(message.get("publishTime") or message.get("publish_time"), "publishTime")
    payload = _payload(message.get("data"))
    return Trigger(
        source="cloud_scheduler",
        key=f"gcp:{schedule}:{scheduled:%Y-%m-%dT%H:%MZ}",
        scheduled_at=scheduled.isoformat(),
        force=payload.get("force") is True,
    )


def from_eventbridge(event: dict) -> Trigger:
    """An EventBridge Scheduler run: the schedule's Input, with ARN and scheduled time."""
    if not isinstance(event, dict):
        raise InvalidInput("event", "a JSON object")
    arn, stamp = event.get("schedule_arn"), event.get("scheduled_time")
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise InvalidInput("schedule_arn", "the schedule's ARN (<aws.scheduler.schedule-arn>)")
    if not isinstance(stamp, str):
        raise InvalidInput("scheduled_time", "<aws.scheduler.scheduled-time>")
    scheduled = _minute(stamp, "scheduled_time")
    return Trigger(
        source="eventbridge",
        key=f"aws:{arn}:{scheduled:%Y-%m-%dT%H:%MZ}",
        scheduled_at=scheduled.isoformat(),
        force=event.get("force") is True,
    )


def from_request(idempotency_key: str | None, body: bytes) -> Trigger:
    """A manual run: ``POST /retrain`` with ``{"force": true}`` and an Idempotency-Key."""
    if not idempotency_key or not 1 <= len(idempotency_key) <= 128:
        raise InvalidInput("Idempotency-Key", "a header of 1 to 128 characters")
    try:
        doc = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("body", "valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("force", False), bool):
        raise InvalidInput("force", "a boolean")
    unknown = sorted(set(doc) - {"force"})
    if unknown:
        raise InvalidInput("body", "only the field force")
    return Trigger(source="http", key=f"manual:{idempotency_key}", force=doc.get("force", False))


def from_cli(key: str | None, force: bool) -> Trigger:
    """A run started by ``segmentation retrain``; a fresh key per call unless given."""
    key = key or f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"
    return Trigger(source="cli", key=f"cli:{key}", force=force)
