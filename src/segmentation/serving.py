"""The model holder: one verified model per process, refreshed when the pointer moves.

Built for how serverless platforms run code: Lambda freezes the environment between
invocations and Cloud Functions (2nd gen) throttles the CPU outside requests, so nothing
here relies on a thread that runs between requests.

- Lambda loads and verifies the model during its init phase (:meth:`ModelHolder.load`,
  at module scope; nothing forks there). Cloud Functions and the emulator load on the
  first request: gunicorn imports the function module in a parent it forks workers from,
  and onnxruntime must not be imported before the fork. The first requests wait for that
  load up to ``load_wait`` seconds (an ordinary cold start never answers 503), then get
  ``ModelNotReady`` (503 with Retry-After) while the load goes on.
- Pointer refresh on request: a request that finds the last pointer check older than
  ``ttl_seconds`` starts one check in a short-lived thread and is served by the current
  model without waiting; so a promotion reaches an instance with its next requests, and
  a slow store delays no request. One check runs at a time.
- The served model is one attribute holding an immutable :class:`~segmentation.bundle.Bundle`.
  A request takes the reference once and finishes on it; a check verifies a new version
  completely and then swaps the reference. A version that fails verification is refused
  (and remembered, versions being immutable) while the old one keeps serving.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from segmentation.bundle import Bundle, load_bundle
from segmentation.errors import ModelContractError, ModelNotReady
from segmentation.store import ModelStore, Pointer, open_store

log = logging.getLogger("segmentation.serving")

#: Seconds the first requests of an instance wait for its model (well above a normal
#: load, which takes well under a second) before answering 503.
LOAD_WAIT_SECONDS = 20.0
#: Retry-After (seconds) sent with 503 while no model is loaded.
RETRY_AFTER_SECONDS = 5
#: Without a model, a failed check is retried at most this often (a store that is down
#: is not asked once per request).
RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Health:
    """What an instance knows: its loaded model, and the store's current version."""

    ready: bool
    version: str | None = None
    model_sha256: str | None = None
    manifest_sha256: str | None = None
    graph: str | None = None
    loaded_at: float | None = None
    uptime_seconds: float = 0.0
    #: The version the store's pointer named at the last check, and when that was.
    store_version: str | None = None
    checked_at: float | None = None
    #: The store's current version failed verification (its manifest sha256 refused).
    store_version_refused: bool = False
    last_error: str | None = None

    @property
    def serves_store_version(self) -> bool:
        return self.ready and self.version is not None and self.version == self.store_version


class ModelHolder:
    """Loads, verifies, serves and refreshes the store's current model.

    Parameters
    ----------
    store_factory : builds the store (called on the first check: may be slow or fail).
    ttl_seconds : a request triggers a pointer check when the last one is older.
    load_wait : how long a request waits for a first model before ``ModelNotReady``.
    """

    def __init__(
        self,
        store_factory: Callable[[], ModelStore],
        ttl_seconds: float = 30.0,
        load_wait: float = LOAD_WAIT_SECONDS,
    ):
        self._store_factory = store_factory
        self.ttl_seconds = max(float(ttl_seconds), 0.0)
        self.load_wait = float(load_wait)
        self.started_at = time.time()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # In a forked child the parent's threads and sessions are gone: start over, lazily.
        self._lock = threading.Lock()  # guards _inflight and _checked_at
        self._check_lock = threading.Lock()  # one check (load) at a time
        self._bundle: Bundle | None = None
        self._store: ModelStore | None = None
        self._inflight: threading.Event | None = None
        self._checked_at = float("-inf")  # monotonic time the last check started
        self._checked_wall: float | None = None
        self._store_pointer: Pointer | None = None
        self._refused: set[tuple[str, str]] = set()
        self.last_error: str | None = None

    @classmethod
    def for_uri(cls, uri: str, ttl_seconds: float, **kwargs) -> ModelHolder:
        return cls(lambda: open_store(uri), ttl_seconds=ttl_seconds, **kwargs)

    # -- the request path -------------------------------------------------------------

    def get(self) -> Bundle:
        """The model to serve this request; ``ModelNotReady`` if none is verified yet."""
        bundle = self._bundle
        if bundle is not None:
            if time.monotonic() - self._checked_at >= self.ttl_seconds:
                self._start_check()
            return bundle
        return self._wait_for_model(self.load_wait)

    def instance_health(self) -> Health:
        """This instance's readiness, without waiting: a startup probe retries, and the
        probe itself starts the first load."""
        if self._bundle is None and time.monotonic() - self._checked_at >= RETRY_SECONDS:
            self._start_check()
        return self._health()

    def store_health(self) -> Health:
        """Readiness against the store: the pointer checked (waiting at most ``load_wait``)
        when the last check is older than the TTL, so the answer says whether the store's
        current version verifies."""
        if time.monotonic() - self._checked_at >= self.ttl_seconds or self._bundle is None:
            self._start_check().wait(self.load_wait)
        return self._health()

    # -- checks -----------------------------------------------------------------------

    def load(self) -> bool:
        """Check the pointer and load now, in the caller's thread (Lambda's init phase)."""
        with self._lock:
            self._checked_at = time.monotonic()
        return self.refresh()

    def refresh(self) -> bool:
        """Check the pointer once; load and swap in a new verified version. True if swapped."""
        with self._check_lock:
            try:
                return self._refresh()
            finally:
                self._checked_wall = time.time()

    def _wait_for_model(self, wait: float) -> Bundle:
        recent_failure = time.monotonic() - self._checked_at < RETRY_SECONDS
        done = self._inflight if recent_failure else self._start_check()
        if done is not None and wait > 0:
            done.wait(wait)
        bundle = self._bundle
        if bundle is None:
            raise ModelNotReady("no verified model is loaded")
        return bundle

    def _start_check(self) -> threading.Event:
        """The running check's completion event, starting a check if none runs."""
        with self._lock:
            if self._inflight is not None:
                return self._inflight
            done = self._inflight = threading.Event()
            self._checked_at = time.monotonic()
        thread = threading.Thread(target=self._check, args=(done,), name="model-check")
        thread.daemon = True  # a check stuck on a dead store must not keep a process alive
        thread.start()
        return done

    def _check(self, done: threading.Event) -> None:
        try:
            self.refresh()
        finally:
            with self._lock:
                self._inflight = None
            done.set()

    def _refresh(self) -> bool:
        try:
            if self._store is None:
                self._store = self._store_factory()
            pointer, _ = self._store.read_pointer()
            self._store_pointer = pointer
            if pointer is None:
                raise ModelNotReady("the store has no current model pointer")
            current = self._bundle
            key = (pointer.version, pointer.manifest_sha256)
            if current is not None and current.manifest_sha256 == pointer.manifest_sha256:
                return False
            if key in self._refused:
                return False
            return self._load(pointer, key)
        except Exception as exc:  # a check must survive any store or model failure
            self._note_error(exc)
            return False

    def _load(self, pointer: Pointer, key: tuple[str, str]) -> bool:
        try:
            bundle = load_bundle(self._store, pointer)
        except ModelContractError:
            self._refused.add(key)  # versions are immutable: the same bytes fail again
            raise
        self._bundle = bundle  # the swap: one reference assignment
        self.last_error = None
        log.info("model loaded", extra={"json": {"event": "model_loaded", "version": key[0]}})
        return True

    def _health(self) -> Health:
        bundle, pointer = self._bundle, self._store_pointer
        refused = pointer is not None and (pointer.version, pointer.manifest_sha256) in (
            self._refused
        )
        common = {
            "uptime_seconds": time.time() - self.started_at,
            "store_version": None if pointer is None else pointer.version,
            "checked_at": self._checked_wall,
            "store_version_refused": refused,
            "last_error": self.last_error,
        }
        if bundle is None:
            return Health(ready=False, **common)
        return Health(
            ready=True,
            version=bundle.version,
            model_sha256=bundle.model_sha256,
            manifest_sha256=bundle.manifest_sha256,
            graph=bundle.graph,
            loaded_at=bundle.loaded_at,
            **common,
        )

    def _note_error(self, exc: Exception) -> None:
        # Messages come from our own errors or store I/O: they hold names, not customer data.
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        serving = self._bundle.version if self._bundle else None
        log.warning(
            "model refresh failed",
            extra={
                "json": {
                    "event": "model_refresh_failed",
                    "error": self.last_error,
                    "serving_version": serving,
                }
            },
        )
