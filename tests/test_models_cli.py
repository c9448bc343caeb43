"""`segmentation models list|show|promote|rollback` through the real CLI entry point."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from segmentation.store import LocalStore
from training.cli import main
from training.release import publish

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def _publish(store: LocalStore, minutes: int) -> str:
    model = f"model-{minutes}".encode()
    created = T0 + timedelta(minutes=minutes)
    version = publish.new_version_id(created, hashlib.sha256(model).hexdigest())
    manifest = {
        "created_at": created.isoformat(),
        "segments": [
            {"id": 0, "name": "Revolvers", "share": 0.75},
            {"id": 1, "name": "Transactors", "share": 0.25},
        ],
        "metrics": {"silhouette": 0.31},
    }
    publish.publish_version(store, version, {"model.onnx": model}, manifest)
    return version


@pytest.fixture
def store(tmp_path, monkeypatch) -> LocalStore:
    monkeypatch.setenv("SEGMENTATION_MODEL_STORE", str(tmp_path / "store"))
    return LocalStore(tmp_path / "store")


@pytest.fixture
def three(store) -> list[str]:
    """Three complete versions, the middle one current."""
    versions = [_publish(store, minutes) for minutes in (0, 10, 20)]
    publish.promote(store, versions[1])
    return versions


def _publish_incomplete(store: LocalStore) -> str:
    model = b"crashed before its manifest"
    version = publish.new_version_id(T0 + timedelta(minutes=30), hashlib.sha256(model).hexdigest())
    store.write_new(f"versions/{version}/model.onnx", model)
    return version


def _lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_list_prints_a_table_oldest_first_with_the_current_version_starred(store, three, capsys):
    version = _publish_incomplete(store)
    assert main(["models", "list"]) == 0
    header, *rows = _lines(capsys)
    assert header.split() == ["VERSION", "CREATED", "(UTC)", "STATUS"]
    assert [row.split() for row in rows] == [
        [three[0], "2026-11-26", "12:00:00", "complete"],
        ["*", three[1], "2026-11-26", "12:10:00", "complete"],
        [three[2], "2026-11-26", "12:20:00", "complete"],
        [version, "2026-11-26", "12:30:00", "incomplete"],
    ]


def test_list_of_an_empty_store_says_so(store, capsys):
    assert main(["models", "list"]) == 0
    assert _lines(capsys) == [f"no versions in {store.uri}"]


def test_show_prints_files_segments_metrics_and_a_passed_verification(store, three, capsys):
    assert main(["models", "show", three[1]]) == 0
    out = "\n".join(_lines(capsys))
    assert f"version:    {three[1]}  (current)" in out
    assert "verified:   yes" in out
    sha = hashlib.sha256(b"model-10").hexdigest()
    assert f"model.onnx  {sha}" in out
    assert "1        Transactors  25.0%" in out
    assert "metric silhouette: 0.31" in out


def test_show_of_a_corrupted_version_reports_it_and_exits_non_zero(store, three, capsys):
    (store.root / "versions" / three[0] / "model.onnx").write_bytes(b"tampered")
    assert main(["models", "show", three[0]]) == 1
    assert "verified:   NO: " in capsys.readouterr().out


def test_show_json_prints_the_manifest(store, three, capsys):
    assert main(["models", "show", three[2], "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["version"] == three[2]
    assert set(manifest["files"]) == {"model.onnx"}


@pytest.mark.parametrize(
    ("argv", "current", "previous"),
    [
        (["promote", "{2}"], 2, 1),
        (["promote", "{0}", "--allow-older"], 0, 1),
        (["rollback"], 0, 1),
        (["rollback", "--to", "{0}"], 0, 1),
    ],
)
def test_promote_and_rollback_move_the_pointer(store, three, capsys, argv, current, previous):
    publish.promote(store, three[0], allow_older=True)
    publish.promote(store, three[1])  # now current=1, previous=0
    args = [arg.format(*three) for arg in argv]
    assert main(["models", *args]) == 0
    pointer = store.read_pointer()[0]
    assert (pointer.version, pointer.previous) == (three[current], three[previous])
    assert _lines(capsys) == [f"current: {three[current]} (previous: {three[previous]})"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["promote", "{0}"], "older than current"),
        (["promote", "v20990101T000000Z-00000000"], "incompletely published"),
        (["promote", "not-a-version"], "expected v<"),
        (["rollback"], "no previous version"),
    ],
)
def test_refused_pointer_moves_exit_2_with_the_reason_and_leave_the_pointer(
    store, three, capsys, argv, message
):
    before = store.read_pointer()[0]
    assert main(["models", *[arg.format(*three) for arg in argv]]) == 2
    assert message in capsys.readouterr().err
    assert store.read_pointer()[0] == before


def test_the_installed_command_lists_versions(store, three):
    env = dict(os.environ, SEGMENTATION_MODEL_STORE=str(store.root))
    command = Path(sys.executable).with_name("segmentation")
    done = subprocess.run(
        [str(command), "models", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"*  {three[1]}" in done.stdout
