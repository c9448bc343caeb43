"""Streaming batch scoring on small data: chunk boundaries, empty chunks and empty input.

`segmentation.batch.score_columns` and the dbt model's streaming generator
(`customer_segments.py`) must give, whatever the chunk and batch sizes, exactly what one
onnxruntime run of the bundle's graph over every row gives (the oracle: one
`Scorer.score` call, the distance read from the manifest's column of the returned id).
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures.workspace import workspace_settings

from segmentation import InvalidInput, ModelContractError
from segmentation.batch import score_columns, segment_slots
from segmentation.bundle import Bundle, load_bundle
from segmentation.schema import FIELDS
from training.data import generate_customers
from training.features import DBT_PROJECT_DIR, build_features, build_scores

ROWS = 61
MODEL_FILE = DBT_PROJECT_DIR / "models" / "marts" / "customer_segments.py"


def _load_model_module():
    spec = importlib.util.spec_from_file_location("customer_segments_model", MODEL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


customer_segments = _load_model_module()


@pytest.fixture(scope="module")
def bundle(served_store) -> Bundle:
    pointer, _ = served_store.read_pointer()
    return load_bundle(served_store, pointer)


@pytest.fixture(scope="module")
def columns() -> dict[str, np.ndarray]:
    """Generated customers as staged float64 columns (NaN for null)."""
    table = generate_customers(ROWS, seed=17)
    return {
        f.name: table[f.raw_name].to_numpy(zero_copy_only=False).astype(np.float64) for f in FIELDS
    }


def _one_pass(bundle: Bundle, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    scores = bundle.scorer.score(columns)
    column = [bundle.segment_columns[int(s)] for s in scores.segment_id]
    distance = scores.distances[np.arange(len(column)), column].astype(np.float64)
    return scores.segment_id, distance


@pytest.mark.parametrize("chunk_rows", [1, 7, ROWS - 1, ROWS, ROWS + 1])
@pytest.mark.parametrize("threads", [1, 2])
def test_any_chunk_size_scores_exactly_as_one_pass(bundle, columns, chunk_rows, threads):
    want_ids, want_distance = _one_pass(bundle, columns)
    got = score_columns(bundle, columns, chunk_rows=chunk_rows, threads=threads)
    assert got.segment_id.dtype == np.int64 and got.distance.dtype == np.float64
    np.testing.assert_array_equal(got.segment_id, want_ids)
    np.testing.assert_array_equal(got.distance, want_distance)


def test_a_reused_bulk_scorer_scores_as_the_bundle_does(bundle, columns):
    want_ids, want_distance = _one_pass(bundle, columns)
    got = score_columns(bundle.scorer.for_bulk(), columns, chunk_rows=9)
    np.testing.assert_array_equal(got.segment_id, want_ids)
    np.testing.assert_array_equal(got.distance, want_distance)


def test_empty_columns_give_empty_scores(bundle, columns):
    got = score_columns(bundle, {name: a[:0] for name, a in columns.items()})
    assert (got.segment_id.shape, got.distance.shape) == ((0,), (0,))
    assert (got.segment_id.dtype, got.distance.dtype) == (np.int64, np.float64)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c, name: {k: v for k, v in c.items() if k != name}, "missing"),
        (lambda c, name: {**c, name: c[name][:-1]}, "shorter"),
        (lambda c, name: {**c, name: c[name].reshape(1, -1)}, "2-D"),
    ],
    ids=["missing", "shorter", "two_dimensional"],
)
def test_malformed_columns_are_refused_by_name(bundle, columns, change, field):
    name = bundle.scorer.input_names[-1]
    with pytest.raises(InvalidInput, match=name):
        score_columns(bundle, change(columns, name))


def test_a_chunk_size_below_one_is_refused(bundle, columns):
    with pytest.raises(InvalidInput, match="chunk_rows"):
        score_columns(bundle, columns, chunk_rows=0)


def test_segment_slots_are_the_manifest_positions_and_unknown_ids_are_refused(bundle):
    ids = np.array([s.id for s in bundle.manifest.segments] * 3, dtype=np.int64)
    expected = [bundle.segment_columns[int(i)] for i in ids]
    np.testing.assert_array_equal(segment_slots(bundle, ids), expected)
    unknown = max(bundle.segment_columns) + 1
    for bad in ([unknown], [min(bundle.segment_columns) - 1], [*ids[:2], unknown]):
        with pytest.raises(ModelContractError, match="segment id the manifest lacks"):
            segment_slots(bundle, np.array(bad, dtype=np.int64))


def test_an_id_between_the_manifest_ids_is_refused():
    # Stable ids need not be contiguous (a retired segment leaves a gap).
    gappy = SimpleNamespace(segment_columns={2: 1, 7: 0}, graph="scoring.onnx")
    np.testing.assert_array_equal(segment_slots(gappy, np.array([7, 2, 7])), [0, 1, 0])
    with pytest.raises(ModelContractError, match="segment id the manifest lacks"):
        segment_slots(gappy, np.array([2, 5, 7]))


def _staged_table(columns: dict[str, np.ndarray]) -> pa.Table:
    ids = pa.array([f"C{i:05d}" for i in range(ROWS)], pa.string())
    return pa.table({"customer_id": ids, **columns})


def _expected_rows(bundle: Bundle, columns, keep: np.ndarray) -> list[tuple]:
    ids, distance = _one_pass(bundle, columns)
    return [
        (f"C{i:05d}", int(ids[i]), bundle.segment_names[int(ids[i])], distance[i], bundle.version)
        for i in np.flatnonzero(keep)
    ]


def _rows(reader: pa.RecordBatchReader) -> list[tuple]:
    table = reader.read_all()
    assert table.schema == customer_segments.SCHEMA
    return list(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))


def test_the_model_streams_batches_with_empty_ones_as_one_pass(bundle, columns):
    staged = _staged_table(columns)
    sizes = [0, 1, 7, 0, 20, ROWS - 28, 0]
    batches, start = [], 0
    for size in sizes:
        batches.append(staged.slice(start, size).to_batches()[0] if size else None)
        start += size
    schema = staged.schema
    batches = [b if b is not None else pa.RecordBatch.from_pylist([], schema) for b in batches]
    got = list(customer_segments.scored_batches(bundle, batches))
    assert all(b.num_rows for b in got)  # empty input batches give no output batch
    reader = pa.RecordBatchReader.from_batches(customer_segments.SCHEMA, iter(got))
    assert _rows(reader) == _expected_rows(bundle, columns, np.ones(ROWS, dtype=bool))


@pytest.mark.parametrize("batch_rows", [1, 7, ROWS, ROWS + 1])
def test_a_whole_batch_of_rows_filtered_out_upstream_leaves_only_the_others(
    bundle, columns, batch_rows
):
    # Like stg_customers over base_customers: rows 7..20 were quarantined, so the staged
    # relation DuckDB streams lacks them; the scored rows are exactly the remaining ones.
    con = duckdb.connect()
    con.register("raw", _staged_table(columns))
    staged = con.sql(
        "select * from raw where customer_id not between 'C00007' and 'C00020' order by 1"
    )
    got = _rows(customer_segments.scored_reader(bundle, staged, batch_rows=batch_rows))
    keep = ~((np.arange(ROWS) >= 7) & (np.arange(ROWS) <= 20))
    assert len(got) == keep.sum() == ROWS - 14
    assert got == _expected_rows(bundle, columns, keep)


def test_reading_ahead_keeps_the_order_and_raises_what_the_reader_raises():
    assert list(customer_segments.read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]
    assert list(customer_segments.read_ahead(iter(()))) == []

    def failing():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(customer_segments.read_ahead(failing()))


def test_no_staged_rows_materialize_an_empty_table_with_the_model_columns(bundle, columns):
    con = duckdb.connect()
    con.register("raw", _staged_table(columns))
    reader = customer_segments.scored_reader(bundle, con.sql("select * from raw where false"))
    # What dbt-duckdb does with a Python model's result (materialize in adapters.sql).
    writer = con.cursor()
    writer.register("scored", reader)
    writer.execute("create table customer_segments as select * from scored")
    assert writer.execute("select count(*) from customer_segments").fetchall() == [(0,)]
    assert [c[:2] for c in writer.execute("describe customer_segments").fetchall()] == [
        ("customer_id", "VARCHAR"),
        ("segment_id", "BIGINT"),
        ("segment_name", "VARCHAR"),
        ("distance", "DOUBLE"),
        ("model_version", "VARCHAR"),
    ]


@pytest.mark.slow
def test_a_quarantined_block_of_raw_rows_is_absent_and_every_other_row_scored(
    tmp_path, trained_model_store
):
    # Raw rows 128..191 (the third 64-row batch) break the contract; staging quarantines
    # them and dbt's customer_segments scores the 256 others, exactly as one pass does.
    table = generate_customers(320, seed=29)
    balance = table["BALANCE"].to_numpy(zero_copy_only=False).copy()
    balance[128:192] = -1.0
    index = table.schema.get_field_index("BALANCE")
    pq.write_table(table.set_column(index, "BALANCE", pa.array(balance)), tmp_path / "c.parquet")
    settings = workspace_settings(
        tmp_path, tmp_path / "c.parquet", model_store=str(trained_model_store.root)
    )
    built = build_features(settings, quiet=True)
    assert (built.staged_rows, built.quarantined_rows) == (256, 64)
    pointer, _ = trained_model_store.read_pointer()
    result = build_scores(settings, pointer.version, pointer.manifest_sha256, quiet=True)
    assert result.customers == 256
    bundle = load_bundle(trained_model_store, pointer)
    with duckdb.connect(settings.warehouse) as con:
        scored = con.sql(
            "select customer_id, segment_id, segment_name, distance, model_version "
            "from customer_segments order by customer_id"
        ).fetchall()
        quarantined = {
            r[0] for r in con.sql("select customer_id from stg_customers__quarantine").fetchall()
        }
        staged = con.sql("select * from stg_customers order by customer_id").to_arrow_table()
        # The model's own reader in batches of the quarantined block's size agrees.
        streamed = _rows(
            customer_segments.scored_reader(bundle, con.table("stg_customers"), batch_rows=64)
        )
    ids = [r[0] for r in scored]
    assert len(ids) == len(set(ids)) == 256 and not quarantined & set(ids)
    assert quarantined == {f"C{10001 + i}" for i in range(128, 192)}
    columns = {f.name: staged[f.name].to_numpy().astype(np.float64) for f in FIELDS}
    want_ids, want_distance = _one_pass(bundle, columns)
    assert [r[1] for r in scored] == want_ids.tolist()
    assert [r[2] for r in scored] == [bundle.segment_names[int(i)] for i in want_ids]
    np.testing.assert_array_equal([r[3] for r in scored], want_distance)
    assert {r[4] for r in scored} == {pointer.version}
    assert sorted(streamed) == scored


def test_the_scoring_build_caps_the_buffer_pool_of_the_database_dbt_opens(tmp_path):
    # dbt-duckdb connects in this process with the default configuration: DuckDB's
    # instance cache gives it the database the cap holds open, with the cap.
    from training.features.scoring import SCORING_MEMORY_LIMIT, _capped

    warehouse = str(tmp_path / "warehouse.duckdb")

    def limit() -> str:
        with duckdb.connect(warehouse) as con:
            return con.execute("select current_setting('memory_limit')").fetchall()[0][0]

    with duckdb.connect(warehouse) as con:
        con.execute("set memory_limit = '2GiB'")  # the process's setting before
        before = limit()
        with _capped(warehouse):
            inside = limit()
        assert limit() == before
    assert (
        inside
        == "488.2 MiB"
        == duckdb.connect()
        .execute(
            f"set memory_limit = '{SCORING_MEMORY_LIMIT}'; select current_setting('memory_limit')"
        )
        .fetchall()[0][0]
    )
