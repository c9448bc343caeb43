"""Amazon S3 backend of the model store (``s3://bucket[/prefix]``).

Immutability and the pointer compare-and-swap use S3 conditional writes (Aug/Nov 2024):
``PutObject`` with ``If-None-Match: *`` creates a key only if it does not exist, and
``PutObject`` with ``If-Match: <ETag>`` replaces the pointer only if it is still the
object that was read. S3 answers a lost condition with 412 ``PreconditionFailed``, or
409 ``ConditionalRequestConflict`` when a concurrent conditional write to the same key
is in flight; both mean someone else won and become ``StoreConflict``. A ``PutObject``
is atomic: readers never see a partial object.

A conditional write can also lose to itself: botocore retries a ``PutObject`` whose
response was lost (connection reset, timeout) after S3 had applied it, and the retry's
condition then fails against the object the first attempt wrote. So every write carries
a random write id in its user metadata, the same in every attempt of the call, and a
condition that failed after a retry (botocore reports the attempts) is checked against
the object: when the key holds this call's write id, the write is ours and succeeded.
That is identity, not equal bytes: a separate call writing the same bytes still gets
``StoreConflict``. If another writer replaced our object before the retry landed, its
id is not ours and the conflict stands (our write was applied, then superseded).
"""

from __future__ import annotations

import uuid
from typing import Any

from segmentation.errors import StoreConflict
from segmentation.store.base import ModelStore, split_bucket_uri

#: Error codes meaning "the condition of a conditional write did not hold".
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
#: User-metadata key (``x-amz-meta-...``) naming the store call that wrote an object.
WRITE_ID_KEY = "segmentation-write-id"


def _code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _retried(exc: Exception) -> bool:
    """Whether botocore sent the request more than once before this error."""
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0


class S3Store(ModelStore):
    """Model store in an S3 bucket, under an optional key prefix.

    Parameters
    ----------
    uri : ``s3://bucket`` or ``s3://bucket/prefix``.
    client : a boto3 S3 client; by default ``boto3.client("s3")`` with the ambient
        credentials and region (injected in tests).
    """

    def __init__(self, uri: str, client: Any = None):
        self.uri = uri
        self.bucket, self.prefix = split_bucket_uri(uri, "s3")
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client
        from botocore.exceptions import ClientError

        self._client_error = ClientError

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _get(self, key: str) -> dict[str, Any]:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self._client_error as exc:
            if _code(exc) in _MISSING_CODES:
                raise FileNotFoundError(key) from None
            raise

    def read(self, key: str) -> bytes:
        return self._get(key)["Body"].read()

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._client_error as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def _written_by(self, key: str, write_id: str) -> bool:
        """Whether ``key`` is, right now, the object written with ``write_id``."""
        head = self._head(key)
        return head is not None and head.get("Metadata", {}).get(WRITE_ID_KEY) == write_id

    def _put(self, key: str, data: bytes, **condition: str) -> None:
        write_id = uuid.uuid4().hex  # one per call: every retry of it sends the same
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType="application/json"
                if key.endswith(".json")
                else "application/octet-stream",
                Metadata={WRITE_ID_KEY: write_id},
                **condition,
            )
        except self._client_error as exc:
            code = _code(exc)
            gone = "IfMatch" in condition and code in _MISSING_CODES
            if code not in _CONFLICT_CODES and not gone:
                raise
            if _retried(exc) and self._written_by(key, write_id):
                return  # an earlier attempt of this call landed; its response was lost
            if gone:
                # If-Match on a key that is gone: the pointer changed since it was read.
                raise StoreConflict(f"{key}: deleted since it was read") from None
            raise StoreConflict(
                f"{key}: another writer changed it first; conditional write lost ({code})"
            ) from None

    def write_new(self, key: str, data: bytes) -> None:
        try:
            self._put(key, data, IfNoneMatch="*")
        except StoreConflict:
            raise StoreConflict(f"{key} already exists; versions are immutable") from None

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            response = self._get(key)
        except FileNotFoundError:
            return None, None
        # The ETag and the body come from one GET, so the token names exactly these bytes.
        return response["Body"].read(), str(response["ETag"])

    def write_if(self, key: str, data: bytes, expected_token: str | None) -> None:
        condition = {"IfNoneMatch": "*"} if expected_token is None else {"IfMatch": expected_token}
        self._put(key, data, **condition)

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
        return sorted(keys)
