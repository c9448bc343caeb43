"""A trained version's bundle holds exactly what docs/bundle-format.md promises.

One model is trained per session of this module on generated customers (dbt build, fit,
export, gates, publish, promote) in a temporary warehouse and store.
"""

from __future__ import annotations

import itertools
import json
import re

import duckdb
import numpy as np
import onnx
import pytest

from segmentation import FIELD_NAMES, FIELDS, Settings
from segmentation.bundle import load_bundle
from segmentation.bundle_format import sha256_hex
from segmentation.store import open_store, version_key
from training.data import write_customers
from training.features import FEATURE_MODEL
from training.model.params import TrainingParams
from training.release import ledger
from training.release.manifest import drift_reference, snapshot_sha256
from training.train import train_and_publish

slow = pytest.mark.slow


@pytest.mark.parametrize("seed", [0, 1])
def test_snapshot_hash_ignores_row_order_and_nan_payloads(seed):
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:05d}" for i in range(50)])
    X = rng.normal(size=(50, 3))
    X[rng.random(X.shape) < 0.1] = np.nan
    order = rng.permutation(50)
    odd_nan = X.copy()
    odd_nan[np.isnan(odd_nan)] = -np.nan  # another NaN bit pattern, same NULL
    digest = snapshot_sha256(ids, X, ("a", "b", "c"))
    assert snapshot_sha256(ids[order], X[order], ("a", "b", "c")) == digest
    assert snapshot_sha256(ids, odd_nan, ("a", "b", "c")) == digest
    changed = X.copy()
    changed[0, 0] = 1.0 + (0.0 if np.isnan(changed[0, 0]) else changed[0, 0])
    assert snapshot_sha256(ids, changed, ("a", "b", "c")) != digest
    assert snapshot_sha256(ids, X, ("a", "b", "d")) != digest


def test_drift_reference_shares_count_valid_values_and_nulls_separately():
    X = np.column_stack([np.r_[np.arange(90.0), [np.nan] * 10], np.zeros(100)])
    ref = drift_reference(X, ("spread", "constant"), np.r_[[0] * 30, [1] * 70], bins=10)
    spread = ref["features"]["spread"]
    assert spread["null_share"] == pytest.approx(0.1)
    assert sum(spread["shares"]) == pytest.approx(1.0) and len(spread["bin_edges"]) == 11
    assert ref["features"]["constant"] == {"bin_edges": [0.0], "shares": [1.0], "null_share": 0.0}
    assert ref["segment_shares"] == {"0": 0.3, "1": 0.7}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    data = root / "customers.csv"
    write_customers(data, 3000, seed=11)
    settings = Settings(
        data=str(data),
        warehouse=str(root / "wh.duckdb"),
        model_store=str(root / "store"),
        dbt_target_path=str(root / "target"),
        dbt_log_path=str(root / "logs"),
    )
    result = train_and_publish(settings, TrainingParams(k=4, seed=3))
    store = open_store(settings.model_store)
    manifest_bytes = store.read(version_key(result.version, "manifest.json"))
    return settings, result, store, json.loads(manifest_bytes), manifest_bytes


@slow
def test_version_folder_holds_the_three_files_and_the_pointer_names_it(trained):
    _, result, store, _, manifest_bytes = trained
    assert store.list(f"versions/{result.version}") == [
        f"versions/{result.version}/{name}"
        for name in ("manifest.json", "model.onnx", "report.html")
    ]
    pointer, _ = store.read_pointer()
    assert pointer.version == result.version
    assert pointer.manifest_sha256 == sha256_hex(manifest_bytes) == result.manifest_sha256
    assert re.fullmatch(r"v\d{8}T\d{12}Z-[0-9a-f]{8}", result.version)


@slow
def test_every_file_matches_its_sha256_and_serving_verifies_the_bundle(trained):
    _, result, store, manifest, _ = trained
    assert set(manifest["files"]) == {"model.onnx", "report.html"}
    for name, digest in manifest["files"].items():
        assert sha256_hex(store.read(version_key(result.version, name))) == digest
    pointer, _ = store.read_pointer()
    bundle = load_bundle(store, pointer)  # checksums, signature, golden rows
    assert bundle.version == result.version


@slow
def test_graph_has_the_contract_signature_metadata_and_no_external_data(trained):
    _, result, store, manifest, _ = trained
    model = onnx.load_from_string(store.read(version_key(result.version, "model.onnx")))
    assert [i.name for i in model.graph.input] == list(FIELD_NAMES)
    assert [o.name for o in model.graph.output] == ["segment_id", "distances", "features"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["feature_sql_sha256"] == manifest["feature_sql_sha256"]
    assert result.version.startswith(props["version"])
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


@slow
def test_manifest_inputs_are_the_schema_with_bounds_and_nullability(trained):
    manifest = trained[3]
    assert manifest["format_version"] == 1
    assert [i["name"] for i in manifest["inputs"]] == list(FIELD_NAMES)
    for spec, field in zip(manifest["inputs"], FIELDS, strict=True):
        assert (spec["nullable"], spec["minimum"], spec["maximum"]) == (
            field.nullable,
            field.minimum,
            field.maximum,
        )


@slow
def test_manifest_features_segments_and_metrics_describe_the_training_data(trained):
    _, result, _, manifest, _ = trained
    names = [f["name"] for f in manifest["features"]]
    assert "credit_utilization_ratio" in names and all(
        f["description"] for f in manifest["features"]
    )
    segments = manifest["segments"]
    assert sorted(s["id"] for s in segments) == [0, 1, 2, 3]
    assert sum(s["size"] for s in segments) == manifest["training"]["rows"] == result.rows
    assert sum(s["share"] for s in segments) == pytest.approx(1.0)
    assert len({s["name"] for s in segments}) == 4
    assert all(set(s["profile"]) == set(names) for s in segments)
    assert all(s["description"].endswith("of customers") for s in segments)
    assert all(len(s["top_features"]) == 3 and set(s["top_features"]) <= set(names)
               for s in segments)  # fmt: skip
    assert manifest["atypical_distance"] > 0
    assert -1 <= manifest["metrics"]["silhouette"] <= 1 and manifest["metrics"]["inertia"] > 0
    assert manifest["metrics"]["label_agreement"] >= 0.999
    assert manifest["libraries"]["scikit-learn"] and manifest["libraries"]["onnxruntime"]


@slow
def test_data_snapshot_hash_is_the_feature_table_content(trained):
    settings, _, _, manifest, _ = trained
    names = [f["name"] for f in manifest["features"]]
    with duckdb.connect(settings.warehouse) as con:  # dbt-duckdb ran in this process
        # A different row order must give the same hash: the canonical form sorts by id.
        arrays = con.execute(
            f"select customer_id, {', '.join(names)} from {FEATURE_MODEL} order by random()"
        ).fetchnumpy()
    X = np.column_stack([np.ma.filled(np.ma.asarray(arrays[n], float), np.nan) for n in names])
    digest = snapshot_sha256(arrays["customer_id"], X, tuple(names))
    assert digest == manifest["data_snapshot_sha256"]


@slow
def test_drift_reference_has_a_histogram_per_feature_and_segment_shares(trained):
    manifest = trained[3]
    reference = manifest["drift_reference"]
    assert set(reference["features"]) == {f["name"] for f in manifest["features"]}
    for histogram in reference["features"].values():
        edges = histogram["bin_edges"]
        assert all(a < b for a, b in itertools.pairwise(edges))
        assert len(histogram["shares"]) == max(len(edges) - 1, 1)
        assert sum(histogram["shares"]) == pytest.approx(1.0)
    shares = reference["segment_shares"]
    assert set(shares) == {str(s["id"]) for s in manifest["segments"]}
    assert sum(shares.values()) == pytest.approx(1.0)


@slow
def test_golden_rows_include_the_edge_cases_with_expected_outputs(trained):
    manifest = trained[3]
    rows = {r["name"]: r for r in manifest["golden_rows"]}
    assert {"zero purchases", "missing minimum payments", "balance over limit"} <= set(rows)
    k, f = len(manifest["segments"]), len(manifest["features"])
    for row in rows.values():
        assert set(row["inputs"]) == set(FIELD_NAMES)
        assert len(row["distances"]) == k and len(row["features"]) == f
        assert row["segment_id"] in {s["id"] for s in manifest["segments"]}
    assert rows["missing minimum payments"]["inputs"]["minimum_payments"] is None


@slow
def test_manifest_records_selection_stability_ids_and_naming(trained):
    manifest = trained[3]
    selection = manifest["selection"]
    assert selection["k_fixed"] and not selection["algorithm_fixed"]
    assert selection["chosen"]["n_clusters"] == 4 == manifest["training"]["k"]
    assert {a["algorithm"] for a in selection["algorithms"]} == {
        "kmeans", "agglomerative", "gmm", "dbscan"
    }  # fmt: skip
    assert manifest["training"]["model"]["algorithm"] == manifest["training"]["algorithm"]
    stability = manifest["stability"]
    assert len(stability["segments"]) == 4 and stability["n_boot"] == 20
    assert manifest["metrics"]["stability_ari_mean"] == pytest.approx(
        stability["ari_mean"], abs=1e-6
    )
    assert manifest["segment_ids"]["method"] == "first model"
    assert manifest["segment_ids"]["ids"] == [s["id"] for s in manifest["segments"]]
    named = [n["name"] for n in manifest["naming"]["segments"]]
    assert named == [s["name"] for s in manifest["segments"]]


@slow
def test_serving_names_and_explains_each_segment_as_the_manifest_does(trained):
    _, _, store, manifest, _ = trained
    bundle = load_bundle(store, store.read_pointer()[0])
    assert bundle.segment_names == {s["id"]: s["name"] for s in manifest["segments"]}
    served = {s.id: list(s.top_features) for s in bundle.manifest.segments}
    assert served == {s["id"]: s["top_features"] for s in manifest["segments"]}


@slow
def test_report_is_offline_html_with_every_plot(trained):
    _, result, store, manifest, _ = trained
    html = store.read(version_key(result.version, "report.html")).decode()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('src="data:image/png;base64,') == 5
    for alt in ("Elbow and silhouette by k", "Algorithm comparison", "Stability by segment",
                "PCA scatter by segment", "Segment profile heatmap"):  # fmt: skip
        assert f'alt="{alt}"' in html
    assert "Segment explanations" in html and "bench/real_data_selection.py" in html
    assert not re.search(r"(src|href)=\"https?://", html)
    assert all(s["name"] in html for s in manifest["segments"])


@slow
def test_the_run_is_recorded_in_the_ledger(trained):
    _, result, store, _, _ = trained
    runs = [
        r for r in ledger.list_runs(store) if (r.finished or {}).get("version") == result.version
    ]
    assert len(runs) == 1 and runs[0].status == "promoted" and runs[0].started["kind"] == "train"
    # The started record was written first: its time precedes the outcome's.
    assert runs[0].started["started_at"] <= runs[0].finished["finished_at"]
