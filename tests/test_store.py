"""The model store backends: create-only writes, pointer compare-and-swap, listing.

Every contract test runs against the local folder, S3 (moto, in-process) and GCS (an
in-memory FAKE of the google-cloud-storage client surface the backend uses, below).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from google.api_core.exceptions import NotFound, PreconditionFailed
from moto import mock_aws

from segmentation.errors import ConfigError, StoreConflict
from segmentation.store import LocalStore, ModelStore, Pointer, open_store, split_bucket_uri
from segmentation.store.gcs import GCSStore
from segmentation.store.s3 import S3Store

REPO = Path(__file__).resolve().parents[1]
BUCKET = "segmentation-models"


# --- FAKE google.cloud.storage client: NOT the real service. --------------------------
# It mimics only the calls GCSStore makes, with the server-side semantics the GCS JSON API
# documents: generations per object, if_generation_match=0 meaning "no live object", 412
# raised as google.api_core PreconditionFailed, 404 as NotFound. One lock makes each call
# atomic, as the service is per object.
class FakeGCSServer:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.generations = itertools.count(1_700_000_000_000_000)
        self.lock = threading.Lock()
        self.after_reload = lambda name: None  # test hook: interleave another writer

    def check(self, name: str, if_generation_match: int | None) -> None:
        current = self.objects.get(name, (b"", 0))[1]
        if if_generation_match is not None and current != if_generation_match:
            raise PreconditionFailed(f"generation {current} != {if_generation_match}")


class FakeBlob:
    def __init__(self, server: FakeGCSServer, name: str) -> None:
        self.server, self.name, self.generation = server, name, None

    def upload_from_string(self, data, content_type=None, if_generation_match=None):
        with self.server.lock:
            self.server.check(self.name, if_generation_match)
            self.generation = next(self.server.generations)
            self.server.objects[self.name] = (bytes(data), self.generation)

    def _get(self) -> tuple[bytes, int]:
        if self.name not in self.server.objects:
            raise NotFound(self.name)
        return self.server.objects[self.name]

    def download_as_bytes(self, if_generation_match=None):
        with self.server.lock:
            data, self.generation = self._get()
            self.server.check(self.name, if_generation_match)
            return data

    def reload(self):
        with self.server.lock:
            self.generation = self._get()[1]
        self.server.after_reload(self.name)

    def exists(self):
        with self.server.lock:
            return self.name in self.server.objects


class FakeBucket:
    def __init__(self, server: FakeGCSServer, name: str) -> None:
        self.server, self.name = server, name

    def blob(self, name: str) -> FakeBlob:
        return FakeBlob(self.server, name)


class FakeGCSClient:
    def __init__(self, server: FakeGCSServer | None = None) -> None:
        self.server = server or FakeGCSServer()

    def bucket(self, name: str) -> FakeBucket:
        return FakeBucket(self.server, name)

    def list_blobs(self, bucket_or_name, prefix=None):
        with self.server.lock:
            names = sorted(n for n in self.server.objects if n.startswith(prefix or ""))
        return [FakeBlob(self.server, n) for n in names]


# --- fixtures --------------------------------------------------------------------------
@pytest.fixture
def s3_client(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _make(backend: str, tmp_path: Path, request) -> ModelStore:
    if backend == "local":
        return LocalStore(tmp_path / "store")
    if backend == "s3":
        return S3Store(f"s3://{BUCKET}/models", client=request.getfixturevalue("s3_client"))
    return GCSStore(f"gs://{BUCKET}/models", client=FakeGCSClient())


@pytest.fixture(params=["local", "s3", "gcs"])
def store(request, tmp_path) -> ModelStore:
    return _make(request.param, tmp_path, request)


def _pointer(version: str, previous: str | None = None) -> Pointer:
    return Pointer(version, "ab" * 32, f"2026-01-01T00:00:00.{version[-6:]:0>6}Z", previous)


# --- immutability ----------------------------------------------------------------------
def test_write_new_refuses_an_existing_key_and_leaves_it_untouched(store):
    store.write_new("versions/v1/model.onnx", b"first")
    with pytest.raises(StoreConflict, match="immutable"):
        store.write_new("versions/v1/model.onnx", b"second")
    assert store.read("versions/v1/model.onnx") == b"first"


def test_reading_a_missing_key_raises_file_not_found(store):
    with pytest.raises(FileNotFoundError):
        store.read("versions/v1/manifest.json")
    assert not store.exists("versions/v1/manifest.json")


def test_list_returns_the_keys_under_a_prefix_sorted(store):
    for key in ["versions/b/x", "versions/a/y", "runs/r1.json", "versions/a/x"]:
        store.write_new(key, b"1")
    assert store.list("versions/") == ["versions/a/x", "versions/a/y", "versions/b/x"]
    assert store.list("nothing/") == []
    assert store.exists("runs/r1.json")


# --- pointer compare-and-swap ----------------------------------------------------------
def test_pointer_is_absent_until_created_and_then_reads_back(store):
    assert store.read_pointer() == (None, None)
    store.swap_pointer(_pointer("v000001"), None)
    pointer, token = store.read_pointer()
    assert pointer == _pointer("v000001")
    assert token is not None


@pytest.mark.parametrize("stale", ["create-again", "old-token"])
def test_a_swap_with_a_stale_token_conflicts_and_keeps_the_pointer(store, stale):
    store.swap_pointer(_pointer("v000001"), None)
    _, first_token = store.read_pointer()
    store.swap_pointer(_pointer("v000002", "v000001"), first_token)
    expected = None if stale == "create-again" else first_token
    with pytest.raises(StoreConflict):
        store.swap_pointer(_pointer("v000003"), expected)
    assert store.read_pointer()[0] == _pointer("v000002", "v000001")


def test_promoters_holding_the_same_token_have_exactly_one_winner(store):
    # Every promoter read the pointer before any wrote: the conditions are applied one
    # after another, which is what moto enforces (see the report on its atomicity).
    store.swap_pointer(_pointer("v000001"), None)
    _, token = store.read_pointer()
    outcomes = []
    for i in range(2, 7):
        try:
            store.swap_pointer(_pointer(f"v00000{i}"), token)
            outcomes.append("won")
        except StoreConflict:
            outcomes.append("lost")
    assert outcomes == ["won", "lost", "lost", "lost", "lost"]
    assert store.read_pointer()[0].version == "v000002"


@pytest.mark.parametrize("backend", ["local", "gcs"])
def test_racing_threads_with_the_same_token_have_exactly_one_winner(backend, tmp_path, request):
    store = _make(backend, tmp_path, request)
    store.swap_pointer(_pointer("v000000"), None)
    for round_ in range(10):
        _, token = store.read_pointer()
        barrier, winners = threading.Barrier(6), []

        def promote(i: int, token=token, barrier=barrier, winners=winners, round_=round_):
            barrier.wait()
            try:
                store.swap_pointer(_pointer(f"v{round_ + 1:03d}{i:03d}"), token)
                winners.append(i)
            except StoreConflict:
                pass

        threads = [threading.Thread(target=promote, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        assert store.read_pointer()[0].version == f"v{round_ + 1:03d}{winners[0]:03d}"


_CHILD_PROMOTER = textwrap.dedent(
    """
    import sys
    from segmentation.errors import StoreConflict
    from segmentation.store import LocalStore, Pointer
    root, token, name = sys.argv[1:4]
    sys.stdin.readline()  # start line: every child is loaded before any writes
    try:
        LocalStore(root).swap_pointer(Pointer(name, "0" * 64, "t"), token)
        print("won")
    except StoreConflict:
        print("lost")
    """
)


def test_racing_processes_with_the_same_token_have_exactly_one_winner(tmp_path):
    store = LocalStore(tmp_path)
    store.swap_pointer(_pointer("v000000"), None)
    _, token = store.read_pointer()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD_PROMOTER, str(tmp_path), token, f"p{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    results = [child.communicate(timeout=60)[0].strip() for child in children]
    assert sorted(results) == ["lost", "lost", "lost", "won"]
    assert store.read_pointer()[0].version == f"p{results.index('won')}"


# --- crashes (local folder; object stores make a PUT atomic server-side) --------------
def test_a_failed_write_leaves_neither_the_key_nor_a_temp_file(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("segmentation.store.local.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.write_new("versions/v1/model.onnx", b"x" * 1000)
    assert not store.exists("versions/v1/model.onnx")
    assert list((tmp_path / "versions" / "v1").iterdir()) == []


_CHILD_CRASH = textwrap.dedent(
    """
    import os, sys
    from segmentation.store import LocalStore, Pointer
    store = LocalStore(sys.argv[1])
    if sys.argv[2] == "during-write":
        # Hard crash (no cleanup, no finally) after the bytes hit the temp file.
        os.fsync = lambda fd: os._exit(9)
        store.write_new("versions/v1/model.onnx", b"x" * 100_000)
    else:
        # Hard crash while holding the pointer lock, before the rename.
        os.replace = lambda src, dst: os._exit(9)
        store.swap_pointer(Pointer("v9", "0" * 64, "t"), None)
    """
)


@pytest.mark.parametrize("moment", ["during-write", "holding-the-pointer-lock"])
def test_a_process_killed_mid_write_leaves_no_partial_key_and_no_wedged_store(tmp_path, moment):
    store = LocalStore(tmp_path)
    crashed = subprocess.run([sys.executable, "-c", _CHILD_CRASH, str(tmp_path), moment])
    assert crashed.returncode == 9
    assert store.list("") == []  # the leftover temp file is not a key
    assert not store.exists("versions/v1/model.onnx")
    assert store.read_pointer() == (None, None)
    store.write_new("versions/v1/model.onnx", b"complete")
    store.swap_pointer(_pointer("v000001"), None)  # the dead holder's lock was released
    assert store.read("versions/v1/model.onnx") == b"complete"
    assert store.read_pointer()[0].version == "v000001"


@pytest.mark.parametrize("key", ["../outside", "versions/../../outside", "/etc/passwd"])
def test_local_keys_escaping_the_root_are_refused(tmp_path, key):
    with pytest.raises(ConfigError, match="escapes"):
        LocalStore(tmp_path / "store").write_new(key, b"x")


# --- backend specifics -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "kind"),
    [("var/store", LocalStore), ("file:///tmp/store", LocalStore), (f"s3://{BUCKET}/m", S3Store),
     (f"gs://{BUCKET}/m", GCSStore)],
)  # fmt: skip
def test_open_store_picks_the_backend_from_the_uri(uri, kind, s3_client, monkeypatch):
    monkeypatch.setattr("google.cloud.storage.Client", FakeGCSClient)
    assert isinstance(open_store(uri), kind)


@pytest.mark.parametrize("uri", ["ftp://host/store", "s3://", "gs:///prefix"])
def test_open_store_rejects_unusable_uris(uri):
    with pytest.raises(ConfigError, match="SEGMENTATION_MODEL_STORE"):
        open_store(uri)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [("s3://b", ("b", "")), ("s3://b/", ("b", "")), ("s3://b/p/q/", ("b", "p/q/"))],
)
def test_bucket_uris_split_into_bucket_and_key_prefix(uri, expected):
    assert split_bucket_uri(uri, "s3") == expected


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_stores_under_different_prefixes_of_one_bucket_do_not_see_each_other(backend, request):
    if backend == "s3":
        client = request.getfixturevalue("s3_client")
        a, b = S3Store(f"s3://{BUCKET}/a", client), S3Store(f"s3://{BUCKET}/ab", client)
    else:
        client = FakeGCSClient()
        a, b = GCSStore(f"gs://{BUCKET}/a", client), GCSStore(f"gs://{BUCKET}/ab", client)
    a.write_new("versions/v1/model.onnx", b"a")
    a.swap_pointer(_pointer("v000001"), None)
    assert b.list("") == []
    assert b.read_pointer() == (None, None)
    assert a.list("") == ["current.json", "versions/v1/model.onnx"]


def test_s3_writes_send_if_none_match_and_the_pointer_swap_sends_if_match(s3_client):
    sent: list[tuple[str, str | None, str | None]] = []

    def capture(request, **_):
        def header(name: str) -> str | None:
            value = request.headers.get(name)
            return value.decode() if isinstance(value, bytes) else value

        sent.append((request.url.rsplit("/", 1)[-1], header("If-None-Match"), header("If-Match")))

    s3_client.meta.events.register("before-send.s3.PutObject", capture)
    store = S3Store(f"s3://{BUCKET}/m", client=s3_client)
    store.write_new("versions/v1/model.onnx", b"m")
    store.swap_pointer(_pointer("v000001"), None)
    _, etag = store.read_pointer()
    store.swap_pointer(_pointer("v000002"), etag)
    assert sent == [("model.onnx", "*", None), ("current.json", "*", None),
                    ("current.json", None, etag)]  # fmt: skip


class _FailingS3Client:
    """A stub raising one botocore error, to test the mapping of codes moto never sends."""

    def __init__(self, code: str, status: int) -> None:
        self.error = ClientError(
            {
                "Error": {"Code": code, "Message": ""},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "PutObject",
        )

    def put_object(self, **_):
        raise self.error


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [("PreconditionFailed", 412, StoreConflict), ("ConditionalRequestConflict", 409, StoreConflict),
     ("NoSuchKey", 404, StoreConflict), ("AccessDenied", 403, ClientError)],
)  # fmt: skip
def test_s3_pointer_swap_errors_map_to_store_conflict_only_when_the_condition_lost(
    code, status, expected
):
    store = S3Store(f"s3://{BUCKET}", client=_FailingS3Client(code, status))
    with pytest.raises(expected):
        store.swap_pointer(_pointer("v000002"), '"etag"')


def test_gcs_pointer_read_retries_when_the_pointer_is_replaced_mid_read():
    client = FakeGCSClient()
    store = GCSStore(f"gs://{BUCKET}", client=client)
    store.swap_pointer(_pointer("v000001"), None)
    replaced = []

    def concurrent_writer(name: str) -> None:
        if not replaced:  # between reading the generation and the bytes, once
            replaced.append(name)
            FakeBlob(client.server, name).upload_from_string(_pointer("v000002").to_json())

    client.server.after_reload = concurrent_writer
    pointer, token = store.read_pointer()
    assert replaced == ["current.json"]
    assert pointer.version == "v000002"
    assert token == str(client.server.objects["current.json"][1])
