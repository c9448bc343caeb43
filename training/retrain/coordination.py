"""Exactly one effect per scheduled time, one writer at a time, both kept in the store.

- A **claim** ``claims/<key>.json`` names the run that took an idempotency key. It is
  created with a create-only write, so of two deliveries of the same scheduled time only
  one claims it. A claimed key whose run finished is done: later deliveries are
  duplicates. A claimed key whose run never finished (the process was killed) may be
  taken over, by compare-and-swap, by the next run that holds the lease.
- The **lease** ``lease.json`` names the one run allowed to write, until ``expires_at``.
  It is taken and released by compare-and-swap; an overlapping run finds it held and
  exits as "busy"; a lease left by a killed run is taken over once it has expired.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from segmentation import StoreConflict
from segmentation.store import ModelStore
from training.release import ledger

LEASE_KEY = "lease.json"
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._:+-]")


def claim_key(idempotency_key: str) -> str:
    """Store key of the claim for ``idempotency_key`` (unsafe characters replaced)."""
    return f"claims/{_KEY_UNSAFE.sub('_', idempotency_key)[:200]}.json"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Claim:
    """Who holds an idempotency key, and whether that run finished."""

    run_id: str
    finished: bool


def read_claim(store: ModelStore, idempotency_key: str) -> tuple[Claim | None, str | None]:
    """The key's claim (None if unclaimed) and its compare-and-swap token."""
    data, token = store.read_versioned(claim_key(idempotency_key))
    if data is None:
        return None, None
    run_id = json.loads(data)["run_id"]
    run = ledger.read_run(store, run_id)
    return Claim(run_id, run is not None and run.finished is not None), token


def take_claim(store: ModelStore, idempotency_key: str, run_id: str) -> bool:
    """Claim the key for ``run_id``; False if another run holds it and finished, or holds
    it still. Call while holding the lease, so an unfinished holder is known dead."""
    doc = json.dumps({"run_id": run_id, "claimed_at": _now().isoformat()}).encode()
    claim, token = read_claim(store, idempotency_key)
    if claim is not None and claim.finished:
        return False
    try:
        # No claim yet: create-only. A dead run's claim: replace exactly that claim.
        store.write_if(claim_key(idempotency_key), doc, token)
    except StoreConflict:
        return False
    return True


@dataclass(frozen=True)
class Lease:
    """The writer's lease as held: who, until when, and the token to release it."""

    holder: str
    expires_at: datetime
    token: str


def acquire_lease(store: ModelStore, run_id: str, seconds: float) -> Lease | None:
    """Take the lease for ``seconds``; None when another run holds an unexpired one."""
    data, token = store.read_versioned(LEASE_KEY)
    now = _now()
    if data is not None:
        held = json.loads(data)
        if not held.get("released") and datetime.fromisoformat(held["expires_at"]) > now:
            return None
    expires = now + timedelta(seconds=seconds)
    doc = {"holder": run_id, "acquired_at": now.isoformat(), "expires_at": expires.isoformat()}
    try:
        store.write_if(LEASE_KEY, json.dumps(doc).encode(), token)
    except StoreConflict:
        return None  # another run took it between our read and our write
    _, new_token = store.read_versioned(LEASE_KEY)
    if new_token is None:
        return None
    return Lease(run_id, expires, new_token)


def release_lease(store: ModelStore, lease: Lease) -> None:
    """Give the lease back; a no-op when it was taken over after expiring."""
    doc = {"holder": lease.holder, "released": True, "released_at": _now().isoformat()}
    # A conflict means it expired and was taken over: the new holder's lease stands.
    with contextlib.suppress(StoreConflict):
        store.write_if(LEASE_KEY, json.dumps(doc).encode(), lease.token)
