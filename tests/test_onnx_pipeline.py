"""The fitted pipeline in ONNX: the skl2onnx reference and the folded fast graph agree."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from segmentation import GateFailed
from training.export import converters, fold, parity
from training.model.params import TrainingParams
from training.model.pipeline import build_pipeline
from training.model.steps import QuantileClipper


def _data(seed: int, rows: int = 1500, features: int = 8, missing: float = 0.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, size=(5, features))
    X = centers[rng.integers(0, 5, rows)] + rng.lognormal(0, 0.7, size=(rows, features))
    X[rng.random(X.shape) < missing] = np.nan
    return X


CASES = [
    pytest.param(TrainingParams(k=4, seed=1), 0.03, id="k4-default-variance"),
    pytest.param(TrainingParams(k=2, seed=2, pca_variance=0.7), 0.0, id="k2-no-missing"),
    pytest.param(TrainingParams(k=6, seed=3, pca_variance=1.0), 0.2, id="k6-all-components"),
]


@pytest.mark.parametrize(("params", "missing"), CASES)
def test_folded_graph_equals_sklearn_and_skl2onnx(params, missing):
    X = _data(params.seed, missing=missing)
    pipeline = build_pipeline(params).fit(X)
    proof = parity.prove_folded(fold.folded_graph(pipeline), pipeline, X)
    assert proof.vs_sklearn.clear_disagreements == 0
    assert proof.vs_reference.clear_disagreements == 0
    assert proof.vs_sklearn.share >= 0.999
    assert proof.max_distance_error < 1e-3


def test_folded_graph_returns_distances_and_stable_ids_like_sklearn():
    X = _data(4)
    pipeline = build_pipeline(TrainingParams(k=3, seed=4)).fit(X)
    ids = np.array([7, 3, 5])
    out = parity.run(fold.folded_graph(pipeline, ids), {fold.PIPELINE_INPUT: X})
    expected_ids, expected_dist = parity.sklearn_segments(pipeline, X, ids)
    np.testing.assert_array_equal(out["segment_id"], expected_ids)
    np.testing.assert_allclose(out["distances"], expected_dist, rtol=1e-4, atol=1e-4)
    assert out["segment_id"].dtype == np.int64 and out["distances"].dtype == np.float32


def test_folded_graph_imputes_medians_and_clips_outliers_like_the_pipeline():
    X = _data(5)
    pipeline = build_pipeline(TrainingParams(k=3, seed=5)).fit(X)
    extreme = np.vstack([np.full(X.shape[1], np.nan), np.full(X.shape[1], 1e12)])
    out = parity.run(fold.folded_graph(pipeline), {fold.PIPELINE_INPUT: extreme})
    expected_ids, expected_dist = parity.sklearn_segments(pipeline, extreme, np.arange(3))
    np.testing.assert_array_equal(out["segment_id"], expected_ids)
    np.testing.assert_allclose(out["distances"], expected_dist, rtol=1e-4, atol=1e-4)


def test_folded_graph_has_one_matrix_product_and_no_external_data():
    X = _data(6)
    model = fold.folded_graph(build_pipeline(TrainingParams(seed=6)).fit(X))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Gemm") == 1 and "MatMul" not in ops
    assert {"ArgMin", "Gather", "Sqrt", "Imputer"} <= set(ops)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 17), ("ai.onnx.ml", 3)}


@pytest.mark.parametrize("ids", [[0, 0, 1], [0, 1]])
def test_folded_graph_refuses_stable_ids_that_are_not_one_per_cluster(ids):
    X = _data(7)
    pipeline = build_pipeline(TrainingParams(k=3, seed=7)).fit(X)
    with pytest.raises(GateFailed, match="stable ids: expected 3 distinct ids"):
        fold.folded_graph(pipeline, np.array(ids))


def test_proof_fails_when_the_folded_graph_is_wrong():
    X = _data(8)
    pipeline = build_pipeline(TrainingParams(k=4, seed=8)).fit(X)
    model = fold.folded_graph(pipeline)
    bias = next(t for t in model.graph.initializer if t.name.endswith("bias"))
    values = numpy_helper.to_array(bias).copy()
    values[-4:] = values[-4:][::-1]  # swap the centroids' constant terms
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    with pytest.raises(GateFailed, match="folded graph vs scikit-learn"):
        parity.prove_folded(model, pipeline, X)


def test_skl2onnx_converts_the_clipper_with_the_registered_converter():
    X = _data(9)
    pipeline = build_pipeline(TrainingParams(k=3, seed=9)).fit(X)
    reference = converters.reference_graph(pipeline, X.shape[1])
    assert {"Max", "Min"} <= {n.op_type for n in reference.graph.node}
    out = parity.run(reference, {fold.PIPELINE_INPUT: X.astype(np.float32)})
    agreement = parity.label_agreement(
        out["label"],
        pipeline.predict(X),
        parity.sklearn_segments(pipeline, X, np.arange(3))[1],
        1e-3,
    )
    assert agreement.clear_disagreements == 0


def test_clipper_converter_keeps_double_precision():
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType

    converters.register_converters()
    X = np.column_stack([np.arange(100.0) + 0.123456789012, np.linspace(-1, 1, 100)])
    clipper = QuantileClipper((0.1, 0.9)).fit(X)
    model = to_onnx(clipper, initial_types=[("x", DoubleTensorType([None, 2]))], target_opset=17)
    (got,) = parity.run(model, {"x": X}).values()
    np.testing.assert_array_equal(got, clipper.transform(X))


NAMES = tuple(f"f{i}" for i in range(8))


def _surrogate_pipeline(X: np.ndarray, params: TrainingParams, algorithm: str):
    """Preprocessing fitted on X, then the nearest-centroid form of ``algorithm``."""
    from training.clustering.surrogate import ClusterSpec, fit_servable
    from training.model.steps import CentroidAssigner

    pipeline = build_pipeline(params, NAMES)
    Z = pipeline[:-1].fit(X).transform(X)
    servable = fit_servable(ClusterSpec(algorithm, 3), Z, random_state=params.seed)
    pipeline.steps[-1] = ("cluster", CentroidAssigner(servable.cluster_centers_).fit(Z))
    return pipeline


@pytest.mark.parametrize(
    "features", [("f5", "f0", "f2"), ("f7",), NAMES[::-1]], ids=["three", "one", "reversed"]
)
def test_folded_graph_gathers_the_cluster_features_and_still_equals_sklearn(features):
    X = _data(10)
    params = TrainingParams(k=3, seed=10, cluster_features=features)
    pipeline = build_pipeline(params, NAMES).fit(X)
    folded = fold.folded_graph(pipeline)
    gather = next(n for n in folded.graph.node if n.op_type == "Gather")
    assert gather.input[0] == fold.PIPELINE_INPUT  # the first node reads every feature
    columns = next(t for t in folded.graph.initializer if t.name.endswith("columns"))
    assert numpy_helper.to_array(columns).tolist() == [NAMES.index(f) for f in features]
    proof = parity.prove_folded(folded, pipeline, X)
    assert proof.vs_sklearn.clear_disagreements == 0 and proof.max_distance_error < 1e-3
    reference_ops = [n.op_type for n in converters.reference_graph(pipeline, X.shape[1]).graph.node]
    assert reference_ops[0] == "Gather"


def test_folded_graph_skips_the_gather_when_every_feature_is_clustered():
    X = _data(11)
    pipeline = build_pipeline(TrainingParams(k=3, seed=11, cluster_features=None), NAMES).fit(X)
    ops = [n.op_type for n in fold.folded_graph(pipeline).graph.node]
    assert ops.count("Gather") == 1  # only the stable-id table


@pytest.mark.parametrize("algorithm", ["agglomerative", "gmm"])
def test_a_surrogate_final_step_exports_and_proves_like_kmeans(algorithm):
    X = _data(12, missing=0.05)
    params = TrainingParams(k=3, seed=12, cluster_features=("f1", "f3", "f4", "f6"))
    pipeline = _surrogate_pipeline(X, params, algorithm)
    ids = np.array([4, 9, 2])
    folded = fold.folded_graph(pipeline, ids)
    proof = parity.prove_folded(folded, pipeline, X, ids)
    assert proof.vs_reference.share >= 0.999 and proof.vs_sklearn.clear_disagreements == 0
    out = parity.run(folded, {fold.PIPELINE_INPUT: X})
    served = ids[pipeline[-1].predict(pipeline[:-1].transform(X))]
    np.testing.assert_array_equal(out["segment_id"], served)
