"""The S3 and GCS store backends against real local servers, through the project's code.

moto in server mode (S3) and fake-gcs-server (GCS) each run in their own process on
127.0.0.1 (``fixtures/object_servers.py``); the stores are opened with ``open_store`` and
the default clients, pointed at the servers by ``AWS_ENDPOINT_URL`` and
``STORAGE_EMULATOR_HOST`` as a deployment points them at the clouds. The contract tests of
``test_store.py`` and ``test_publish.py`` run here again, unchanged, against the servers.

What the servers enforce (checked below on the raw clients, bypassing the store):

- moto 5.2.5: ``PutObject`` with ``If-None-Match: *`` on an existing key and with a stale
  ``If-Match`` ETag answer 412 ``PreconditionFailed``; ``If-Match`` on a missing key 404
  ``NoSuchKey``.
- fake-gcs-server: uploads with ``ifGenerationMatch`` (0 for "no live object", or a
  stale generation) answer 412.

Where they differ from the real services in ways that matter to the store:

- moto checks an S3 condition, then stores the object, with no lock around the two
  (``moto/s3/responses.py`` ``put_object``; the server runs a thread per request). Two
  conditional writes to one key in flight together could both pass; real S3 settles them
  atomically (one gets 412, or 409 ``ConditionalRequestConflict``, which moto never
  sends: ``test_store.py`` maps it with a stub). Under the GIL the window is a few
  bytecodes: about 150 racing rounds (12 threads, or 4 processes, with 10 B and 2 MB
  bodies) never produced two winners, and the racing test below would report it.
- moto's ETag, like S3's for single-part unencrypted objects, is the MD5 of the bytes: a
  token names content, not a write, so a pointer that went A -> B -> A byte for byte would
  accept a stale token for A. Pointer bytes are unique per promotion (``promoted_at`` to
  the microsecond), so it cannot happen through ``promote``/``rollback``.
- fake-gcs-server ignores ``ifGenerationMatch`` on resumable uploads, which the client
  uses above 8 MiB: a second create-only write of a large object overwrites it there,
  while real GCS refuses it. Bundles are far smaller (a real export: model.onnx 7 KB,
  report.html 0.5 MB, the largest file), and these tests write only small objects.
- fake-gcs-server ignores ``ifGenerationMatch`` on downloads, so ``GCSStore.read_versioned``
  asking for "exactly the generation just read" is not checked there: a pointer replaced
  between the two requests gives the new bytes with the old generation, and the swap that
  follows conflicts (safe: a refused promotion, never a lost update).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import duckdb
import numpy as np
import pytest
from botocore.exceptions import ClientError
from fixtures import object_servers
from fixtures.bundles import ModelSpec, current_manifest, publish, run_model
from fixtures.object_servers import ResponseDropper, Server, free_port
from fixtures.workspace import workspace_settings
from google.api_core.exceptions import PreconditionFailed
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from test_publish import (
    bundle,
    published,
    test_a_run_is_recorded_once_and_a_duplicate_run_conflicts,
    test_a_run_that_never_finished_shows_as_started,
    test_an_older_candidate_never_replaces_a_newer_model_unless_explicitly_allowed,
    test_list_versions_orders_by_creation_and_marks_current_and_incomplete,
    test_promote_moves_the_pointer_and_remembers_the_previous_version,
    test_promoting_the_current_version_again_changes_nothing,
    test_publish_refuses_a_bad_bundle_before_writing_anything,
    test_publishing_a_version_twice_conflicts_and_keeps_the_first,
    test_rollback_returns_to_the_previous_version_and_withdraws_the_newer_one,
    test_rollback_to_a_named_version_skips_intermediate_ones,
    test_rollback_without_a_target_is_refused_when_there_is_nowhere_older_to_go,
)
from test_store import (
    _pointer,
    test_a_swap_with_a_stale_token_conflicts_and_keeps_the_pointer,
    test_list_returns_the_keys_under_a_prefix_sorted,
    test_pointer_is_absent_until_created_and_then_reads_back,
    test_promoters_holding_the_same_token_have_exactly_one_winner,
    test_reading_a_missing_key_raises_file_not_found,
    test_write_new_refuses_an_existing_key_and_leaves_it_untouched,
)

from segmentation import FIELD_NAMES, Settings
from segmentation.bundle_format import MODEL_FILE
from segmentation.errors import ModelContractError, StoreConflict
from segmentation.store import ModelStore, open_store, version_key
from training.cli import main
from training.commands.serve import Emulator
from training.data import write_customers
from training.release import publish as release

REPO = Path(__file__).resolve().parents[1]
PREFIX = "models"
V2 = ModelSpec(version="v20260102T000000Z-00000002", names=("A", "B", "C", "D"))

# The contract tests imported above are collected here too, and run on this module's
# `store` fixture: the real servers. Listed so that linters see them used.
CONTRACT_TESTS = (
    test_write_new_refuses_an_existing_key_and_leaves_it_untouched,
    test_reading_a_missing_key_raises_file_not_found,
    test_list_returns_the_keys_under_a_prefix_sorted,
    test_pointer_is_absent_until_created_and_then_reads_back,
    test_a_swap_with_a_stale_token_conflicts_and_keeps_the_pointer,
    test_promoters_holding_the_same_token_have_exactly_one_winner,
    test_publish_refuses_a_bad_bundle_before_writing_anything,
    test_publishing_a_version_twice_conflicts_and_keeps_the_first,
    test_promote_moves_the_pointer_and_remembers_the_previous_version,
    test_promoting_the_current_version_again_changes_nothing,
    test_an_older_candidate_never_replaces_a_newer_model_unless_explicitly_allowed,
    test_rollback_returns_to_the_previous_version_and_withdraws_the_newer_one,
    test_rollback_to_a_named_version_skips_intermediate_ones,
    test_rollback_without_a_target_is_refused_when_there_is_nowhere_older_to_go,
    test_list_versions_orders_by_creation_and_marks_current_and_incomplete,
    test_a_run_is_recorded_once_and_a_duplicate_run_conflicts,
    test_a_run_that_never_finished_shows_as_started,
)


# --- servers and stores ----------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_server(tmp_path_factory) -> Iterator[Server]:
    with object_servers.moto_s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="module")
def gcs_server(tmp_path_factory) -> Iterator[Server]:
    with object_servers.fake_gcs_server(tmp_path_factory.mktemp("fake-gcs")) as server:
        yield server


@dataclass
class Backend:
    """One object service: its server, how clients are pointed at it, its raw API."""

    name: str  # "s3" or "gcs"
    server: Server

    def env(self, url: str | None = None) -> dict[str, str]:
        """Environment that points the default client at ``url`` (default: the server)."""
        url = url or self.server.url
        if self.name == "s3":
            return {
                "AWS_ENDPOINT_URL": url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        return {"STORAGE_EMULATOR_HOST": url}

    def uri(self, bucket: str) -> str:
        return f"{'s3' if self.name == 's3' else 'gs'}://{bucket}/{PREFIX}"

    def s3(self):
        return boto3.client(
            "s3",
            endpoint_url=self.server.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def gcs(self) -> storage.Client:
        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.server.url},
        )

    def new_bucket(self) -> str:
        bucket = f"seg-{uuid.uuid4().hex[:16]}"
        if self.name == "s3":
            self.s3().create_bucket(Bucket=bucket)
        else:
            self.gcs().create_bucket(bucket)
        return bucket

    def put(self, bucket: str, key: str, data: bytes) -> None:
        """An unconditional write straight to the server (another writer, or tampering)."""
        if self.name == "s3":
            self.s3().put_object(Bucket=bucket, Key=f"{PREFIX}/{key}", Body=data)
        else:
            self.gcs().bucket(bucket).blob(f"{PREFIX}/{key}").upload_from_string(data)


@pytest.fixture(params=["s3", "gcs"])
def backend(request) -> Backend:
    server = request.getfixturevalue("moto_server" if request.param == "s3" else "gcs_server")
    return Backend(request.param, server)


def open_backend_store(backend: Backend, monkeypatch, url: str | None = None) -> ModelStore:
    """A store in a fresh bucket, opened as a deployment opens it (``open_store``)."""
    for name, value in backend.env(url).items():
        monkeypatch.setenv(name, value)
    return open_store(backend.uri(backend.new_bucket()))


@pytest.fixture
def store(backend, monkeypatch) -> ModelStore:
    """An empty store in its own bucket on the backend's server."""
    return open_backend_store(backend, monkeypatch)


def bucket_of(store: ModelStore) -> str:
    return store.uri.split("://", 1)[1].split("/", 1)[0]


# --- what the servers enforce, without the store ---------------------------------------
def test_the_servers_refuse_a_second_create_and_a_stale_token_themselves(backend):
    bucket = backend.new_bucket()
    if backend.name == "s3":
        s3 = backend.s3()
        first = s3.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")["ETag"]
        s3.put_object(Bucket=bucket, Key="k", Body=b"2", IfMatch=first)
        attempts = [{"IfNoneMatch": "*"}, {"IfMatch": first}]
        for condition in attempts:
            with pytest.raises(ClientError) as refused:
                s3.put_object(Bucket=bucket, Key="k", Body=b"3", **condition)
            assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"2"
    else:
        blob = backend.gcs().bucket(bucket).blob("k")
        blob.upload_from_string(b"1", if_generation_match=0)
        first = blob.generation
        blob.upload_from_string(b"2", if_generation_match=first)
        for generation in (0, first):
            with pytest.raises(PreconditionFailed):
                backend.gcs().bucket(bucket).blob("k").upload_from_string(
                    b"3", if_generation_match=generation
                )
        assert backend.gcs().bucket(bucket).blob("k").download_as_bytes() == b"2"


# --- publish, promote, reject, rollback beyond the imported contract tests ------------
def test_a_rejected_version_is_never_promoted(store):
    current, candidate = published(store, 0), published(store, 5)
    release.promote(store, current)
    release.reject(store, candidate, ["silhouette below the current model's"], {"sil": 0.1})
    for allow_older in (False, True):
        with pytest.raises(StoreConflict, match="rejected"):
            release.promote(store, candidate, allow_older=allow_older)
    assert store.read_pointer()[0].version == current
    [info] = [i for i in release.list_versions(store) if i.version == candidate]
    assert info.rejected and not info.is_current


def test_a_version_tampered_with_on_the_server_is_refused(store, backend):
    good, bad = published(store, 0), published(store, 5)
    release.promote(store, good)
    backend.put(bucket_of(store), version_key(bad, MODEL_FILE), b"not the published bytes")
    with pytest.raises(ModelContractError, match=r"model\.onnx sha256 differs"):
        release.promote(store, bad)
    assert store.read_pointer()[0].version == good


# --- two processes racing to promote ---------------------------------------------------
_CHILD_PROMOTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from segmentation.errors import StoreConflict
    from segmentation.store import open_store
    from training.release import publish

    uri, version, barrier, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    store = open_store(uri)
    read_pointer = store.read_pointer

    def read_then_wait():
        # Every promoter has read the pointer before any writes: their swaps race.
        seen = read_pointer()
        (barrier / version).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < count:
            if time.monotonic() > deadline:
                sys.exit("barrier: the other promoters never arrived")
            time.sleep(0.001)
        return seen

    store.read_pointer = read_then_wait
    try:
        print("won", publish.promote(store, version).version)
    except StoreConflict as exc:
        print("lost", exc)
    """
)


@pytest.mark.slow
def test_two_processes_racing_to_promote_have_exactly_one_winner(store, tmp_path):
    release.promote(store, published(store, 0))
    env = dict(os.environ)  # the store fixture pointed the clients at the server
    for round_ in range(1, 4):
        before = store.read_pointer()[0]
        candidates = [published(store, 10 * round_ + i) for i in (1, 2)]
        barrier = tmp_path / f"barrier-{round_}"
        barrier.mkdir()
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD_PROMOTER, store.uri, version, str(barrier), "2"],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for version in candidates
        ]
        outputs = []
        try:
            for child in children:
                out, err = child.communicate(timeout=120)
                assert child.returncode == 0, err
                outputs.append(out.strip())
        finally:
            for child in children:
                if child.poll() is None:  # a failed round leaves no promoter behind
                    child.kill()
                    child.wait()
        won = [o.split(" ", 1)[1] for o in outputs if o.startswith("won ")]
        lost = [o.split(" ", 1)[1] for o in outputs if o.startswith("lost ")]
        assert len(won) == 1 and len(lost) == 1, outputs
        assert "current.json" in lost[0] and "another writer changed it first" in lost[0]
        pointer = store.read_pointer()[0]
        assert (pointer.version, pointer.previous) == (won[0], before.version)


# --- a retried conditional write that had in fact succeeded ----------------------------
@pytest.fixture
def dropper(backend) -> Iterator[ResponseDropper]:
    with ResponseDropper(backend.server.port) as proxy:
        yield proxy


@pytest.fixture
def store_behind_dropper(backend, dropper, monkeypatch) -> ModelStore:
    """A store whose client talks to the server through ``dropper``."""
    return open_backend_store(backend, monkeypatch, url=dropper.url)


def _write_new(store: ModelStore, key: str, data: bytes) -> None:
    store.write_new(key, data)


def _create_pointer(store: ModelStore, key: str, data: bytes) -> None:
    store.write_if(key, data, None)


def _swap_pointer(store: ModelStore, key: str, data: bytes) -> None:
    store.write_if(key, b"the pointer before", None)
    _, token = store.read_versioned(key)
    store.write_if(key, data, token)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("write", "key"),
    [(_write_new, "versions/v1/model.onnx"), (_create_pointer, "current.json"),
     (_swap_pointer, "current.json")],
    ids=["write-new", "create-pointer", "swap-pointer"],
)  # fmt: skip
def test_a_retried_write_whose_first_response_was_lost_is_reported_as_done(
    store_behind_dropper, dropper, write, key
):
    store = store_behind_dropper
    data = json.dumps({"written": "once", "nonce": uuid.uuid4().hex}).encode()
    dropper.drop_next(f"{PREFIX}/{key}")
    write(store, key, data)  # the client retried: its retry's condition failed
    assert len(dropper.dropped) == 1, "no response was lost: the test proved nothing"
    assert store.read(key) == data
    # Identity, not equal bytes: another call writing the same bytes still conflicts.
    with pytest.raises(StoreConflict):
        store.write_new(key, data)


@pytest.mark.slow
def test_a_retry_that_finds_another_writers_object_still_conflicts(
    store_behind_dropper, dropper, backend
):
    store = store_behind_dropper
    store.swap_pointer(_pointer("v000001"), None)
    _, token = store.read_pointer()
    other = _pointer("v000003", "v000002").to_json()

    def another_promoter() -> None:  # between our write landing and our retry
        backend.put(bucket_of(store), "current.json", other)

    dropper.drop_next(f"{PREFIX}/current.json", then=another_promoter)
    with pytest.raises(StoreConflict):
        store.swap_pointer(_pointer("v000002", "v000001"), token)
    assert len(dropper.dropped) == 1
    assert store.read("current.json") == other


@pytest.mark.slow
def test_publishing_and_promoting_through_lost_responses_completes(store_behind_dropper, dropper):
    store = store_behind_dropper
    version, files, manifest = bundle(0)
    lost = [version_key(version, name) for name in (MODEL_FILE, "manifest.json")]

    def lose_the_manifest_response(name: str) -> None:
        if name == "report.html":  # written after model.onnx; the manifest comes last
            dropper.drop_next(f"{PREFIX}/{lost[1]}")

    dropper.drop_next(f"{PREFIX}/{lost[0]}")
    manifest_sha = release.publish_version(
        store, version, files, manifest, after_write=lose_the_manifest_response
    )
    dropper.drop_next(f"{PREFIX}/current.json")
    pointer = release.promote(store, version)
    assert len(dropper.dropped) == 3
    assert release.verify_version(store, version) == manifest_sha == pointer.manifest_sha256
    assert store.read_pointer()[0] == pointer


# --- serving from s3:// and gs:// through the emulator -------------------------------
def http(url: str, doc: dict | None = None) -> tuple[int, dict]:
    """GET ``url`` (or POST ``doc`` to it): status and JSON body; 0 if unreachable."""
    body = None if doc is None else json.dumps(doc).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


def wait_for_version(url: str, version: str, seconds: float) -> None:
    """Ask ``url`` for its model until it names ``version``; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    last: tuple[int, dict] = (0, {})
    while time.monotonic() < deadline:
        last = http(url)
        if last[0] == 200 and last[1].get("model_version") == version:
            return
        time.sleep(0.1)
    pytest.fail(f"{url} never served {version} within {seconds}s; last answer {last}")


@pytest.mark.slow
def test_the_emulator_serves_the_stores_model_and_picks_up_a_promotion(store, customer):
    publish(store, ModelSpec())
    golden = current_manifest(store)["golden_rows"]
    # The functions inherit this process's environment: the store fixture's endpoints.
    settings = Settings(model_store=store.uri, pointer_poll_seconds=0.2)
    emulator = Emulator(settings, free_port(), free_port(), workers=1, threads=2).start()
    try:
        wait_for_version(emulator.predict_url + "/model", ModelSpec().version, seconds=60)
        status, body = http(
            emulator.predict_url + "/", {"customers": [g["inputs"] for g in golden]}
        )
        assert status == 200
        assert [r["segment_id"] for r in body["results"]] == [g["segment_id"] for g in golden]

        answers: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def traffic() -> None:
            while True:  # at least one request, whenever the thread gets to run
                status, body = http(emulator.predict_url + "/", customer)
                answers.append((status, body.get("model_version")))
                if stop.is_set():
                    return

        sender = threading.Thread(target=traffic)
        sender.start()
        try:
            publish(store, V2)  # promoted while requests keep arriving
            wait_for_version(emulator.predict_url + "/model", V2.version, seconds=30)
        finally:
            stop.set()
            sender.join(timeout=30)
        assert answers and {status for status, _ in answers} == {200}
        served = [version for _, version in answers]
        switch = served.index(V2.version) if V2.version in served else len(served)
        assert set(served[:switch]) <= {ModelSpec().version}
        assert set(served[switch:]) <= {V2.version}  # never back to the old model
        deadline = time.monotonic() + 30
        while http(emulator.health_url + "/")[1].get("model_version") != V2.version:
            assert time.monotonic() < deadline, "health never reported the promoted version"
            time.sleep(0.1)
    finally:
        emulator.stop()


# --- batch scoring from s3:// and gs:// ------------------------------------------------
def use_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Point the CLI at ``settings`` through the environment, as a user would."""
    for name, value in {
        "SEGMENTATION_DATA": settings.data,
        "SEGMENTATION_WAREHOUSE": settings.warehouse,
        "SEGMENTATION_MODEL_STORE": settings.model_store,
        "DBT_TARGET_PATH": settings.dbt_target_path,
        "DBT_LOG_PATH": settings.dbt_log_path,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Settings:
    """A DuckDB warehouse with the features of 400 generated customers (built once)."""
    root = tmp_path_factory.mktemp("warehouse")
    write_customers(root / "customers.csv", 400, seed=11)
    settings = workspace_settings(root, root / "customers.csv")
    with pytest.MonkeyPatch.context() as mp:
        use_settings(mp, settings)
        assert main(["features", "--quiet"]) == 0
    return settings


@pytest.mark.slow
def test_segmentation_score_scores_the_warehouse_with_the_stores_model(
    warehouse, store, monkeypatch, capsys
):
    pointer = publish(store, ModelSpec())
    use_settings(monkeypatch, dataclasses.replace(warehouse, model_store=store.uri))
    capsys.readouterr()
    assert main(["score", "--quiet"]) == 0
    assert f"with model {pointer.version}" in capsys.readouterr().out
    fields = ", ".join(f"c.{name}::double" for name in FIELD_NAMES)
    # Same configuration as dbt-duckdb's connection, which this process may still hold.
    with duckdb.connect(warehouse.warehouse) as con:
        rows = con.execute(
            f"select s.segment_id, s.distance, s.model_version, {fields} "
            "from customer_segments s join stg_customers c using (customer_id) order by customer_id"
        ).fetchall()
        staged = con.execute("select count(*) from stg_customers").fetchone()[0]
    assert len(rows) == staged > 0
    assert {row[2] for row in rows} == {pointer.version}
    # Oracle: the published graph run directly by onnxruntime on the staged rows.
    inputs = [dict(zip(FIELD_NAMES, row[3:], strict=True)) for row in rows]
    ids, distances, _ = run_model(store.read(version_key(pointer.version, MODEL_FILE)), inputs)
    np.testing.assert_array_equal([row[0] for row in rows], ids)
    np.testing.assert_allclose([row[1] for row in rows], distances.min(axis=1), rtol=1e-6)
