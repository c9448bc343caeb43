"""The model store: immutable versions plus one pointer naming the served version.

Layout and guarantees are specified in ``docs/bundle-format.md``. This module holds the
backend-neutral interface and the local-folder backend; object-store backends
(``_store_s3``, ``_store_gcs``) implement the same primitives with their own
compare-and-swap. Publishing, promotion and rollback are built on these primitives in
``training/publish.py``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError, ModelContractError, StoreConflict

POINTER_KEY = "current.json"
#: Lock file serialising local pointer writers; a dotfile so ``list`` never reports it.
_LOCK_NAME = ".current.json.lock"


def version_key(version: str, filename: str) -> str:
    """Store key of ``filename`` inside the folder of ``version``."""
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
            previous = raw.get("previous")
            return cls(
                version=str(raw["version"]),
                manifest_sha256=str(raw["manifest_sha256"]),
                promoted_at=str(raw["promoted_at"]),
                previous=None if previous is None else str(previous),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelContractError(f"{POINTER_KEY}: not a valid pointer ({exc})") from None


class ModelStore(ABC):
    """Primitives every backend provides; everything else is built on them."""

    uri: str

    @abstractmethod
    def read(self, key: str) -> bytes:
        """Bytes at ``key``; ``FileNotFoundError`` if absent."""

    @abstractmethod
    def write_new(self, key: str, data: bytes) -> None:
        """Create ``key`` with ``data``; ``StoreConflict`` if it exists (immutability).

        Readers see either nothing or all of ``data``, never a partial object.
        """

    @abstractmethod
    def read_pointer(self) -> tuple[Pointer | None, str | None]:
        """The current pointer and an opaque token for compare-and-swap (None, None if absent)."""

    @abstractmethod
    def swap_pointer(self, pointer: Pointer, expected_token: str | None) -> None:
        """Replace the pointer only if it still has ``expected_token``; else ``StoreConflict``.

        ``expected_token=None`` means "create the pointer; there must be none yet".
        """

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists. Backends override this with a metadata-only request."""
        try:
            self.read(key)
        except FileNotFoundError:
            return False
        return True


class LocalStore(ModelStore):
    """A folder on local disk.

    Create-only writes go to a temp file in the target folder, are fsynced, then
    ``os.link``-ed to the key (fails if the key exists, never replaces it). The pointer
    is swapped with ``os.replace`` while holding an ``flock`` on a lock file, so
    writers are serialised and readers always see a whole pointer. ``flock`` is
    released by the kernel when a holder dies, so a crashed promoter never wedges
    the store. The token is the sha256 of the pointer bytes, like an S3 ETag: a swap
    that wrote identical bytes is indistinguishable from no swap (``promote`` makes
    every pointer unique with a microsecond ``promoted_at``).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ConfigError(f"store key escapes the store root: {key!r}")
        return path

    def read(self, key: str) -> bytes:
        path = self._path(key)
        if path.is_dir():
            raise FileNotFoundError(key)
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _write_temp(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                # mkstemp creates 0600; serving may run as another user and must read it.
                os.fchmod(fh.fileno(), 0o644)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
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
        _fsync_dir(path.parent)

    def read_pointer(self) -> tuple[Pointer | None, str | None]:
        try:
            data = self.read(POINTER_KEY)
        except FileNotFoundError:
            return None, None
        return Pointer.from_json(data), _token(data)

    def swap_pointer(self, pointer: Pointer, expected_token: str | None) -> None:
        path = self._path(POINTER_KEY)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The lock file is never deleted: unlinking a locked file lets the next writer
        # lock a fresh inode while an old holder still believes it holds the lock.
        lock_fd = os.open(path.parent / _LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            _, token = self.read_pointer()
            if token != expected_token:
                raise StoreConflict(f"{POINTER_KEY} changed since it was read")
            tmp = self._write_temp(path, pointer.to_json())
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        finally:
            os.close(lock_fd)  # closing the descriptor releases the flock

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return []
        # Dotfiles are temp files of in-flight (or crashed) writes and the lock file.
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )


def _fsync_dir(path: Path) -> None:
    """Make a link/rename in ``path`` durable across a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _token(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_bucket_uri(uri: str, scheme: str) -> tuple[str, str]:
    """``scheme://bucket/some/prefix`` -> ``("bucket", "some/prefix/")`` (prefix may be "")."""
    rest = uri[len(f"{scheme}://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"SEGMENTATION_MODEL_STORE: expected {scheme}://BUCKET[/PREFIX]")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


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
