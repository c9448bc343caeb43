"""Publishing, promotion, rollback and the run ledger (training/publish.py)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from segmentation.errors import ConfigError, ModelContractError, StoreConflict
from segmentation.store import LocalStore, ModelStore
from segmentation.store.s3 import S3Store
from training.release import ledger, publish

T0 = datetime(2026, 11, 26, 12, 34, 56, 123456, tzinfo=UTC)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, monkeypatch) -> ModelStore:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="segmentation-models")
        yield S3Store("s3://segmentation-models/prod", client=client)


def bundle(minutes: int = 0, seed: str = "") -> tuple[str, dict[str, bytes], dict]:
    """A version created ``minutes`` after T0: id, files and a minimal manifest."""
    model = f"onnx-bytes-{minutes}-{seed}".encode()
    created = T0 + timedelta(minutes=minutes)
    version = publish.new_version_id(created, hashlib.sha256(model).hexdigest())
    files = {"model.onnx": model, "report.html": b"<html>report</html>"}
    return version, files, {"format_version": 1, "created_at": created.isoformat()}


def published(store: ModelStore, minutes: int = 0, seed: str = "") -> str:
    version, files, manifest = bundle(minutes, seed)
    publish.publish_version(store, version, files, manifest)
    return version


# --- version ids -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "created_at",
    [T0, T0.astimezone(timezone(timedelta(hours=-5))), T0.astimezone(timezone(timedelta(hours=9)))],
)
def test_version_ids_encode_utc_time_to_the_microsecond_and_the_model_hash(created_at):
    version = publish.new_version_id(created_at, "1a2b3c4d" + "0" * 56)
    assert version == "v20261126T123456123456Z-1a2b3c4d"
    assert publish.parse_version_id(version) == T0


def test_version_ids_without_microseconds_parse_too():
    assert publish.parse_version_id("v20261126T123456Z-1a2b3c4d") == T0.replace(microsecond=0)


@pytest.mark.parametrize(
    ("created_at", "sha"),
    [(datetime(2026, 1, 1), "0" * 64), (T0, "abc"), (T0, "G" * 64), (T0, "A" * 64)],
)
def test_version_ids_need_an_aware_time_and_a_sha256(created_at, sha):
    with pytest.raises(ConfigError):
        publish.new_version_id(created_at, sha)


@pytest.mark.parametrize("version", ["v1", "20261126T123456Z-1a2b3c4d", "v20261126T123456Z-XYZ"])
def test_malformed_version_ids_are_refused(version):
    with pytest.raises(ModelContractError, match="expected v<"):
        publish.parse_version_id(version)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2999, 1, 1)),
    st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=4000)),
    st.binary(),
    st.binary(),
)
def test_version_ids_sort_in_creation_order(start, delta, model_a, model_b):
    first = publish.new_version_id(start.replace(tzinfo=UTC), hashlib.sha256(model_a).hexdigest())
    later = start.replace(tzinfo=UTC) + delta
    second = publish.new_version_id(later, hashlib.sha256(model_b).hexdigest())
    assert first < second


# --- publishing ------------------------------------------------------------------------
class RecordingStore(LocalStore):
    """A local store that logs write order and can crash after ``crash_after`` writes."""

    def __init__(self, root: Path, crash_after: int | None = None):
        super().__init__(root)
        self.written: list[str] = []
        self.crash_after = crash_after

    def write_new(self, key: str, data: bytes) -> None:
        if self.crash_after is not None and len(self.written) == self.crash_after:
            raise KeyboardInterrupt("simulated crash")
        super().write_new(key, data)
        self.written.append(key)


def test_publish_writes_every_file_then_the_manifest_last_with_their_sha256(tmp_path):
    store = RecordingStore(tmp_path)
    version, files, manifest = bundle()
    manifest_sha = publish.publish_version(store, version, files, manifest)
    assert store.written[-1] == f"versions/{version}/manifest.json"
    assert sorted(store.written[:-1]) == [f"versions/{version}/{n}" for n in sorted(files)]
    written = store.read(f"versions/{version}/manifest.json")
    assert hashlib.sha256(written).hexdigest() == manifest_sha
    assert json.loads(written)["files"] == {
        name: hashlib.sha256(data).hexdigest() for name, data in files.items()
    }
    assert json.loads(written)["version"] == version == manifest["version"]


def _nan_manifest(m: dict) -> None:
    m["atypical_distance"] = float("nan")


@pytest.mark.parametrize(
    "breakage",
    [
        lambda v, f, m: f.pop("model.onnx"),
        lambda v, f, m: f.update({"model.onnx": b"other bytes than the id says"}),
        lambda v, f, m: f.update({"../escape": b"x"}),
        lambda v, f, m: f.update({"manifest.json": b"{}"}),
        lambda v, f, m: m.update({"version": "v20260101T000000Z-00000000"}),
        lambda v, f, m: _nan_manifest(m),
    ],
    ids=["no-model", "id-not-model-hash", "bad-name", "manifest-as-file", "other-version", "nan"],
)
def test_publish_refuses_a_bad_bundle_before_writing_anything(store, breakage):
    version, files, manifest = bundle()
    breakage(version, files, manifest)
    with pytest.raises(ModelContractError):
        publish.publish_version(store, version, files, manifest)
    assert store.list("") == []


def test_publishing_a_version_twice_conflicts_and_keeps_the_first(store):
    version, files, manifest = bundle()
    first_sha = publish.publish_version(store, version, files, manifest)
    with pytest.raises(StoreConflict):
        publish.publish_version(store, version, files, dict(manifest, extra=1))
    assert publish.verify_version(store, version) == first_sha


@pytest.mark.parametrize("crash_after", [0, 1, 2])
def test_a_crash_mid_publish_leaves_an_incomplete_version_that_is_never_promoted(
    tmp_path, crash_after
):
    store = RecordingStore(tmp_path, crash_after=crash_after)
    version, files, manifest = bundle()
    with pytest.raises(KeyboardInterrupt):
        publish.publish_version(store, version, files, manifest)
    assert not store.exists(f"versions/{version}/manifest.json")
    with pytest.raises(ModelContractError, match="incompletely published"):
        publish.promote(store, version)
    assert store.read_pointer() == (None, None)
    if crash_after:
        [info] = publish.list_versions(store)
        assert (info.version, info.complete, info.is_current) == (version, False, False)


# --- promotion -------------------------------------------------------------------------
def test_promote_moves_the_pointer_and_remembers_the_previous_version(store):
    old, new = published(store, 0), published(store, 5)
    first = publish.promote(store, old)
    second = publish.promote(store, new)
    assert (first.version, first.previous) == (old, None)
    assert (second.version, second.previous) == (new, old)
    assert store.read_pointer()[0] == second
    assert second.manifest_sha256 == publish.verify_version(store, new)


def test_promoting_the_current_version_again_changes_nothing(store):
    version = published(store)
    first = publish.promote(store, version)
    assert publish.promote(store, version) == first
    assert store.read_pointer()[0] == first


@pytest.mark.parametrize("allow_older", [False, True])
def test_an_older_candidate_never_replaces_a_newer_model_unless_explicitly_allowed(
    store, allow_older
):
    old, new = published(store, 0), published(store, 5)
    publish.promote(store, new)
    if allow_older:
        assert publish.promote(store, old, allow_older=True).version == old
    else:
        with pytest.raises(StoreConflict, match="older than current"):
            publish.promote(store, old)
        assert store.read_pointer()[0].version == new


def _overwrite(store: LocalStore, version: str, name: str, data: bytes | None) -> None:
    # Bypasses the store on purpose: simulates bit rot or tampering of an immutable file.
    path = store.root / "versions" / version / name
    if data is None:
        path.unlink()
    else:
        path.write_bytes(data)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("model.onnx", b"corrupted", "model.onnx sha256 differs"),
        ("report.html", b"", "report.html sha256 differs"),
        ("report.html", None, "report.html is missing"),
        ("manifest.json", b"{not json", "not JSON"),
        ("manifest.json", b'{"version": "v20990101T000000Z-00000000", "files": {}}', "another"),
        ("manifest.json", None, "incompletely published"),
    ],
)
def test_a_corrupted_version_is_refused_and_the_pointer_stays(tmp_path, name, data, message):
    store = LocalStore(tmp_path)
    good, bad = published(store, 0), published(store, 5)
    publish.promote(store, good)
    _overwrite(store, bad, name, data)
    with pytest.raises(ModelContractError, match=message):
        publish.promote(store, bad)
    assert store.read_pointer()[0].version == good


def test_racing_promoters_that_retry_on_conflict_end_with_the_newest_version(tmp_path):
    versions = [published(LocalStore(tmp_path), minutes) for minutes in range(6)]
    barrier, outcomes = threading.Barrier(len(versions)), {}

    def run(version: str) -> None:
        store = LocalStore(tmp_path)  # one client per promoter, as separate runs would be
        barrier.wait(timeout=30)
        deadline = time.monotonic() + 30  # a promoter that never wins nor loses is a bug
        while time.monotonic() < deadline:
            try:
                publish.promote(store, version)
                outcomes[version] = "promoted"
                return
            except StoreConflict as exc:
                if "older than current" in str(exc):
                    outcomes[version] = "refused"
                    return
        outcomes[version] = "still retrying"

    threads = [threading.Thread(target=run, args=(v,)) for v in reversed(versions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert "still retrying" not in outcomes.values()
    assert LocalStore(tmp_path).read_pointer()[0].version == versions[-1]
    assert outcomes[versions[-1]] == "promoted"
    assert set(outcomes) == set(versions)


# --- rollback --------------------------------------------------------------------------
def test_rollback_returns_to_the_previous_version_and_withdraws_the_newer_one(store):
    old, new = published(store, 0), published(store, 5)
    publish.promote(store, old)
    publish.promote(store, new)
    pointer = publish.rollback(store)
    assert (pointer.version, pointer.previous) == (old, new)
    with pytest.raises(StoreConflict, match="withdrawn"):
        publish.promote(store, new)  # a late retry of the bad version's promotion
    assert store.read_pointer()[0].version == old
    assert publish.promote(store, new, allow_older=True).version == new
    newest = published(store, 10)
    assert publish.promote(store, newest).version == newest


def test_rollback_to_a_named_version_skips_intermediate_ones(store):
    versions = [published(store, minutes) for minutes in (0, 5, 10)]
    for version in versions:
        publish.promote(store, version)
    pointer = publish.rollback(store, to_version=versions[0])
    assert (pointer.version, pointer.previous) == (versions[0], versions[2])
    infos = {info.version: info for info in publish.list_versions(store)}
    assert [infos[v].withdrawn for v in versions] == [False, False, True]


@pytest.mark.parametrize("setup", ["no-pointer", "no-previous", "already-rolled-back"])
def test_rollback_without_a_target_is_refused_when_there_is_nowhere_older_to_go(store, setup):
    old, new = published(store, 0), published(store, 5)
    if setup != "no-pointer":
        publish.promote(store, old)
    if setup == "already-rolled-back":
        publish.promote(store, new)
        publish.rollback(store)
    before = store.read_pointer()[0]
    with pytest.raises(ConfigError, match="rollback"):
        publish.rollback(store)
    assert store.read_pointer()[0] == before


def test_rollback_to_an_incomplete_version_is_refused(tmp_path):
    store = LocalStore(tmp_path)
    old, new = published(store, 0), published(store, 5)
    publish.promote(store, new)
    _overwrite(store, old, "manifest.json", None)
    with pytest.raises(ModelContractError):
        publish.rollback(store, to_version=old)
    assert store.read_pointer()[0].version == new


# --- listing and the run ledger --------------------------------------------------------
def test_list_versions_orders_by_creation_and_marks_current_and_incomplete(store):
    late, early = published(store, 30), published(store, 0)
    version, files, _ = bundle(60)
    store.write_new(f"versions/{version}/model.onnx", files["model.onnx"])  # never finished
    publish.promote(store, late)
    infos = publish.list_versions(store)
    assert [(i.version, i.complete, i.is_current) for i in infos] == [
        (early, True, False),
        (late, True, True),
        (version, False, False),
    ]
    assert infos[0].created_at == T0


def test_a_run_is_recorded_once_and_a_duplicate_run_conflicts(store):
    run_id = "retrain-2026-11-26T12:00:00Z"
    ledger.start_run(store, run_id, {"at": T0})
    with pytest.raises(StoreConflict, match="duplicate run"):
        ledger.start_run(store, run_id, {"at": "later"})
    recorded = json.loads(store.read(f"runs/{run_id}/started.json"))
    assert recorded == {"status": "started", "at": str(T0)}


def test_a_run_that_never_finished_shows_as_started(store):
    ledger.start_run(store, "train-a", {"kind": "train"})
    ledger.start_run(store, "train-b", {"kind": "train"})
    ledger.finish_run(store, "train-b", {"status": "promoted", "version": "v1"})
    runs = {r.run_id: r for r in ledger.list_runs(store)}
    assert runs["train-a"].status == "started" and runs["train-a"].finished is None
    assert runs["train-b"].status == "promoted" and runs["train-b"].finished["version"] == "v1"
    with pytest.raises(StoreConflict, match="finished already"):
        ledger.finish_run(store, "train-b", {"status": "failed"})


@pytest.mark.parametrize("run_id", ["", "../escape", "a/b", ".hidden", "x" * 201])
def test_run_ids_that_are_not_plain_names_are_refused(tmp_path, run_id):
    with pytest.raises(ConfigError, match="run_id"):
        ledger.start_run(LocalStore(tmp_path), run_id, {})
