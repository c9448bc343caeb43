"""Publish, promote and roll back model versions.

Built on the store primitives of :mod:`segmentation.store` (``docs/bundle-format.md``):
a version's files are written create-only, ``manifest.json`` last (a folder without it is
incomplete and never promoted), and the pointer moves last with a compare-and-swap.
Ordering rules, so that a late or duplicate run never replaces a newer model:

- ``promote`` refuses a version older than the current one (``StoreConflict``) unless
  ``allow_older``; promoting the current version again is a no-op.
- ``rollback`` moves the pointer to ``previous`` (or a named version) and marks the
  version it leaves as withdrawn (``withdrawn/<version>.json``), so a late retry of that
  version's promotion is refused too.
- Every promotion re-verifies the version (manifest present, every file's sha256) first.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from segmentation.bundle import read_manifest
from segmentation.bundle_format import MANIFEST_FILE, MODEL_FILE, sha256_hex
from segmentation.errors import ConfigError, ModelContractError, StoreConflict
from segmentation.store import ModelStore, Pointer, version_key

_VERSION_RE = re.compile(r"^v(\d{8}T\d{6})(\d{6})?Z-([0-9a-f]{8})$")
_FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class VersionInfo:
    """One version folder of the store, as ``list_versions`` reports it."""

    version: str
    created_at: datetime | None  # None for a folder whose name is not a version id
    complete: bool  # manifest.json present: the version was fully published
    is_current: bool
    withdrawn: bool = False  # rolled back from; promote refuses it unless explicit
    rejected: bool = False  # refused by the retrain gates; never promoted


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_version_id(created_at: datetime, model_sha256: str) -> str:
    """``v<UTC yyyymmddTHHMMSSffffffZ>-<first 8 hex of the model sha256>``.

    Ids sort by creation time (to the microsecond), and the suffix ties the id to the
    model bytes. ``created_at`` must be timezone-aware.
    """
    if created_at.tzinfo is None:
        raise ConfigError("created_at: expected a timezone-aware datetime, found a naive one")
    if not re.fullmatch(r"[0-9a-f]{64}", model_sha256):
        raise ConfigError("model_sha256: expected 64 lowercase hex digits")
    return f"v{created_at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z-{model_sha256[:8]}"


def parse_version_id(version: str) -> datetime:
    """Creation time (UTC) encoded in a version id; ``ModelContractError`` if malformed.

    Ids without microseconds (``v20261126T123456Z-1a2b3c4d``) are accepted too.
    """
    match = _VERSION_RE.match(version)
    if match is None:
        raise ModelContractError(
            f"version {version!r}: expected v<yyyymmddTHHMMSSffffff>Z-<8 hex digits>"
        )
    stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return stamp.replace(microsecond=int(match.group(2) or 0))


def _order(version: str) -> tuple[datetime, str]:
    return parse_version_id(version), version


def publish_version(
    store: ModelStore,
    version: str,
    files: dict[str, bytes],
    manifest: dict,
    *,
    after_write: Callable[[str], None] | None = None,
) -> str:
    """Write a version bundle: every file create-only, then ``manifest.json`` last.

    Fills ``manifest["files"]`` (in place) with the sha256 of every file and sets
    ``manifest["version"]``. Returns the sha256 of the manifest bytes written, which the
    pointer records. ``StoreConflict`` if any key of the version already exists; a crash
    part-way leaves an incomplete version that is listed as such and never promoted.
    """
    parse_version_id(version)
    if MODEL_FILE not in files:
        raise ModelContractError(f"files: {MODEL_FILE} is required")
    model_sha = sha256_hex(files[MODEL_FILE])
    if not version.endswith(f"-{model_sha[:8]}"):
        raise ModelContractError(f"version {version}: suffix is not the {MODEL_FILE} sha256")
    for name in files:
        if name == MANIFEST_FILE or not _FILENAME_RE.match(name):
            raise ModelContractError(f"files: invalid bundle file name {name!r}")
    if manifest.setdefault("version", version) != version:
        raise ModelContractError("manifest.json: version differs from the one published")
    manifest["files"] = {name: sha256_hex(data) for name, data in sorted(files.items())}
    # Serialise before writing anything: a manifest that cannot be written must not
    # leave orphan files behind.
    try:
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ModelContractError(
            f"manifest.json: not serialisable as strict JSON ({exc})"
        ) from None
    for name, data in sorted(files.items()):
        store.write_new(version_key(version, name), data)
        if after_write is not None:
            after_write(name)
    store.write_new(version_key(version, MANIFEST_FILE), manifest_bytes)
    return sha256_hex(manifest_bytes)


def verify_version(store: ModelStore, version: str) -> str:
    """Check ``version`` is complete and every file matches its sha256; return the
    manifest's sha256. Raises ``ModelContractError`` naming the failing file."""
    parse_version_id(version)
    manifest = read_manifest(store, version)
    if manifest.get("version") != version:
        raise ModelContractError(f"version {version}: manifest names another version")
    files = manifest.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files:
        raise ModelContractError(f"version {version}: manifest files has no {MODEL_FILE}")
    for name, expected in sorted(files.items()):
        try:
            data = store.read(version_key(version, name))
        except FileNotFoundError:
            raise ModelContractError(f"version {version}: {name} is missing") from None
        if sha256_hex(data) != expected:
            raise ModelContractError(f"version {version}: {name} sha256 differs from manifest")
    return sha256_hex(store.read(version_key(version, MANIFEST_FILE)))


def _withdrawn_key(version: str) -> str:
    return f"withdrawn/{version}.json"


def rejected_key(version: str) -> str:
    """Marker of a version the retrain gates refused (``reject``)."""
    return f"rejected/{version}.json"


def reject(store: ModelStore, version: str, reasons: list[str], measures: dict) -> None:
    """Mark ``version`` rejected with its reasons, before it is published: from then on
    ``promote`` refuses it, so no crash between publishing and marking can leave a
    rejected candidate promotable."""
    record = {"version": version, "reasons": reasons, "measures": measures}
    record["rejected_at"] = _utc_stamp(datetime.now(UTC))
    store.write_new(rejected_key(version), json.dumps(record, indent=2, default=str).encode())


def _swap(store: ModelStore, new: Pointer, token: str | None) -> Pointer:
    try:
        store.swap_pointer(new, token)
    except StoreConflict:
        # A retried request whose first attempt landed reports a conflict with itself;
        # promoted_at (microseconds) makes our pointer's content unique, so compare.
        current, _ = store.read_pointer()
        if current != new:
            raise
    return new


def promote(store: ModelStore, version: str, *, allow_older: bool = False) -> Pointer:
    """Make ``version`` current with a compare-and-swap of the pointer.

    Refuses (``StoreConflict``) a version the retrain gates rejected, and, unless
    ``allow_older``, one older than the current one or withdrawn by a rollback; refuses
    (``ModelContractError``) an incomplete or corrupted version. Promoting the current
    version again changes nothing. A concurrent promoter that moves the pointer first makes
    this call raise ``StoreConflict``.
    """
    manifest_sha = verify_version(store, version)
    if store.exists(rejected_key(version)):
        raise StoreConflict(f"version {version} was rejected by the retrain gates")
    current, token = store.read_pointer()
    if current is not None and current.version == version:
        return current
    if not allow_older:
        if current is not None and _order(version) < _order(current.version):
            raise StoreConflict(
                f"version {version} is older than current {current.version}; "
                "refusing to replace a newer model (use rollback to go back)"
            )
        if store.exists(_withdrawn_key(version)):
            raise StoreConflict(f"version {version} was withdrawn by a rollback")
    new = Pointer(
        version=version,
        manifest_sha256=manifest_sha,
        promoted_at=_utc_stamp(datetime.now(UTC)),
        previous=current.version if current is not None else None,
    )
    return _swap(store, new, token)


def rollback(store: ModelStore, to_version: str | None = None) -> Pointer:
    """Move the pointer back to ``previous`` (default) or to ``to_version``.

    The version left behind is marked withdrawn when the target is older, so a late
    promotion of it is refused. Without ``to_version``, a ``previous`` newer than the
    current version (the pointer was already rolled back) is refused: name the target.
    """
    current, token = store.read_pointer()
    if current is None:
        raise ConfigError("rollback: the store has no current version; use promote")
    target = to_version or current.previous
    if target is None:
        raise ConfigError(f"rollback: {current.version} has no previous version; pass --to")
    if target == current.version:
        return current
    going_back = _order(target) < _order(current.version)
    if to_version is None and not going_back:
        raise ConfigError(
            f"rollback: previous {target} is newer than current {current.version} "
            "(already rolled back); pass --to VERSION"
        )
    manifest_sha = verify_version(store, target)
    if going_back:
        record = {
            "version": current.version,
            "replaced_by": target,
            "withdrawn_at": _utc_stamp(datetime.now(UTC)),
        }
        # Written before the pointer moves, so no window admits a late re-promotion; a
        # conflict means an earlier rollback withdrew it already.
        with contextlib.suppress(StoreConflict):
            store.write_new(_withdrawn_key(current.version), json.dumps(record).encode())
    new = Pointer(target, manifest_sha, _utc_stamp(datetime.now(UTC)), current.version)
    return _swap(store, new, token)


def list_versions(store: ModelStore) -> list[VersionInfo]:
    """Every version folder, oldest first, with completeness and the current marker."""
    current, _ = store.read_pointer()
    names: dict[str, set[str]] = {}
    for key in store.list("versions/"):
        parts = key.split("/")
        if len(parts) == 3:
            names.setdefault(parts[1], set()).add(parts[2])
    withdrawn = {key.split("/")[1].removesuffix(".json") for key in store.list("withdrawn/")}
    rejected = {key.split("/")[1].removesuffix(".json") for key in store.list("rejected/")}
    infos = []
    for version, files in names.items():
        try:
            created: datetime | None = parse_version_id(version)
        except ModelContractError:
            created = None
        infos.append(
            VersionInfo(
                version=version,
                created_at=created,
                complete=MANIFEST_FILE in files,
                is_current=current is not None and current.version == version,
                withdrawn=version in withdrawn,
                rejected=version in rejected,
            )
        )
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(infos, key=lambda info: (info.created_at or oldest, info.version))
