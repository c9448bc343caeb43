"""Bundle verification: only fully verified bytes are ever served."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import onnx
import pytest
from fixtures.bundles import ModelSpec, build_model, current_manifest, publish
from onnx import external_data_helper, numpy_helper

from segmentation._onnx_wire import has_external_data
from segmentation.bundle import Manifest, load_bundle
from segmentation.errors import ModelContractError
from segmentation.schema import FIELD_NAMES
from segmentation.store import LocalStore, Pointer, version_key

#: A pickle stream (protocol 4 of the int 1): what a joblib/pickle "model" file starts like.
PICKLE_BYTES = b"\x80\x04K\x01."


def _with_external_tensor(model: onnx.ModelProto) -> bytes:
    tensor = numpy_helper.from_array(np.ones(4), "unused_weights")
    external_data_helper.set_external_data(tensor, location="weights.bin")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    model.graph.initializer.append(tensor)
    return model.SerializeToString()


def _renamed_input(model: onnx.ModelProto) -> bytes:
    for node in model.graph.node:
        node.input[:] = ["BALANCE" if i == "balance" else i for i in node.input]
    model.graph.input[0].name = "BALANCE"
    return model.SerializeToString()


def _double_features(model: onnx.ModelProto) -> bytes:
    """The graph before features became float32: ``features`` double [N, F]."""
    cast = next(n for n in model.graph.node if n.output[0] == "features")
    model.graph.node.remove(cast)
    model.graph.node.append(onnx.helper.make_node("Identity", [cast.input[0]], ["features"]))
    output = next(o for o in model.graph.output if o.name == "features")
    output.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    return model.SerializeToString()


def test_a_published_bundle_loads_and_reproduces_its_golden_rows(model_store):
    pointer, _ = model_store.read_pointer()
    bundle = load_bundle(model_store, pointer)
    assert bundle.version == ModelSpec().version
    assert bundle.segment_names[3] == "Active Revolvers"
    assert bundle.segment_columns == {3: 0, 0: 1, 2: 2, 1: 3}
    assert len(bundle.model_sha256) == 64


def test_a_served_bundle_verifies_and_scores_its_golden_rows_as_recorded(served_store):
    manifest = current_manifest(served_store)
    pointer, _ = served_store.read_pointer()
    bundle = load_bundle(served_store, pointer)
    model = (served_store.root / "versions" / pointer.version / "model.onnx").read_bytes()
    assert bundle.version == manifest["version"] == pointer.version
    assert bundle.model_sha256 == hashlib.sha256(model).hexdigest()
    assert bundle.segment_names == {s["id"]: s["name"] for s in manifest["segments"]}
    golden = manifest["golden_rows"]
    columns = {
        n: np.array([np.nan if r["inputs"][n] is None else r["inputs"][n] for r in golden])
        for n in FIELD_NAMES
    }
    scores = bundle.scorer.score(columns)
    assert scores.segment_id.tolist() == [r["segment_id"] for r in golden]
    np.testing.assert_allclose(scores.distances, [r["distances"] for r in golden], rtol=1e-5)


def _republish(source, target, manifest_edit=None, model_edit=None) -> Pointer:
    """Copy the source's current version into ``target``, edited after its sha256s were
    recorded (a corrupted file, a forged manifest), and point ``target`` at it."""
    pointer, _ = source.read_pointer()
    doc = current_manifest(source)
    files = {n: source.read(version_key(pointer.version, n)) for n in doc["files"]}
    if manifest_edit:
        manifest_edit(doc)
    if model_edit:
        files["model.onnx"] = model_edit(files["model.onnx"])
    for name, data in files.items():
        target.write_new(version_key(pointer.version, name), data)
    data = json.dumps(doc).encode()
    target.write_new(version_key(pointer.version, "manifest.json"), data)
    copy = Pointer(pointer.version, hashlib.sha256(data).hexdigest(), "2026-01-01T00:00:00Z")
    target.swap_pointer(copy, None)
    return copy


def _nearest_off(doc: dict) -> None:
    row = doc["golden_rows"][0]
    row["distances"][row["distances"].index(min(row["distances"]))] += 0.5


def _other_id(doc: dict) -> None:
    ids = [s["id"] for s in doc["segments"]]
    row = doc["golden_rows"][0]
    row["segment_id"] = next(i for i in ids if i != row["segment_id"])


@pytest.mark.parametrize(
    ("manifest_edit", "model_edit", "message"),
    [
        (None, lambda b: b[: len(b) // 2], "model.onnx: sha256"),
        (None, lambda b: PICKLE_BYTES, "model.onnx: sha256"),
        (_nearest_off, None, "golden rows: distances"),
        (_other_id, None, "golden rows: segment ids"),
        (lambda d: d["segments"].pop(), None, "expected width|output shapes differ"),
        (lambda d: d.update(format_version=2), None, "format_version"),
    ],
    ids=["truncated", "pickle", "nearest off", "other id", "one segment less", "format"],
)
def test_a_tampered_copy_of_a_served_bundle_is_refused(
    served_store, store, tmp_path, manifest_edit, model_edit, message
):
    untouched = LocalStore(tmp_path / "untouched")
    assert load_bundle(untouched, _republish(served_store, untouched)).version
    pointer = _republish(served_store, store, manifest_edit, model_edit)
    with pytest.raises(ModelContractError, match=message):
        load_bundle(store, pointer)


def test_the_wire_check_finds_external_data_and_passes_a_clean_model():
    model = build_model(ModelSpec())
    assert has_external_data(model.SerializeToString()) is False
    assert has_external_data(_with_external_tensor(model)) is True


def _golden_off(doc: dict) -> None:
    doc["golden_rows"][0]["distances"][0] += 0.5


def _five_segments(doc: dict) -> None:
    doc["segments"].append({"id": 9, "name": "Extra", "description": ""})


@pytest.mark.parametrize(
    ("case", "kwargs", "message"),
    [
        ("truncated model", {"stored_model": "half"}, "model.onnx: sha256"),
        ("pickle swapped in", {"stored_model": PICKLE_BYTES}, "model.onnx: sha256"),
        ("pickle published as the model", {"model_bytes": PICKLE_BYTES}, "model.onnx: not"),
        ("external data", {"model_bytes": "external"}, "external data"),
        ("renamed input", {"model_bytes": "renamed"}, "model.onnx: input names"),
        ("double features", {"model_bytes": "double"}, "output features expected tensor.float"),
        ("golden rows off", {"manifest_edit": _golden_off}, "golden rows: distances"),
        ("manifest K differs", {"manifest_edit": _five_segments}, "expected width"),
        ("format version", {"manifest_edit": lambda d: d.update(format_version=2)}, "format"),
        ("no golden rows", {"manifest_edit": lambda d: d.update(golden_rows=[])}, "golden"),
        ("missing key", {"manifest_edit": lambda d: d.pop("segments")}, "missing key"),
    ],
)
def test_a_bad_bundle_is_refused_with_the_reason(store, case, kwargs, message):
    model = build_model(ModelSpec())
    good = model.SerializeToString()
    variants = {
        "half": good[: len(good) // 2],
        "external": _with_external_tensor(model),
        "renamed": _renamed_input(build_model(ModelSpec())),
        "double": _double_features(build_model(ModelSpec())),
    }
    kwargs = {k: variants.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    if kwargs.get("model_bytes") is PICKLE_BYTES or case in ("external data", "renamed input"):
        # These cannot produce golden rows: record the good model's, as an attacker would.
        kwargs["manifest_edit"] = None
        pointer = _publish_with_golden_from(store, good, kwargs["model_bytes"])
    else:
        pointer = publish(store, ModelSpec(), **kwargs)
    with pytest.raises(ModelContractError, match=message):
        load_bundle(store, pointer)


def _publish_with_golden_from(store, good: bytes, bad: bytes) -> Pointer:
    """Publish ``bad`` as model.onnx with a manifest whose golden rows came from ``good``."""
    import hashlib

    from fixtures.bundles import manifest_for

    from segmentation.store import version_key

    spec = ModelSpec()
    doc = manifest_for(spec, good, {"model.onnx": bad})
    store.write_new(version_key(spec.version, "model.onnx"), bad)
    data = json.dumps(doc).encode()
    store.write_new(version_key(spec.version, "manifest.json"), data)
    pointer = Pointer(spec.version, hashlib.sha256(data).hexdigest(), "2026-01-01T00:00:00Z")
    store.swap_pointer(pointer, None)
    return pointer


def test_a_manifest_that_differs_from_the_pointer_is_refused(model_store):
    pointer, _ = model_store.read_pointer()
    forged = dataclasses.replace(pointer, manifest_sha256="0" * 64)
    with pytest.raises(ModelContractError, match="differs from the pointer"):
        load_bundle(model_store, forged)


def test_a_missing_model_file_is_refused(store):
    pointer = publish(store, ModelSpec(), promote=False)
    (store.root / "versions" / pointer.version / "model.onnx").unlink()
    with pytest.raises(ModelContractError, match=r"model\.onnx: missing"):
        load_bundle(store, pointer)


def test_the_manifest_parses_into_a_frozen_dataclass(model_store):
    pointer, _ = model_store.read_pointer()
    data = model_store.read(f"versions/{pointer.version}/manifest.json")
    manifest = Manifest.from_json(data)
    assert [s.id for s in manifest.segments] == [3, 0, 2, 1]
    assert manifest.atypical_distance == 2.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.version = "other"  # type: ignore[misc]
