"""The model store: immutable versions plus one pointer naming the served version.

Layout and guarantees are specified in ``docs/bundle-format.md``. This module holds the
backend-neutral interface and the local-folder backend; object-store backends implement
the same four primitives with their own compare-and-swap.
"""

from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError, StoreConflict

POINTER_KEY = "current.json"


def version_key(version: str, filename: str) -> str:
    return f"versions/{version}/{filename}"


@dataclass(frozen=True)
class Pointer:
    """Content of ``current.json``."""

    version: str
    manifest_sha256: str
    promoted_at: str
    previous: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Pointer:
        try:
            raw = json.loads(data)
            return cls(
                version=str(raw["version"]),
                manifest_sha256=str(raw["manifest_sha256"]),
                promoted_at=str(raw["promoted_at"]),
                previous=raw.get("previous"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            from .errors import ModelContractError

            raise ModelContractError(f"{POINTER_KEY}: not a valid pointer ({exc})") from None


class ModelStore(ABC):
    """Four primitives every backend provides; everything else is built on them."""

    uri: str

    @abstractmethod
    def read(self, key: str) -> bytes:
        """Bytes at ``key``; ``FileNotFoundError`` if absent."""

    @abstractmethod
    def write_new(self, key: str, data: bytes) -> None:
        """Create ``key`` with ``data``; ``StoreConflict`` if it exists (immutability)."""

    @abstractmethod
    def read_pointer(self) -> tuple[Pointer | None, str | None]:
        """The current pointer and an opaque token for compare-and-swap (None, None if absent)."""

    @abstractmethod
    def swap_pointer(self, pointer: Pointer, expected_token: str | None) -> None:
        """Replace the pointer only if it still has ``expected_token``; else ``StoreConflict``."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""

    def exists(self, key: str) -> bool:
        try:
            self.read(key)
        except FileNotFoundError:
            return False
        return True


class LocalStore(ModelStore):
    """A folder on local disk. Atomicity from ``os.link`` (create-only) and ``os.replace``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ConfigError(f"store key escapes the store root: {key!r}")
        return path

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def _write_temp(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def write_new(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)  # fails if path exists: never replaces a written file
        except FileExistsError:
            raise StoreConflict(f"{key} already exists; versions are immutable") from None
        finally:
            os.unlink(tmp)

    def read_pointer(self) -> tuple[Pointer | None, str | None]:
        try:
            data = self.read(POINTER_KEY)
        except FileNotFoundError:
            return None, None
        return Pointer.from_json(data), _token(data)

    def swap_pointer(self, pointer: Pointer, expected_token: str | None) -> None:
        path = self._path(POINTER_KEY)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.with_suffix(".lock")
        # The lock file serialises writers; the rename makes the swap atomic for readers.
        try:
            lock_fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise StoreConflict(f"{POINTER_KEY} is being written by another process") from None
        try:
            _, token = self.read_pointer()
            if token != expected_token:
                raise StoreConflict(f"{POINTER_KEY} changed since it was read")
            tmp = self._write_temp(path, pointer.to_json())
            os.replace(tmp, path)
        finally:
            os.close(lock_fd)
            os.unlink(lock)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )


def _token(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def open_store(uri: str) -> ModelStore:
    """The backend for ``uri``: a path or ``file://`` (local), ``s3://`` or ``gs://``."""
    if uri.startswith("file://"):
        return LocalStore(uri[len("file://") :])
    if "://" not in uri:
        return LocalStore(uri)
    scheme = uri.split("://", 1)[0]
    if scheme == "s3":
        from ._store_s3 import S3Store

        return S3Store(uri)
    if scheme == "gs":
        from ._store_gcs import GCSStore

        return GCSStore(uri)
    raise ConfigError(
        f"SEGMENTATION_MODEL_STORE: unsupported scheme {scheme!r}; "
        "expected a path, file://, s3:// or gs://"
    )
