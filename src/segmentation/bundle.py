"""Read and verify a model bundle from the store (``docs/bundle-format.md``).

Serving trusts only verified bytes: the manifest's sha256 must equal the pointer's, every
file's sha256 must equal the manifest's, the graphs must hold no external data, the signature
of the graph that will run must be the contract's, and the golden rows must reproduce on it.
Any failure raises :class:`~segmentation.errors.ModelContractError` and nothing is served.

The graph that runs is ``scoring.onnx`` when the bundle ships it (segment ids and distances
only, proven equal to ``model.onnx``'s by the export gates), else ``model.onnx``; callers
that need the ``features`` output ask for the full graph (``full_graph=True``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segmentation._onnx_wire import WireError, has_external_data
from segmentation.bundle_format import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    SCORING_FILE,
    sha256_hex,
)
from segmentation.errors import ModelContractError
from segmentation.schema import BY_NAME, FIELD_NAMES
from segmentation.scoring import OUTPUT_NAMES, SCORING_OUTPUT_NAMES, Scorer
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
    """A verified, loaded model version ready to score.

    ``scorer`` runs the scoring graph (``graph`` names its file); ``full_scorer`` runs
    ``model.onnx`` with its ``features`` output, when it was asked for or is the only graph.
    """

    manifest: Manifest
    scorer: Scorer
    manifest_sha256: str
    model_sha256: str
    segment_columns: dict[int, int]
    segment_names: dict[int, str]
    graph: str = MODEL_FILE
    full_scorer: Scorer | None = None
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        return self.manifest.version


def load_bundle(store: ModelStore, pointer: Pointer, full_graph: bool = False) -> Bundle:
    """Read the version ``pointer`` names and verify it completely before returning it.

    ``full_graph`` also loads and checks ``model.onnx`` (its ``features`` included) when the
    bundle ships a scoring graph; its bytes are checked by sha256 either way.
    """
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
    _check_inputs(manifest)
    graph = SCORING_FILE if SCORING_FILE in blobs else MODEL_FILE
    full = None
    if graph == MODEL_FILE or full_graph:
        full = _scorer(MODEL_FILE, blobs[MODEL_FILE])
        _check_signature(MODEL_FILE, full, manifest, OUTPUT_NAMES)
    scorer = full if graph == MODEL_FILE else _scorer(SCORING_FILE, blobs[SCORING_FILE])
    if scorer is not full:
        _check_signature(SCORING_FILE, scorer, manifest, SCORING_OUTPUT_NAMES)
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
        graph=graph,
        full_scorer=full,
    )
    _check_golden_rows(bundle)
    return bundle


def _read(store: ModelStore, version: str, name: str) -> bytes:
    try:
        return store.read(version_key(version, name))
    except FileNotFoundError:
        raise ModelContractError(f"{name}: missing from version {version}") from None


def _scorer(name: str, model: bytes) -> Scorer:
    try:
        if has_external_data(model):
            raise ModelContractError(f"{name}: tensors stored as external data")
    except WireError as exc:
        raise ModelContractError(f"{name}: not an ONNX protobuf ({exc})") from None
    return Scorer(model, name=name)


def _check_inputs(manifest: Manifest) -> None:
    if sorted(manifest.input_names) != sorted(FIELD_NAMES):
        raise ModelContractError("manifest.json: inputs differ from segmentation.schema")
    for spec in manifest.raw["inputs"]:
        nullable = spec.get("nullable", BY_NAME[spec["name"]].nullable)
        if bool(nullable) != BY_NAME[spec["name"]].nullable:
            raise ModelContractError(f"manifest.json: input {spec['name']} nullability differs")


def _check_signature(
    name: str, scorer: Scorer, manifest: Manifest, output_names: tuple[str, ...]
) -> None:
    inputs, outputs = scorer.signature()
    # The full graph takes every staged field (one signature for every model); a scoring
    # graph reads only the fields its clustering uses.
    if output_names == OUTPUT_NAMES and sorted(inputs) != sorted(FIELD_NAMES):
        raise ModelContractError(f"{name}: input names differ from segmentation.schema")
    if not inputs or not set(inputs) <= set(FIELD_NAMES):
        raise ModelContractError(f"{name}: input names are not staged fields")
    for field_name, (dtype, shape) in inputs.items():
        if dtype != "tensor(double)" or len(shape) != 1:
            raise ModelContractError(f"{name}: input {field_name} expected tensor(double) [N]")
    k, f = len(manifest.segments), len(manifest.feature_names)
    expected = {
        "segment_id": ("tensor(int64)", 1, None),
        "distances": ("tensor(float)", 2, k),
        "features": ("tensor(float)", 2, f),
    }
    if sorted(outputs) != sorted(output_names):
        raise ModelContractError(f"{name}: outputs expected {list(output_names)}")
    for output in output_names:
        dtype, rank, width = expected[output]
        got_type, got_shape = outputs[output]
        if got_type != dtype or len(got_shape) != rank:
            raise ModelContractError(f"{name}: output {output} expected {dtype} rank {rank}")
        if width is not None and isinstance(got_shape[1], int) and got_shape[1] != width:
            raise ModelContractError(f"{name}: output {output} expected width {width}")


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
        want = {
            "segment_id": np.array([r["segment_id"] for r in rows], dtype=np.int64),
            "distances": np.array([r["distances"] for r in rows], dtype=np.float64),
            "features": np.array([r["features"] for r in rows], dtype=np.float64),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelContractError(f"manifest.json: golden_rows malformed ({exc})") from None
    scorers = [bundle.scorer]
    if bundle.full_scorer is not None and bundle.full_scorer is not bundle.scorer:
        scorers.append(bundle.full_scorer)
    for scorer in scorers:
        _check_golden_outputs(scorer, scorer.score(columns), want, bundle.segment_columns)


def _check_golden_outputs(
    scorer: Scorer, got, want: dict[str, np.ndarray], segment_columns: dict[int, int]
) -> None:
    name = scorer.name
    compared = ["distances", "features"] if scorer.has_features else ["distances"]
    if any(getattr(got, n).shape != want[n].shape for n in compared):
        raise ModelContractError(f"golden rows: output shapes differ from the manifest's ({name})")
    if not np.array_equal(got.segment_id, want["segment_id"]):
        raise ModelContractError(f"golden rows: segment ids do not reproduce ({name})")
    if not set(got.segment_id.tolist()) <= set(segment_columns):
        raise ModelContractError(f"golden rows: ids the manifest does not name ({name})")
    for output in compared:
        have = getattr(got, output)
        if not np.allclose(have, want[output], rtol=GOLDEN_RTOL, atol=GOLDEN_ATOL, equal_nan=True):
            raise ModelContractError(f"golden rows: {output} do not reproduce within 1e-4 ({name})")


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
