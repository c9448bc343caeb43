"""Batch scoring for analysts: every staged customer's segment from ONE named model version.

The version comes from the `segmentation_model_version` var (with
`segmentation_model_manifest_sha256` when the caller read it from the store's pointer, as
`segmentation score` does), never from the store's current pointer: the table is a
function of the build's inputs, and the version is in the node's config (lineage) and in
every row. The bundle is verified exactly as serving verifies it (manifest sha256, sha256
of every file, graph signature, golden rows), then stg_customers is scored with
onnxruntime in batches. Without the var the model is disabled (customer_segments.yml).
Imports only the core `segmentation` package, never `training`.
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


def _verified_bundle(model_store: str, version: str, manifest_sha256: str):
    from segmentation import ModelContractError
    from segmentation.bundle import load_bundle
    from segmentation.bundle_format import MANIFEST_FILE, sha256_hex
    from segmentation.store import Pointer, open_store, version_key

    store = open_store(model_store)
    if not manifest_sha256:
        # Only the version was named (an analyst running dbt by hand): the manifest's own
        # bytes identify it, and load_bundle checks every file against that manifest.
        try:
            manifest_sha256 = sha256_hex(store.read(version_key(version, MANIFEST_FILE)))
        except FileNotFoundError:
            raise ModelContractError(
                f"customer_segments: version {version} has no {MANIFEST_FILE} in the "
                f"model store {store.uri} (unknown or incompletely published)"
            ) from None
    return load_bundle(store, Pointer(version, manifest_sha256, promoted_at=""))


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
    # From the vars `segmentation score` passes (customer_segments.yml).
    version = dbt.config.get("model_version")
    if not version:  # the YAML disables the model then; never "whatever is current"
        raise ValueError("customer_segments: the segmentation_model_version var is required")
    bundle = _verified_bundle(
        dbt.config.get("model_store"), version, dbt.config.get("model_manifest_sha256")
    )
    names = bundle.manifest.input_names
    projection = ", ".join(
        ["customer_id::varchar as customer_id"] + [f"{n}::double as {n}" for n in names]
    )
    reader = staged.project(projection).to_arrow_reader(BATCH_ROWS)
    batches = [_score_batch(bundle, batch, names) for batch in reader if batch.num_rows]
    return pa.Table.from_batches(batches, schema=SCHEMA)
