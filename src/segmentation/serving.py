"""The model holder: one verified model per process, refreshed when the pointer moves.

- Loading runs in a background thread started on first use (after any fork: gunicorn
  forks its workers from a parent that imported the function module), so a slow or
  unreachable store never blocks a request for more than ``initial_wait`` seconds.
- The served model is one attribute holding an immutable :class:`~segmentation.bundle.Bundle`.
  A request takes the reference once and finishes on it; a refresh verifies the new
  version completely and then swaps the reference. There is never a moment without a
  model once one was loaded, and a version that fails verification is refused (and
  remembered, versions being immutable) while the old one keeps serving.
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

#: Seconds a request waits for the first load before answering 503.
INITIAL_WAIT_SECONDS = 2.0
#: Retry-After (seconds) sent with 503 while no model is loaded.
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class Health:
    """Readiness as the health function reports it."""

    ready: bool
    version: str | None = None
    model_sha256: str | None = None
    manifest_sha256: str | None = None
    loaded_at: float | None = None
    uptime_seconds: float = 0.0
    last_error: str | None = None


class ModelHolder:
    """Loads, verifies, serves and refreshes the store's current model.

    Parameters
    ----------
    store_factory : builds the store (called in the loader thread: may be slow or fail).
    poll_seconds : how often the pointer is checked after the first load.
    initial_wait : how long :meth:`get` waits for the first load before ``ModelNotReady``.
    """

    def __init__(
        self,
        store_factory: Callable[[], ModelStore],
        poll_seconds: float = 30.0,
        initial_wait: float = INITIAL_WAIT_SECONDS,
    ):
        self._store_factory = store_factory
        self.poll_seconds = max(float(poll_seconds), 0.05)
        self.initial_wait = initial_wait
        self.started_at = time.time()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # In a forked child the parent's thread is gone: start over, lazily.
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()  # one load at a time (poller or caller)
        self._bundle: Bundle | None = None
        self._store: ModelStore | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._refused: set[tuple[str, str]] = set()
        self.last_error: str | None = None

    @classmethod
    def for_uri(cls, uri: str, poll_seconds: float, **kwargs) -> ModelHolder:
        return cls(lambda: open_store(uri), poll_seconds=poll_seconds, **kwargs)

    def start(self) -> None:
        """Start the loader thread once per process (cheap when already started)."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="model-loader", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def get(self) -> Bundle:
        """The model to serve this request; ``ModelNotReady`` if none is verified yet."""
        bundle = self._bundle
        if bundle is not None:
            return bundle
        self.start()
        self._first_attempt.wait(self.initial_wait)
        bundle = self._bundle
        if bundle is None:
            raise ModelNotReady("no verified model is loaded")
        return bundle

    def health(self) -> Health:
        """Readiness, waiting for the first load at most ``initial_wait`` seconds."""
        try:
            bundle = self.get()
        except ModelNotReady:
            return Health(ready=False, uptime_seconds=self.uptime(), last_error=self.last_error)
        return Health(
            ready=True,
            version=bundle.version,
            model_sha256=bundle.model_sha256,
            manifest_sha256=bundle.manifest_sha256,
            loaded_at=bundle.loaded_at,
            uptime_seconds=self.uptime(),
            last_error=self.last_error,
        )

    def uptime(self) -> float:
        return time.time() - self.started_at

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._first_attempt.set()
            self._stop.wait(self.poll_seconds)

    def refresh(self) -> bool:
        """Check the pointer once; load and swap in a new verified version. True if swapped."""
        with self._refresh_lock:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            if self._store is None:
                self._store = self._store_factory()
            pointer, _ = self._store.read_pointer()
            if pointer is None:
                raise ModelNotReady("the store has no current model pointer")
            current = self._bundle
            key = (pointer.version, pointer.manifest_sha256)
            if current is not None and current.manifest_sha256 == pointer.manifest_sha256:
                return False
            if key in self._refused:
                return False
            return self._load(pointer, key)
        except Exception as exc:  # the loader must survive any store or model failure
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
