"""Read and verify a model bundle from the store (``docs/bundle-format.md``).

Serving trusts only verified bytes: the manifest's sha256 must equal the pointer's, every
file's sha256 must equal the manifest's, the graph must hold no external data, its
signature must be the contract's, and the golden rows must reproduce. Any failure raises
:class:`~segmentation.errors.ModelContractError` and nothing is served from the bundle.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segmentation._onnx_wire import WireError, has_external_data
from segmentation.bundle_format import FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE, sha256_hex
from segmentation.errors import ModelContractError
from segmentation.schema import BY_NAME, FIELD_NAMES
from segmentation.scoring import OUTPUT_NAMES, Scorer
from segmentation.store import ModelStore, Pointer, version_key

#: Golden rows must reproduce within this relative tolerance (absolute near zero).
GOLDEN_RTOL = 1e-4
GOLDEN_ATOL = 1e-6


@dataclass(frozen=True)
class Segment:
    """One segment as the manifest describes it."""

    id: int
    name: str
    description: str = ""
    share: float | None = None
    #: Features that most distinguish the segment (its explanation), most distinctive first.
    top_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """The parts of ``manifest.json`` serving relies on, plus the raw document."""

    version: str
    created_at: str
    input_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    segments: tuple[Segment, ...]
    atypical_distance: float
    golden_rows: tuple[dict, ...]
    files: dict[str, str]
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and type-check a manifest; ``ModelContractError`` names the bad key."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ModelContractError("manifest.json: not valid JSON") from None
        if not isinstance(doc, dict):
            raise ModelContractError("manifest.json: expected an object")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ModelContractError(
                f"manifest.json: format_version expected {FORMAT_VERSION}, "
                f"found {doc.get('format_version')!r}"
            )
        try:
            return cls(
                version=_str(doc["version"]),
                created_at=_str(doc["created_at"]),
                input_names=tuple(_str(i["name"]) for i in doc["inputs"]),
                feature_names=tuple(_str(f["name"]) for f in doc["features"]),
                segments=tuple(
                    Segment(
                        id=_int(s["id"]),
                        name=_str(s["name"]),
                        description=str(s.get("description", "")),
                        share=None if s.get("share") is None else float(s["share"]),
                        top_features=tuple(str(f) for f in s.get("top_features") or ()),
                    )
                    for s in doc["segments"]
                ),
                atypical_distance=float(doc["atypical_distance"]),
                golden_rows=tuple(doc["golden_rows"]),
                files={_str(k): _str(v) for k, v in doc["files"].items()},
                raw=doc,
            )
        except KeyError as exc:
            raise ModelContractError(f"manifest.json: missing key {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelContractError(f"manifest.json: malformed ({exc})") from None


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, found {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer segment id, found {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Bundle:
    """A verified, loaded model version ready to score."""

    manifest: Manifest
    scorer: Scorer
    manifest_sha256: str
    model_sha256: str
    segment_columns: dict[int, int]
    segment_names: dict[int, str]
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        return self.manifest.version


def load_bundle(store: ModelStore, pointer: Pointer) -> Bundle:
    """Read the version ``pointer`` names and verify it completely before returning it."""
    manifest_bytes = _read(store, pointer.version, MANIFEST_FILE)
    manifest_sha = sha256_hex(manifest_bytes)
    if manifest_sha != pointer.manifest_sha256:
        raise ModelContractError("manifest.json: sha256 differs from the pointer's")
    manifest = Manifest.from_json(manifest_bytes)
    if manifest.version != pointer.version:
        raise ModelContractError("manifest.json: version differs from the pointer's")
    if MODEL_FILE not in manifest.files:
        raise ModelContractError("manifest.json: files has no model.onnx entry")
    blobs = {name: _read(store, pointer.version, name) for name in manifest.files}
    for name, expected in manifest.files.items():
        if sha256_hex(blobs[name]) != expected:
            raise ModelContractError(f"{name}: sha256 differs from the manifest's")
    model = blobs[MODEL_FILE]
    try:
        if has_external_data(model):
            raise ModelContractError("model.onnx: tensors stored as external data")
    except WireError as exc:
        raise ModelContractError(f"model.onnx: not an ONNX protobuf ({exc})") from None
    _check_inputs(manifest)
    scorer = Scorer(model, FIELD_NAMES)
    _check_signature(scorer, manifest)
    ids = [s.id for s in manifest.segments]
    if len(set(ids)) != len(ids) or len(ids) < 1:
        raise ModelContractError("manifest.json: segment ids must be unique and non-empty")
    bundle = Bundle(
        manifest=manifest,
        scorer=scorer,
        manifest_sha256=manifest_sha,
        model_sha256=manifest.files[MODEL_FILE],
        segment_columns={s.id: j for j, s in enumerate(manifest.segments)},
        segment_names={s.id: s.name for s in manifest.segments},
    )
    _check_golden_rows(bundle)
    return bundle


def _read(store: ModelStore, version: str, name: str) -> bytes:
    try:
        return store.read(version_key(version, name))
    except FileNotFoundError:
        raise ModelContractError(f"{name}: missing from version {version}") from None


def _check_inputs(manifest: Manifest) -> None:
    if sorted(manifest.input_names) != sorted(FIELD_NAMES):
        raise ModelContractError("manifest.json: inputs differ from segmentation.schema")
    for spec in manifest.raw["inputs"]:
        nullable = spec.get("nullable", BY_NAME[spec["name"]].nullable)
        if bool(nullable) != BY_NAME[spec["name"]].nullable:
            raise ModelContractError(f"manifest.json: input {spec['name']} nullability differs")


def _check_signature(scorer: Scorer, manifest: Manifest) -> None:
    inputs, outputs = scorer.signature()
    if sorted(inputs) != sorted(FIELD_NAMES):
        raise ModelContractError("model.onnx: input names differ from segmentation.schema")
    for name, (dtype, shape) in inputs.items():
        if dtype != "tensor(double)" or len(shape) != 1:
            raise ModelContractError(f"model.onnx: input {name} expected tensor(double) [N]")
    k, f = len(manifest.segments), len(manifest.feature_names)
    expected = {
        "segment_id": ("tensor(int64)", 1, None),
        "distances": ("tensor(float)", 2, k),
        "features": ("tensor(float)", 2, f),
    }
    if sorted(outputs) != sorted(OUTPUT_NAMES):
        raise ModelContractError(f"model.onnx: outputs expected {list(OUTPUT_NAMES)}")
    for name, (dtype, rank, width) in expected.items():
        got_type, got_shape = outputs[name]
        if got_type != dtype or len(got_shape) != rank:
            raise ModelContractError(f"model.onnx: output {name} expected {dtype} rank {rank}")
        if width is not None and isinstance(got_shape[1], int) and got_shape[1] != width:
            raise ModelContractError(f"model.onnx: output {name} expected width {width}")


def _check_golden_rows(bundle: Bundle) -> None:
    rows = bundle.manifest.golden_rows
    if not rows:
        raise ModelContractError("manifest.json: golden_rows is empty")
    try:
        columns = {
            name: np.array(
                [np.nan if r["inputs"][name] is None else r["inputs"][name] for r in rows],
                dtype=np.float64,
            )
            for name in FIELD_NAMES
        }
        want_ids = np.array([r["segment_id"] for r in rows], dtype=np.int64)
        want_dist = np.array([r["distances"] for r in rows], dtype=np.float64)
        want_feat = np.array([r["features"] for r in rows], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelContractError(f"manifest.json: golden_rows malformed ({exc})") from None
    got = bundle.scorer.score(columns)
    if got.distances.shape != want_dist.shape or got.features.shape != want_feat.shape:
        raise ModelContractError("golden rows: output shapes differ from the manifest's")
    if not np.array_equal(got.segment_id, want_ids):
        raise ModelContractError("golden rows: segment ids do not reproduce")
    if not set(got.segment_id.tolist()) <= set(bundle.segment_columns):
        raise ModelContractError("golden rows: graph returns ids the manifest does not name")
    for name, have, want in (
        ("distances", got.distances, want_dist),
        ("features", got.features, want_feat),
    ):
        if not np.allclose(have, want, rtol=GOLDEN_RTOL, atol=GOLDEN_ATOL, equal_nan=True):
            raise ModelContractError(f"golden rows: {name} do not reproduce within 1e-4")


def read_manifest(store: ModelStore, version: str) -> dict:
    """The parsed manifest of ``version``; ``ModelContractError`` if absent (incomplete)."""
    try:
        data = store.read(version_key(version, MANIFEST_FILE))
    except FileNotFoundError:
        raise ModelContractError(
            f"version {version}: no {MANIFEST_FILE} (unknown or incompletely published)"
        ) from None
    try:
        manifest = json.loads(data)
    except ValueError:
        raise ModelContractError(f"version {version}: {MANIFEST_FILE} is not JSON") from None
    if not isinstance(manifest, dict):
        raise ModelContractError(f"version {version}: {MANIFEST_FILE} is not a JSON object")
    return manifest
