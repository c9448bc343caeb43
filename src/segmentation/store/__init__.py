"""The model store: immutable versions plus one pointer naming the served version.

``open_store(uri)`` picks the backend: a path or ``file://`` (:mod:`.local`), ``s3://``
(:mod:`.s3`) or ``gs://`` (:mod:`.gcs`). The interface is :mod:`.base`; the layout and
guarantees are in ``docs/bundle-format.md``.
"""

from __future__ import annotations

from segmentation.errors import ConfigError
from segmentation.store.base import (
    POINTER_KEY,
    ModelStore,
    Pointer,
    split_bucket_uri,
    version_key,
)
from segmentation.store.local import LocalStore

__all__ = [
    "POINTER_KEY",
    "LocalStore",
    "ModelStore",
    "Pointer",
    "open_store",
    "split_bucket_uri",
    "version_key",
]


def open_store(uri: str) -> ModelStore:
    """The backend for ``uri``: a path or ``file://`` (local), ``s3://`` or ``gs://``."""
    if uri.startswith("file://"):
        return LocalStore(uri[len("file://") :])
    if "://" not in uri:
        return LocalStore(uri)
    scheme = uri.split("://", 1)[0]
    if scheme == "s3":
        from segmentation.store.s3 import S3Store

        return S3Store(uri)
    if scheme == "gs":
        from segmentation.store.gcs import GCSStore

        return GCSStore(uri)
    raise ConfigError(
        f"SEGMENTATION_MODEL_STORE: unsupported scheme {scheme!r}; "
        "expected a path, file://, s3:// or gs://"
    )
