"""The local-folder backend of the model store (a path or ``file://``)."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

from segmentation.bundle_format import sha256_hex
from segmentation.errors import ConfigError, StoreConflict
from segmentation.store.base import ModelStore


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

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            data = self.read(key)
        except FileNotFoundError:
            return None, None
        return data, sha256_hex(data)

    def write_if(self, key: str, data: bytes, expected_token: str | None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The lock file is never deleted: unlinking a locked file lets the next writer
        # lock a fresh inode while an old holder still believes it holds the lock.
        lock_fd = os.open(path.parent / f".{path.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            _, token = self.read_versioned(key)
            if token != expected_token:
                raise StoreConflict(f"{key} changed since it was read")
            tmp = self._write_temp(path, data)
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
