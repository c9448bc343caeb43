"""Google Cloud Storage backend of the model store (``gs://bucket[/prefix]``).

GCS preconditions give both guarantees: an upload with ``if_generation_match=0``
creates an object only if none exists (immutability), and an upload with
``if_generation_match=<generation>`` replaces the pointer only if it is still the
generation that was read (compare-and-swap). A lost precondition is HTTP 412, raised by
the client as ``google.api_core.exceptions.PreconditionFailed``, and becomes
``StoreConflict``. Uploads are atomic: an object appears whole or not at all.

A conditional upload can also lose to itself: the client retries an upload that carries a
generation precondition when its response is lost (connection reset, timeout), and if
the first attempt had been applied, the retry's precondition fails against the object
that attempt wrote. So every upload carries a random write id in its custom metadata,
the same in every attempt of the call, and a failed precondition is checked against the
object: when it holds this call's write id, the write is ours and succeeded (the client
does not say whether it retried, so the check follows every 412: one metadata read, on
a path that is rare). That is identity, not equal bytes: a separate call writing the same
bytes still gets ``StoreConflict``; an object replaced by another writer before the
retry landed carries that writer's id, and the conflict stands.
"""

from __future__ import annotations

import uuid
from typing import Any

from segmentation.errors import StoreConflict
from segmentation.store.base import ModelStore, split_bucket_uri

#: Times to re-read an object when it changes between reading its generation and its
#: bytes; each retry means another writer just succeeded, so a few always suffice.
_READ_ATTEMPTS = 5
#: Custom-metadata key naming the store call that wrote an object.
WRITE_ID_KEY = "segmentation-write-id"


class GCSStore(ModelStore):
    """Model store in a GCS bucket, under an optional object-name prefix.

    Parameters
    ----------
    uri : ``gs://bucket`` or ``gs://bucket/prefix``.
    client : a ``google.cloud.storage.Client``; by default one with the ambient
        credentials (injected in tests).
    """

    def __init__(self, uri: str, client: Any = None):
        self.uri = uri
        bucket_name, self.prefix = split_bucket_uri(uri, "gs")
        if client is None:
            from google.cloud import storage

            client = storage.Client()
        from google.api_core import exceptions

        self._not_found = exceptions.NotFound
        self._precondition_failed = exceptions.PreconditionFailed
        self.client = client
        self.bucket = client.bucket(bucket_name)

    def _blob(self, key: str) -> Any:
        return self.bucket.blob(self.prefix + key)

    def read(self, key: str) -> bytes:
        try:
            return self._blob(key).download_as_bytes()
        except self._not_found:
            raise FileNotFoundError(key) from None

    def exists(self, key: str) -> bool:
        return bool(self._blob(key).exists())

    def _written_by(self, key: str, write_id: str) -> bool:
        """Whether ``key`` is, right now, the object written with ``write_id``."""
        blob = self._blob(key)
        try:
            blob.reload()
        except self._not_found:
            return False
        # getattr: a client double may not model custom metadata at all.
        return (getattr(blob, "metadata", None) or {}).get(WRITE_ID_KEY) == write_id

    def _upload(self, key: str, data: bytes, generation: int) -> None:
        content_type = "application/json" if key.endswith(".json") else "application/octet-stream"
        write_id = uuid.uuid4().hex  # one per call: every retry of it sends the same
        blob = self._blob(key)
        blob.metadata = {WRITE_ID_KEY: write_id}
        try:
            blob.upload_from_string(data, content_type=content_type, if_generation_match=generation)
        except self._precondition_failed:
            if self._written_by(key, write_id):
                return  # an earlier attempt of this call landed; its response was lost
            raise StoreConflict(
                f"{key}: another writer changed it first; generation precondition lost"
            ) from None

    def write_new(self, key: str, data: bytes) -> None:
        try:
            self._upload(key, data, generation=0)  # 0: only if no live object exists
        except StoreConflict:
            raise StoreConflict(f"{key} already exists; versions are immutable") from None

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        for _ in range(_READ_ATTEMPTS):
            blob = self._blob(key)
            try:
                blob.reload()
                generation = blob.generation
                # Download exactly the generation just read, so bytes and token agree.
                data = blob.download_as_bytes(if_generation_match=generation)
            except self._not_found:
                return None, None
            except self._precondition_failed:
                continue  # replaced between reload and download: read again
            return data, str(generation)
        raise StoreConflict(f"{key} kept changing while being read")

    def write_if(self, key: str, data: bytes, expected_token: str | None) -> None:
        generation = 0 if expected_token is None else int(expected_token)
        self._upload(key, data, generation=generation)

    def list(self, prefix: str) -> list[str]:
        blobs = self.client.list_blobs(self.bucket, prefix=self.prefix + prefix)
        return sorted(blob.name[len(self.prefix) :] for blob in blobs)
