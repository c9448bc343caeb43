"""Training streams every full-data gate and statistic over its rows in chunks.

Each streamed figure must not depend on where the chunks break: computed with chunks of
1, 7, N-1, N and N+1 rows (and with empty chunks in between) it equals the one-pass value,
and that value equals an oracle built here with numpy, scikit-learn, hashlib or DuckDB.
The warehouse reader is tested on hand-built DuckDB files (aligned tables, and tables in
different orders); the last test trains end to end on a file in which one whole chunk's
raw rows are quarantined.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from fixtures.workspace import workspace_settings

from segmentation import FIELD_NAMES, FIELDS, GateFailed, Settings
from segmentation.store import open_store, version_key
from training.data import generate_customers, write_customers
from training.export import gates, parity
from training.features import (
    FEATURE_MODEL,
    QUARANTINE_MODEL,
    STAGED_MODEL,
    _arrow,
    _ordered,
    row_source,
)
from training.features.row_source import TrainingData
from training.features.rows import WarehouseRows
from training.features.sql_onnx import compile_features
from training.model.params import TrainingParams
from training.model.pipeline import build_pipeline
from training.release.reference import DriftCounts, HistogramCounts, snapshot_digest
from training.segments.moments import SegmentMoments
from training.segments.population import PopulationStats
from training.segments.stable_ids import IdMatch
from training.segments.trust import IdMigration

N = 101
#: Chunk sizes around the boundaries: one row, a prime, and N - 1, N, N + 1.
SIZES = [1, 7, N - 1, N, N + 1]

#: A small feature SELECT (DuckDB semantics, NULL from a missing minimum payment).
FEATURE_SQL = """
select customer_id,
       ln(1 + balance) as log_balance,
       case when purchases_trx > 0 then purchases / purchases_trx else 0.0 end as ticket,
       purchases_frequency,
       cash_advance_frequency,
       ln(1 + minimum_payments) as log_minimum_payments,
       tenure
from stg_customers
"""


def _staged_table(n: int, seed: int) -> pa.Table:
    """Generated customers under their staged names (``segmentation.schema``)."""
    raw = generate_customers(n, seed=seed)
    columns = {"customer_id": raw.column("CUST_ID")}
    columns.update({f.name: raw.column(f.raw_name) for f in FIELDS})
    return pa.table(columns)


def _build_warehouse(path: Path, staged: pa.Table, feature_order: str = "") -> None:
    """A warehouse as dbt leaves it: ``stg_customers`` and ``customer_features``."""
    types = ", ".join(f"{f.name}::{f.sql_type} as {f.name}" for f in FIELDS)
    with duckdb.connect(str(path)) as con:
        con.register("generated", staged)
        con.execute(f"create table {STAGED_MODEL} as select customer_id, {types} from generated")
        con.execute(f"create table {FEATURE_MODEL} as {FEATURE_SQL} {feature_order}")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> tuple[Settings, TrainingData]:
    """A hand-built warehouse of N customers and its rows read by DuckDB (the oracle)."""
    root = tmp_path_factory.mktemp("streaming")
    _build_warehouse(root / "wh.duckdb", _staged_table(N, seed=5))
    return Settings(warehouse=str(root / "wh.duckdb")), _oracle_rows(root / "wh.duckdb")


def _oracle_rows(path: Path) -> TrainingData:
    names = _feature_names()
    with duckdb.connect(str(path)) as con:
        got = con.execute(
            f"select customer_id, {', '.join(f'f.{n}' for n in names)}, "
            f"{', '.join(f's.{n}::double as raw__{n}' for n in FIELD_NAMES)} "
            f"from {FEATURE_MODEL} f join {STAGED_MODEL} s using (customer_id) "
            "order by customer_id"
        ).fetchnumpy()
    fill = lambda a: np.ma.filled(np.ma.asarray(a, dtype=np.float64), np.nan)  # noqa: E731
    return TrainingData(
        np.asarray(got["customer_id"], dtype=str),
        np.column_stack([fill(got[n]) for n in names]),
        {n: fill(got[f"raw__{n}"]) for n in FIELD_NAMES},
    )


def _feature_names() -> tuple[str, ...]:
    return tuple(compile_features(FEATURE_SQL, FIELD_NAMES).feature_names)


def _concat(chunks: list[TrainingData]) -> TrainingData:
    ids = np.concatenate([np.asarray(_ids(c), dtype=str) for c in chunks])
    return TrainingData(
        ids,
        np.concatenate([c.features for c in chunks]),
        {n: np.concatenate([c.raw[n] for c in chunks]) for n in FIELD_NAMES},
    )


def _ids(chunk: TrainingData) -> list[str]:
    ids = chunk.customer_ids
    return ids.to_pylist() if isinstance(ids, pa.Array) else list(ids)


def _sorted(data: TrainingData) -> TrainingData:
    return data.take(np.argsort(data.customer_ids, kind="stable"))


def _assert_same_rows(got: TrainingData, want: TrainingData) -> None:
    got = _sorted(got)
    np.testing.assert_array_equal(got.customer_ids, want.customer_ids)
    np.testing.assert_array_equal(got.features, want.features)
    for name in FIELD_NAMES:
        np.testing.assert_array_equal(got.raw[name], want.raw[name], err_msg=name)


def _hash_oracle(names, ids, X) -> str:
    """The canonical form of docs/bundle-format.md, written out here."""
    order = np.argsort(np.asarray(ids, dtype=str), kind="stable")
    digest = hashlib.sha256(",".join(names).encode())
    digest.update("\n".join(np.asarray(ids, dtype=str)[order].tolist()).encode())
    canonical = X[order].astype("<f8")
    canonical[np.isnan(canonical)] = np.nan
    digest.update(canonical.tobytes())
    return digest.hexdigest()


# --- the warehouse reader ------------------------------------------------------------


@pytest.mark.parametrize("batch_rows", SIZES)
def test_warehouse_chunks_hold_every_customer_once_with_its_own_staged_columns(
    warehouse, batch_rows
):
    settings, oracle = warehouse
    source = WarehouseRows(settings, _feature_names())
    chunks = list(source.chunks(batch_rows))
    assert source.rows == N
    assert all(0 < c.rows <= batch_rows for c in chunks)
    _assert_same_rows(_concat(chunks), oracle)


@pytest.mark.parametrize("batch_rows", SIZES)
def test_warehouse_rows_in_customer_id_order_are_the_sorted_table(warehouse, batch_rows):
    settings, oracle = warehouse
    source = WarehouseRows(settings, _feature_names())
    ids = [i for chunk in source.ordered_ids(batch_rows) for i in chunk.to_pylist()]
    features = list(source.ordered_features(batch_rows))
    assert ids == sorted(oracle.customer_ids.tolist())
    assert all(len(X) <= batch_rows for X in features)
    np.testing.assert_array_equal(np.concatenate(features), oracle.features)


def test_id_order_buckets_place_rows_added_in_any_order(warehouse, monkeypatch):
    """Buckets of 3 rows, rows arriving shuffled in chunks of 7 (some chunks empty)."""
    monkeypatch.setattr(_ordered, "BUCKET_ROWS", 3)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 4))
    X[rng.random(X.shape) < 0.1] = np.nan
    row_ids = rng.permutation(N) + 1000  # row ids need not start at 0 or be in order
    ranks = np.full(row_ids.max() + 1, -1)
    ranks[row_ids] = np.arange(N)
    buckets = _ordered.RankBuckets(ranks, 4)
    shuffled = rng.permutation(N)
    for start in range(0, N, 7):
        buckets.add(row_ids[shuffled[start : start + 7]], X[shuffled[start : start + 7]])
        buckets.add(row_ids[:0], X[:0])
    got = np.concatenate(list(buckets.ordered(5)))
    np.testing.assert_array_equal(got, X)


def test_tables_in_different_orders_are_joined_and_extra_customers_left_out(tmp_path):
    staged = _staged_table(N, seed=6)
    path = tmp_path / "wh.duckdb"
    _build_warehouse(path, staged, feature_order="order by hash(customer_id)")
    with duckdb.connect(str(path)) as con:  # a feature row no staged customer has
        con.execute(f"insert into {FEATURE_MODEL} select 'X0', 0, 0, 0, 0, 0, 0")
    oracle = _oracle_rows(path)
    source = WarehouseRows(Settings(warehouse=str(path)), _feature_names())
    assert not source._aligned and source.rows == N == oracle.rows
    _assert_same_rows(_concat(list(source.chunks(7))), oracle)
    ids = [i for chunk in source.ordered_ids(7) for i in chunk.to_pylist()]
    assert ids == oracle.customer_ids.tolist()
    np.testing.assert_array_equal(np.concatenate(list(source.ordered_features(7))), oracle.features)


def test_a_warehouse_without_training_rows_fails_the_gate(tmp_path):
    path = tmp_path / "wh.duckdb"
    _build_warehouse(path, _staged_table(5, seed=1).slice(0, 0))
    with pytest.raises(GateFailed, match="expected training rows, found none"):
        WarehouseRows(Settings(warehouse=str(path)), _feature_names())


def test_the_seeded_sample_is_reproducible_in_id_order_and_whole_when_small(warehouse):
    settings, oracle = warehouse
    source = WarehouseRows(settings, _feature_names())
    everyone = source.sample(N, seed=1)
    _assert_same_rows(everyone, oracle)
    some = source.sample(40, seed=1)
    assert some.customer_ids.tolist() == sorted(some.customer_ids.tolist())
    assert 20 <= some.rows <= 60  # each customer in with chance 40 / N
    np.testing.assert_array_equal(source.sample(40, seed=1).customer_ids, some.customer_ids)
    assert source.sample(40, seed=2).customer_ids.tolist() != some.customer_ids.tolist()
    where = np.searchsorted(oracle.customer_ids, some.customer_ids)
    np.testing.assert_array_equal(some.features, oracle.features[where])
    np.testing.assert_array_equal(some.raw["balance"], oracle.raw["balance"][where])


def test_side_by_side_batches_line_up_across_empty_and_uneven_batches():
    def reader(sizes: list[int]) -> pa.RecordBatchReader:
        batches, start = [], 0
        for size in sizes:
            ids = [f"C{i:03d}" for i in range(start, start + size)]
            batches.append(pa.record_batch({"customer_id": pa.array(ids, pa.string())}))
            start += size
        return pa.RecordBatchReader.from_batches(batches[0].schema, batches)

    pairs = list(_arrow.side_by_side(reader([0, 3, 0, 5, 2, 0]), reader([4, 0, 0, 6, 0])))
    assert all(a.num_rows == b.num_rows > 0 for a, b in pairs)
    left = [i for a, _ in pairs for i in a.column(0).to_pylist()]
    right = [i for _, b in pairs for i in b.column(0).to_pylist()]
    assert left == right == [f"C{i:03d}" for i in range(10)]
    with pytest.raises(GateFailed, match="different row counts"):
        list(_arrow.side_by_side(reader([3, 0]), reader([2])))


# --- the streamed statistics ----------------------------------------------------------


def _chunks_of(values: np.ndarray, size: int) -> list[np.ndarray]:
    """``values`` in chunks of ``size`` rows, an empty chunk before and after each."""
    out = [values[:0]]
    for start in range(0, len(values), size):
        out += [values[start : start + size], values[:0]]
    return out


@pytest.mark.parametrize("size", SIZES)
def test_the_snapshot_hash_is_the_canonical_form_whatever_the_chunks(warehouse, size):
    _, data = warehouse
    names = _feature_names()
    want = _hash_oracle(names, data.customer_ids, data.features)
    ids = _chunks_of(np.sort(data.customer_ids), size)
    assert snapshot_digest(names, ids, _chunks_of(data.features, size)) == want
    arrow_ids = [pa.array(chunk.tolist(), pa.string()) for chunk in ids]
    assert snapshot_digest(names, arrow_ids, _chunks_of(data.features, size)) == want


def test_the_snapshot_hash_of_the_warehouse_is_the_canonical_form(warehouse):
    settings, data = warehouse
    names = _feature_names()
    source = WarehouseRows(settings, names)
    got = snapshot_digest(names, source.ordered_ids(7), source.ordered_features(7))
    assert got == _hash_oracle(names, data.customer_ids, data.features)


@pytest.mark.parametrize("size", SIZES)
def test_histogram_counts_on_sample_edges_are_numpy_histograms_of_every_value(size):
    rng = np.random.default_rng(size)
    values = rng.lognormal(size=N)
    values[rng.random(N) < 0.1] = np.nan
    values[3] = np.inf
    sample = values[10:40]  # edges from a subset: some values fall outside them
    edges = np.unique(np.quantile(sample[np.isfinite(sample)], np.linspace(0, 1, 6)))
    counts = HistogramCounts(edges)
    for chunk in _chunks_of(values, size):
        counts.add(chunk)
    histogram = counts.histogram()
    finite = values[np.isfinite(values)]
    widened = [finite.min(), *edges[1:-1], finite.max()]
    want, _ = np.histogram(finite, bins=widened)
    assert histogram["bin_edges"] == pytest.approx(widened, rel=0, abs=0)
    assert histogram["shares"] == pytest.approx(want / len(finite), rel=1e-12)
    assert histogram["null_share"] == pytest.approx(1 - len(finite) / N)


def test_a_constant_or_empty_sample_gives_one_bin_of_every_value():
    counts = HistogramCounts(np.array([2.0]))
    for chunk in (np.array([2.0, 5.0]), np.array([]), np.array([np.nan, 1.0])):
        counts.add(chunk)
    assert counts.histogram() == {"bin_edges": [1.0, 5.0], "shares": [1.0], "null_share": 0.25}
    empty = HistogramCounts(np.zeros(0))
    empty.add(np.array([np.nan]))
    assert empty.histogram() == {"bin_edges": [], "shares": [0.0], "null_share": 1.0}


@pytest.mark.parametrize("size", SIZES)
def test_segment_moments_over_chunks_are_numpy_means_and_variances(size):
    rng = np.random.default_rng(size)
    X = rng.normal(loc=1e4, size=(N, 3))  # far from 0: summing squares would cancel
    X[rng.random(X.shape) < 0.15] = np.nan
    X[:, 2] = np.nan  # a feature NULL everywhere
    labels = rng.integers(0, 4, N)
    labels[labels == 3] = 2  # segment 3 empty
    moments = SegmentMoments(4, 3)
    for rows_chunk, label_chunk in zip(_chunks_of(X, size), _chunks_of(labels, size), strict=True):
        moments.add(rows_chunk, label_chunk)
    np.testing.assert_array_equal(moments.sizes, np.bincount(labels, minlength=4))
    for j in range(3):
        inside = X[labels == j]
        counted = (~np.isnan(inside)).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nansum(inside, axis=0) / counted
            var = np.nansum((inside - mean) ** 2, axis=0) / counted
        segment = moments.segment(j)
        np.testing.assert_allclose(segment.means, mean, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(segment.var, var, rtol=1e-9, equal_nan=True)
    total = moments.total()
    np.testing.assert_allclose(total.means[:2], np.nanmean(X[:, :2], axis=0), rtol=1e-12)
    np.testing.assert_allclose(total.var[:2], np.nanvar(X[:, :2], axis=0), rtol=1e-9)
    assert np.isnan(total.means[2]) and np.isnan(total.var[2])


# --- the export pass ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(warehouse):
    _, data = warehouse
    compiled = compile_features(FEATURE_SQL, FIELD_NAMES)
    params = TrainingParams(k=3, seed=7, cluster_features=None)
    pipeline = build_pipeline(params, compiled.feature_names).fit(data.features)
    return compiled, params, pipeline


class _WithEmptyChunks:
    """A row source whose chunks have empty chunks between them (as a scan may yield)."""

    def __init__(self, data: TrainingData) -> None:
        self.data = data
        self.rows = data.rows

    def chunks(self, batch_rows=None):
        empty = self.data.take(slice(0, 0))
        yield empty
        for chunk in self.data.chunks(batch_rows):
            yield chunk
            yield empty


def _export(fitted, data, source) -> tuple:
    compiled, params, pipeline = fitted
    stable_ids = np.array([4, 2, 9])
    population = PopulationStats(3, compiled.feature_names)
    drift = DriftCounts(data.features[:50], compiled.feature_names, 4)

    def observe(chunk: gates.ScoredChunk) -> None:
        population.add(chunk.rows.features, chunk.labels, chunk.distances)
        nearest = chunk.graph["distances"].min(axis=1, initial=np.inf)
        drift.add(chunk.rows.features, chunk.graph["segment_id"], nearest)

    result = gates.export_model(
        compiled, pipeline, source, params, stable_ids, sample=data, observers=(observe,)
    )
    return result, population.result(), drift.reference(atypical_distance=1.0)


@pytest.fixture(scope="module")
def one_pass(fitted, warehouse):
    _, data = warehouse
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(row_source, "BATCH_ROWS", 10 * N)
        return _export(fitted, data, data)


def test_the_one_pass_export_counts_what_numpy_and_scikit_learn_give(one_pass, fitted, warehouse):
    """The reference the chunked passes are held to, itself held to independent oracles."""
    _, data = warehouse
    _, _, pipeline = fitted
    result, population, drift = one_pass
    labels = pipeline.predict(data.features)
    assert result.feature_parity.rows == result.agreement.rows == N
    assert result.scoring_proof.rows == N
    np.testing.assert_array_equal(population.sizes, np.bincount(labels, minlength=3))
    for j in range(3):
        means = np.nanmean(data.features[labels == j], axis=0)
        np.testing.assert_allclose(population.profiles.means[j], means, rtol=1e-12)
    distances = pipeline[-1].transform(pipeline[:-1].transform(data.features))
    assert population.inertia == pytest.approx(np.sum(distances.min(axis=1) ** 2), rel=1e-12)
    graph = parity.run(result.model, {n: data.raw[n] for n in FIELD_NAMES})
    ids, counts = np.unique(graph["segment_id"], return_counts=True)
    assert drift["segment_shares"] == {str(i): c / N for i, c in zip(ids, counts, strict=True)}
    nearest = graph["distances"].min(axis=1)
    assert drift["atypical_share"] == pytest.approx(np.mean(nearest > 1.0))
    relative = np.abs(graph["features"] - data.features) / np.maximum(np.abs(data.features), 1e-12)
    assert result.feature_parity.max_relative_error == pytest.approx(np.nanmax(relative))


@pytest.mark.parametrize("size", SIZES)
def test_export_gates_and_statistics_do_not_depend_on_the_chunks(
    fitted, warehouse, one_pass, monkeypatch, size
):
    _, data = warehouse
    monkeypatch.setattr(row_source, "BATCH_ROWS", size)
    result, population, drift = _export(fitted, data, _WithEmptyChunks(data))
    want, want_population, want_drift = one_pass
    assert result.feature_parity == want.feature_parity
    assert result.agreement == want.agreement
    assert result.fold_proof.vs_sklearn == want.fold_proof.vs_sklearn
    assert result.fold_proof.vs_reference == want.fold_proof.vs_reference
    # Float32 and BLAS rounding differ with the batch size, by ~1e-6 of a distance.
    got_error, want_error = result.fold_proof.max_distance_error, want.fold_proof.max_distance_error
    assert got_error == pytest.approx(want_error, abs=1e-5)
    assert result.scoring_proof == want.scoring_proof
    np.testing.assert_array_equal(population.sizes, want_population.sizes)
    np.testing.assert_allclose(population.profiles.means, want_population.profiles.means)
    np.testing.assert_allclose(population.profiles.smd, want_population.profiles.smd)
    np.testing.assert_allclose(
        population.nearest_distance, want_population.nearest_distance, rtol=1e-5
    )
    assert population.inertia == pytest.approx(want_population.inertia, rel=1e-6)
    # The graph's float32 distances round differently too: the same bins, edges within 1e-5.
    nearest, want_nearest = drift.pop("nearest_distance"), dict(want_drift)
    want_histogram = want_nearest.pop("nearest_distance")
    assert nearest["bin_edges"] == pytest.approx(want_histogram["bin_edges"], abs=1e-5)
    assert nearest["shares"] == want_histogram["shares"]
    assert drift == want_nearest  # feature histograms, segment shares, atypical share


@pytest.mark.parametrize("size", [1, 7, N + 1])
def test_a_feature_that_differs_fails_parity_on_its_rows_in_every_chunking(
    fitted, warehouse, monkeypatch, size
):
    """DuckDB's features with one column shifted on 13 rows: those rows, counted whole."""
    _, data = warehouse
    features = data.features.copy()
    features[::8, 0] += 1.0
    monkeypatch.setattr(row_source, "BATCH_ROWS", size)
    broken = TrainingData(data.customer_ids, features, data.raw)
    compiled, params, pipeline = fitted
    with pytest.raises(GateFailed, match=rf"'log_balance' on 13 of {N} rows"):
        gates.export_model(compiled, pipeline, broken, params)


def test_an_infinite_duckdb_feature_fails_the_export_naming_it(fitted, warehouse):
    _, data = warehouse
    features = data.features.copy()
    features[50, 1] = np.inf
    compiled, params, pipeline = fitted
    with pytest.raises(GateFailed, match=r"found infinity in \['ticket'\]"):
        gates.export_model(
            compiled, pipeline, TrainingData(data.customer_ids, features, data.raw), params
        )


class _FixedScorer:
    """Stands in for the current model's scorer: ids read from the balance column."""

    def score(self, raw):
        return type("Scores", (), {"segment_id": (raw["balance"] > 1000).astype(np.int64)})


@pytest.mark.parametrize("size", SIZES)
def test_customers_keeping_their_id_are_counted_over_every_chunk(warehouse, size):
    _, data = warehouse
    labels = np.arange(N) % 3
    stable_ids = np.array([0, 1, 7])
    migration = IdMigration(_FixedScorer(), stable_ids)
    for start in range(0, N, size):
        for end in (start, start + size):  # an empty chunk, then the chunk
            migration.add({n: v[start:end] for n, v in data.raw.items()}, labels[start:end])
    matched = migration.apply(IdMatch((0, 1, 7), (), (), (), None, None, None))
    old, new = (data.raw["balance"] > 1000).astype(int), stable_ids[labels]
    assert matched.row_keep_share == pytest.approx(np.mean(old == new))
    pairs, counts = np.unique(np.column_stack([old, new]), axis=0, return_counts=True)
    assert list(matched.migration) == [
        (int(o), int(n), int(c)) for (o, n), c in zip(pairs, counts, strict=True)
    ]


# --- end to end: a chunk's raw rows all quarantined --------------------------------


@pytest.mark.slow
def test_training_on_a_file_whose_whole_chunk_of_rows_is_quarantined_counts_every_customer(
    tmp_path, monkeypatch
):
    """Rows 1,000-1,499 of 3,000 have a negative balance (quarantined by staging); chunks
    of 500 rows and id-order buckets of 700 rows: the staged rows stream around the hole."""
    from training.train import train_and_publish

    data = tmp_path / "customers.csv"
    write_customers(data, 3_000, seed=13)
    with data.open() as f:
        lines = list(csv.reader(f))
    for line in lines[1 + 1_000 : 1 + 1_500]:
        line[lines[0].index("BALANCE")] = "-1"
    with data.open("w", newline="") as f:
        csv.writer(f).writerows(lines)
    monkeypatch.setattr(row_source, "BATCH_ROWS", 500)
    monkeypatch.setattr(_ordered, "BUCKET_ROWS", 700)
    settings = workspace_settings(tmp_path, data)
    params = TrainingParams(k=4, algorithm="kmeans", seed=3, stability_boot=5)
    result = train_and_publish(settings, params)
    store = open_store(settings.model_store)
    manifest = json.loads(store.read(version_key(result.version, "manifest.json")))
    names = [f["name"] for f in manifest["features"]]
    with duckdb.connect(settings.warehouse) as con:
        (quarantined,) = con.execute(f"select count(*) from {QUARANTINE_MODEL}").fetchone()
        got = con.execute(
            f"select customer_id, {', '.join(names)} from {FEATURE_MODEL} order by customer_id"
        ).fetchnumpy()
    assert quarantined == 500
    assert manifest["training"]["rows"] == manifest["training"]["sample_rows"] == 2_500
    assert sum(s["size"] for s in manifest["segments"]) == 2_500
    assert manifest["scoring_graph"]["rows_equal_to_full_graph"] == 2_500
    assert sum(manifest["drift_reference"]["segment_shares"].values()) == pytest.approx(1.0)
    X = np.column_stack([np.ma.filled(np.ma.asarray(got[n], float), np.nan) for n in names])
    assert manifest["data_snapshot_sha256"] == _hash_oracle(names, got["customer_id"], X)
    quarantined_ids = {line[0] for line in lines[1 + 1_000 : 1 + 1_500]}
    assert not quarantined_ids & set(got["customer_id"].tolist())


@pytest.mark.slow
def test_a_run_reports_every_training_row_not_only_the_sample(tmp_path, monkeypatch):
    """With fewer sample rows than customers, the result and the manifest count every
    row; only ``sample_rows`` is the sample's."""
    from training import candidate
    from training.train import train_and_publish

    data = write_customers(tmp_path / "customers.csv", 2_000, seed=17)
    monkeypatch.setattr(candidate, "TRAINING_SAMPLE_ROWS", 800)
    settings = workspace_settings(tmp_path, data)
    result = train_and_publish(settings, TrainingParams(k=3, select=False, stability_boot=2))
    manifest = json.loads(
        open_store(settings.model_store).read(version_key(result.version, "manifest.json"))
    )
    assert result.rows == manifest["training"]["rows"] == 2_000
    assert 0 < manifest["training"]["sample_rows"] < 2_000
    assert sum(s["size"] for s in manifest["segments"]) == 2_000
