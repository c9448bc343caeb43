"""A trained version's bundle holds exactly what docs/bundle-format.md promises.

One model is trained per session of this module on generated customers (dbt build, fit,
export, gates, publish, promote) in a temporary warehouse and store.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path

import duckdb
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import sqlglot

from segmentation import FIELD_NAMES, FIELDS, Settings
from segmentation.bundle import load_bundle
from segmentation.store import open_store, version_key
from training.data import write_customers
from training.features import FEATURE_MODEL, STAGED_MODEL
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


def _on_disk(settings: Settings, *parts: str) -> bytes:
    """A file of the local store read straight from the folder, not through the store."""
    return Path(settings.model_store, *parts).read_bytes()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def scored(trained) -> dict:
    """DuckDB's staged rows and features, and the stored graph's outputs on those rows."""
    settings, result, _, manifest, _ = trained
    names = [f["name"] for f in manifest["features"]]
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        staged = con.execute(f"select * from {STAGED_MODEL} order by customer_id").fetchnumpy()
        features = con.execute(
            f"select {', '.join(names)} from {FEATURE_MODEL} order by customer_id"
        ).fetchnumpy()
    feeds = {n: np.ma.filled(np.ma.asarray(staged[n], float), np.nan) for n in FIELD_NAMES}
    model = _on_disk(settings, "versions", result.version, "model.onnx")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    segment_id, distances = session.run(["segment_id", "distances"], feeds)
    X = np.column_stack([np.ma.filled(np.ma.asarray(features[n], float), np.nan) for n in names])
    return {"segment_id": segment_id, "distances": distances.astype(float), "features": X}


@slow
def test_version_folder_holds_the_four_files_and_the_pointer_names_it(trained):
    settings, result, _, _, _ = trained
    folder = Path(settings.model_store, "versions", result.version)
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "model.onnx",
        "report.html",
        "scoring.onnx",
    ]
    pointer = json.loads(_on_disk(settings, "current.json"))
    assert pointer["version"] == result.version
    assert pointer["manifest_sha256"] == _sha256((folder / "manifest.json").read_bytes())
    # The id is the creation time and the first 8 hex digits of the model's own sha256.
    assert re.fullmatch(r"v\d{8}T\d{12}Z-[0-9a-f]{8}", result.version)
    assert result.version.endswith("-" + _sha256((folder / "model.onnx").read_bytes())[:8])


@slow
def test_every_file_matches_its_sha256_and_serving_verifies_the_bundle(trained):
    settings, result, store, manifest, _ = trained
    assert set(manifest["files"]) == {"model.onnx", "scoring.onnx", "report.html"}
    for name, digest in manifest["files"].items():
        assert _sha256(_on_disk(settings, "versions", result.version, name)) == digest
    pointer, _ = store.read_pointer()
    bundle = load_bundle(store, pointer)  # checksums, signature, golden rows
    assert bundle.version == result.version
    assert bundle.graph == "scoring.onnx" and bundle.full_scorer is None
    full = load_bundle(store, pointer, full_graph=True)
    assert full.full_scorer is not None and full.full_scorer.has_features


@slow
def test_scoring_graph_is_the_full_graph_without_features_on_every_warehouse_row(trained, scored):
    settings, result, _, manifest, _ = trained
    stored = _on_disk(settings, "versions", result.version, "scoring.onnx")
    model = onnx.load_from_string(stored)
    full = onnx.load_from_string(_on_disk(settings, "versions", result.version, "model.onnx"))
    assert [o.name for o in model.graph.output] == ["segment_id", "distances"]
    # Only the columns the clustering reads, and fewer nodes than the full graph.
    inputs = [i.name for i in model.graph.input]
    assert set(inputs) < set(FIELD_NAMES)
    assert len(model.graph.node) < len(full.graph.node)
    assert {p.key: p.value for p in model.metadata_props} == {
        p.key: p.value for p in full.metadata_props
    }
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        staged = con.execute(f"select * from {STAGED_MODEL} order by customer_id").fetchnumpy()
    feeds = {n: np.ma.filled(np.ma.asarray(staged[n], float), np.nan) for n in inputs}
    session = ort.InferenceSession(stored, providers=["CPUExecutionProvider"])
    segment_id, distances = session.run(["segment_id", "distances"], feeds)
    np.testing.assert_array_equal(segment_id, scored["segment_id"])
    np.testing.assert_array_equal(distances, scored["distances"].astype(np.float32))
    proof = manifest["scoring_graph"]
    assert proof["inputs"] == inputs and proof["rows_equal_to_full_graph"] == len(segment_id)


@slow
def test_graph_has_the_contract_signature_metadata_and_no_external_data(trained):
    settings, result, _, manifest, _ = trained
    model = onnx.load_from_string(_on_disk(settings, "versions", result.version, "model.onnx"))
    assert [i.name for i in model.graph.input] == list(FIELD_NAMES)
    assert [o.name for o in model.graph.output] == ["segment_id", "distances", "features"]
    props = {p.key: p.value for p in model.metadata_props}
    # The feature SQL dbt compiled for this run, normalised by sqlglot, hashed here.
    compiled = next(Path(settings.dbt_target_path, "compiled").rglob(f"{FEATURE_MODEL}.sql"))
    normal = sqlglot.parse_one(compiled.read_text(), read="duckdb").sql("duckdb", comments=False)
    assert props["feature_sql_sha256"] == manifest["feature_sql_sha256"] == _sha256(normal.encode())
    assert result.version.startswith(props["version"])
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


@slow
def test_manifest_inputs_are_the_staged_columns_with_their_observed_range(trained):
    settings, _, _, manifest, _ = trained
    inputs = {i["name"]: i for i in manifest["inputs"]}
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        columns = con.execute(
            "select column_name from information_schema.columns "
            f"where table_name = '{STAGED_MODEL}' order by ordinal_position"
        ).fetchall()
        assert [c for (c,) in columns] == ["customer_id", *inputs]
        for name, spec in inputs.items():
            nulls, low, high = con.execute(
                f"select count(*) - count({name}), min({name}), max({name}) from {STAGED_MODEL}"
            ).fetchone()
            assert spec["minimum"] <= low <= high <= spec["maximum"], name
            assert spec["nullable"] or nulls == 0, name
    assert manifest["format_version"] == 1
    assert {n for n, i in inputs.items() if i["nullable"]} == {"credit_limit", "minimum_payments"}


@slow
def test_manifest_segments_and_metrics_are_what_the_graph_gives_on_the_warehouse(trained, scored):
    _, result, _, manifest, _ = trained
    names = [f["name"] for f in manifest["features"]]
    assert "credit_utilization_ratio" in names and all(
        f["description"] for f in manifest["features"]
    )
    segments = manifest["segments"]
    rows = len(scored["segment_id"])
    assert manifest["training"]["rows"] == result.rows == rows
    ids, counts = np.unique(scored["segment_id"], return_counts=True)
    assert ids.tolist() == sorted(s["id"] for s in segments) == [0, 1, 2, 3]
    # The manifest counts scikit-learn's labels; the graph may differ on tied rows only.
    graph_sizes = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    moved = sum(abs(graph_sizes[s["id"]] - s["size"]) for s in segments)
    assert moved <= 2 * manifest["metrics"]["label_disagreements"]
    assert all(s["share"] == pytest.approx(s["size"] / rows) for s in segments)
    # Each profile is the segment's feature means (NULL ignored), as DuckDB's rows give.
    for s in segments:
        inside = scored["features"][scored["segment_id"] == s["id"]]
        means = dict(zip(names, np.nanmean(inside, axis=0), strict=True))
        assert s["profile"] == pytest.approx(means, rel=1e-3, abs=1e-3), s["name"]
    nearest = scored["distances"].min(axis=1)
    assert manifest["metrics"]["inertia"] == pytest.approx(np.sum(nearest**2), rel=1e-3)
    assert manifest["atypical_distance"] == pytest.approx(np.quantile(nearest, 0.99), rel=1e-3)
    assert len({s["name"] for s in segments}) == 4
    assert all(s["description"].endswith("of customers") for s in segments)
    assert all(len(s["top_features"]) == 3 and set(s["top_features"]) <= set(names)
               for s in segments)  # fmt: skip
    assert -1 <= manifest["metrics"]["silhouette"] <= 1
    assert manifest["metrics"]["label_agreement"] >= 0.999
    assert manifest["libraries"]["scikit-learn"] and manifest["libraries"]["onnxruntime"]


@slow
def test_data_snapshot_hash_is_the_feature_table_content(trained):
    settings, _, _, manifest, _ = trained
    names = [f["name"] for f in manifest["features"]]
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        arrays = con.execute(
            f"select customer_id, {', '.join(names)} from {FEATURE_MODEL} order by customer_id"
        ).fetchnumpy()
    # The documented canonical form, built here: names, ids in order, float64 LE, one NaN.
    X = np.column_stack([np.ma.filled(np.ma.asarray(arrays[n], "<f8"), np.nan) for n in names])
    X[np.isnan(X)] = np.nan
    digest = hashlib.sha256(",".join(names).encode())
    digest.update("\n".join(arrays["customer_id"].tolist()).encode())
    digest.update(np.ascontiguousarray(X).tobytes())
    assert digest.hexdigest() == manifest["data_snapshot_sha256"]


@slow
def test_drift_reference_is_the_warehouse_features_quantile_histograms(trained, scored):
    settings, _, _, manifest, _ = trained
    reference = manifest["drift_reference"]
    bins = 10
    assert set(reference["features"]) == {f["name"] for f in manifest["features"]}
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        for name, histogram in reference["features"].items():
            valid = f"{name} is not null and isfinite({name})"
            rows, n_valid, edges = con.execute(
                f"select count(*), count(*) filter (where {valid}), "
                f"quantile_cont({name}, {[i / bins for i in range(bins + 1)]}) "
                f"filter (where {valid}) from {FEATURE_MODEL}"
            ).fetchone()
            edges = sorted(set(edges))
            assert histogram["bin_edges"] == pytest.approx(edges, rel=1e-9, abs=1e-12), name
            assert histogram["null_share"] == pytest.approx(1 - n_valid / rows), name
            if len(edges) == 1:
                assert histogram["shares"] == [1.0]
                continue
            # numpy's histogram: [a, b) bins, the last one closed.
            counts = [
                con.execute(
                    f"select count(*) from {FEATURE_MODEL} where {valid} and {name} >= ? "
                    f"and ({name} < ? or (? and {name} = ?))",
                    [low, high, i == len(edges) - 2, high],
                ).fetchone()[0]
                for i, (low, high) in enumerate(itertools.pairwise(edges))
            ]
            assert histogram["shares"] == pytest.approx([c / n_valid for c in counts]), name
    ids, counts = np.unique(scored["segment_id"], return_counts=True)
    graph_shares = {str(i): c / len(scored["segment_id"]) for i, c in zip(ids, counts, strict=True)}
    assert reference["segment_shares"] == pytest.approx(graph_shares, abs=1e-3)


@slow
def test_golden_rows_are_the_edge_cases_with_the_features_duckdb_computes(trained):
    settings, _, _, manifest, _ = trained
    rows = {r["name"]: r for r in manifest["golden_rows"]}
    assert {"zero purchases", "missing minimum payments", "balance over limit"} <= set(rows)
    assert rows["missing minimum payments"]["inputs"]["minimum_payments"] is None
    assert all(set(r["inputs"]) == set(FIELD_NAMES) for r in rows.values())
    # The feature SQL dbt compiled, run by DuckDB on the golden inputs as stg_customers.
    compiled = next(Path(settings.dbt_target_path, "compiled").rglob(f"{FEATURE_MODEL}.sql"))
    names = [f["name"] for f in manifest["features"]]
    with duckdb.connect() as con:  # the in-memory database the SQL was compiled against
        columns = ", ".join(f"{f.name} {f.sql_type}" for f in FIELDS)
        con.execute(f"create table {STAGED_MODEL} (customer_id varchar, {columns})")
        for name, row in rows.items():
            values = [name, *(row["inputs"][f.name] for f in FIELDS)]
            con.execute(
                f"insert into {STAGED_MODEL} values ({', '.join('?' * len(values))})", values
            )
        got = con.execute(
            f"select customer_id, {', '.join(names)} from ({compiled.read_text()})"
        ).fetchall()
    segment_order = [s["id"] for s in manifest["segments"]]
    for name, *features in got:
        row = rows[name]
        want = [np.nan if f is None else f for f in row["features"]]
        have = [np.nan if f is None else f for f in features]
        np.testing.assert_allclose(want, have, rtol=1e-6, atol=1e-6, equal_nan=True)
        # Distances are in the manifest's segment order; the id is the nearest one's.
        assert len(row["distances"]) == len(segment_order)
        assert row["segment_id"] == segment_order[int(np.argmin(row["distances"]))]


@slow
def test_manifest_records_selection_stability_ids_and_naming(trained, scored):
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
    assert 0 <= stability["ari_min"] <= stability["ari_mean"] <= 1
    assert manifest["segment_ids"]["method"] == "first model"
    # The ids the manifest lists are the ones the graph returns.
    assert sorted(manifest["segment_ids"]["ids"]) == np.unique(scored["segment_id"]).tolist()
    names = [s["name"] for s in manifest["segments"]]
    assert [n["name"] for n in manifest["naming"]["segments"]] == names


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
def test_the_run_is_recorded_in_the_ledger_with_the_published_bytes(trained):
    settings, result, store, _, _ = trained
    runs = [
        r for r in ledger.list_runs(store) if (r.finished or {}).get("version") == result.version
    ]
    assert len(runs) == 1 and runs[0].status == "promoted" and runs[0].started["kind"] == "train"
    # The started record was written first: its time precedes the outcome's.
    assert runs[0].started["started_at"] <= runs[0].finished["finished_at"]
    # The ledger's files as they are on disk name the bytes that were published.
    folder = Path(settings.model_store, "runs", runs[0].run_id)
    assert sorted(p.name for p in folder.iterdir()) == ["finished.json", "started.json"]
    finished = json.loads((folder / "finished.json").read_text())
    manifest = _on_disk(settings, "versions", result.version, "manifest.json")
    assert finished["manifest_sha256"] == _sha256(manifest)
    assert finished["rows"] == json.loads(manifest)["training"]["rows"]
