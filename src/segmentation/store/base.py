"""The model store's interface: immutable versions plus one pointer naming the served version.

Layout and guarantees are specified in ``docs/bundle-format.md``. Every backend
(``local``, ``s3``, ``gcs``) implements these primitives with its own compare-and-swap;
publishing, promotion and rollback are built on them in ``training.release.publish``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

from segmentation.errors import ConfigError, ModelContractError

POINTER_KEY = "current.json"


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
    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """Bytes at ``key`` and an opaque token naming exactly those bytes, for a later
        :meth:`write_if`; ``(None, None)`` if absent."""

    @abstractmethod
    def write_if(self, key: str, data: bytes, expected_token: str | None) -> None:
        """Replace ``key`` only if it still has ``expected_token``; else ``StoreConflict``.

        ``expected_token=None`` means "create it; there must be none yet". This is the
        store's compare-and-swap: the pointer, the retrain lease and any other mutable
        object are written only through it.
        """

    def read_pointer(self) -> tuple[Pointer | None, str | None]:
        """The current pointer and an opaque token for compare-and-swap (None, None if absent)."""
        data, token = self.read_versioned(POINTER_KEY)
        return (None, None) if data is None else (Pointer.from_json(data), token)

    def swap_pointer(self, pointer: Pointer, expected_token: str | None) -> None:
        """Replace the pointer only if it still has ``expected_token``; else ``StoreConflict``.

        ``expected_token=None`` means "create the pointer; there must be none yet".
        """
        self.write_if(POINTER_KEY, pointer.to_json(), expected_token)

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


def split_bucket_uri(uri: str, scheme: str) -> tuple[str, str]:
    """``scheme://bucket/some/prefix`` -> ``("bucket", "some/prefix/")`` (prefix may be "")."""
    rest = uri[len(f"{scheme}://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"SEGMENTATION_MODEL_STORE: expected {scheme}://BUCKET[/PREFIX]")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""
