"""Batch scoring for analysts: every staged customer's segment from the current model.

Loads the model the store's pointer names (SEGMENTATION_MODEL_STORE), verified exactly as serving
verifies it (sha256 of every file against the manifest, graph signature, golden rows),
and scores stg_customers with onnxruntime in batches. With no current model yet it returns
an empty table with the same columns, so `dbt build` before the first training passes.
"""

import numpy as np
import pyarrow as pa

#: Rows scored per onnxruntime call: large enough to amortise the call, small in memory.
BATCH_ROWS = 200_000

SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("segment_id", pa.int64()),
        ("segment_name", pa.string()),
        ("distance", pa.float64()),
        ("model_version", pa.string()),
    ]
)


def _current_bundle(model_store: str):
    from segmentation import Settings
    from segmentation.bundle import load_bundle
    from segmentation.store import open_store

    store = open_store(model_store or Settings.from_env().model_store)
    pointer, _ = store.read_pointer()
    return None if pointer is None else load_bundle(store, pointer)


def _score_batch(bundle, batch: pa.RecordBatch, names: tuple) -> pa.RecordBatch:
    columns = {n: batch.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names}
    scores = bundle.scorer.score(columns)
    ids = np.asarray(scores.segment_id, dtype=np.int64)
    # Vectorised id -> distances column / name (load_bundle checked the ids are the
    # manifest's); per-row Python would dominate at millions of rows.
    known = np.array(sorted(bundle.segment_columns), dtype=np.int64)
    slot = np.searchsorted(known, ids).clip(0, len(known) - 1)
    if not np.array_equal(known[slot], ids):
        raise ValueError("customer_segments: the graph returned a segment id the manifest lacks")
    column = np.array([bundle.segment_columns[int(i)] for i in known])[slot]
    names_by_slot = np.array([bundle.segment_names[int(i)] for i in known], dtype=object)
    distance = np.asarray(scores.distances, dtype=np.float64)[np.arange(len(ids)), column]
    return pa.RecordBatch.from_arrays(
        [
            batch.column("customer_id"),
            pa.array(ids, pa.int64()),
            pa.array(names_by_slot[slot], pa.string()),
            pa.array(distance, pa.float64()),
            pa.array([bundle.version] * batch.num_rows, pa.string()),
        ],
        schema=SCHEMA,
    )


def model(dbt, session):
    dbt.config(materialized="table")
    staged = dbt.ref("stg_customers")
    # The `segmentation_model_store` var (set by `segmentation score`), else
    # SEGMENTATION_MODEL_STORE, else the local default: see customer_segments.yml.
    bundle = _current_bundle(dbt.config.get("model_store"))
    if bundle is None:
        return SCHEMA.empty_table()
    names = bundle.manifest.input_names
    projection = ", ".join(
        ["customer_id::varchar as customer_id"] + [f"{n}::double as {n}" for n in names]
    )
    reader = staged.project(projection).to_arrow_reader(BATCH_ROWS)
    batches = [_score_batch(bundle, batch, names) for batch in reader if batch.num_rows]
    return pa.Table.from_batches(batches, schema=SCHEMA)
