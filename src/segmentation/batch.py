"""Batch scoring: millions of customers' column arrays through one session, in chunks.

What dbt's ``customer_segments`` (and any other bulk consumer) calls. The bundle's scoring
graph (``scoring.onnx`` when shipped, else ``model.onnx``: ``docs/bundle-format.md``) runs
on one onnxruntime session, fed contiguous slices of the caller's arrays (nothing is
copied unless a column is not float64 already); memory beyond the inputs is the chunks'
outputs in flight plus the two result arrays. Chunks run on one Python thread per core,
each a single-threaded run of the shared session (``run`` releases the GIL): on this
graph of two dozen small nodes that is 1.5-1.7x faster than one run spread over every
core by onnxruntime's intra-op threads, which meet at a barrier after every node
(``docs/benchmarks.md``). Only numpy and the core, like the predict path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from segmentation.bundle import Bundle
from segmentation.errors import InvalidInput, ModelContractError
from segmentation.scoring import SCORING_OUTPUT_NAMES, Scorer

#: Rows per onnxruntime run: past ~32k rows the per-run overhead is amortised, and a
#: chunk's intermediate tensors (a few dozen bytes per row and node) stay in cache.
CHUNK_ROWS = 1 << 15


class BatchScores(NamedTuple):
    """Per customer: the assigned segment and the distance to it."""

    segment_id: np.ndarray  # int64 [N]
    distance: np.ndarray  # float64 [N], Euclidean, in the clustering space


def score_columns(
    model: Bundle | Scorer,
    columns: Mapping[str, np.ndarray],
    chunk_rows: int = CHUNK_ROWS,
    threads: int | None = None,
) -> BatchScores:
    """Score column arrays of any length in chunks: segment id and distance per row.

    Parameters
    ----------
    model : a verified :class:`~segmentation.bundle.Bundle` (its ``scorer`` runs, and the
        returned ids are checked against its manifest), or a
        :class:`~segmentation.scoring.Scorer`.
    columns : staged field name -> 1-D array of N values, NaN for SQL NULL. Needs at
        least the fields the graph reads (``scorer.input_names``); others are ignored.
    chunk_rows : rows per onnxruntime run; results do not depend on it (bit for bit).
    threads : Python threads running chunks concurrently. Default: one per core when the
        session runs one intra-op thread (a bundle's ``scorer``), else 1 (a
        ``Scorer.for_bulk()`` session already spreads each run over the cores).

    Returns
    -------
    BatchScores
        ``segment_id`` (int64) and ``distance`` (float64) to the assigned segment, which
        is the nearest one (the graph's ``segment_id`` is its distances' argmin).

    Raises
    ------
    InvalidInput
        ``chunk_rows`` or ``threads`` below 1; a column the graph reads is missing, not
        1-D, or of another length than the others.
    ModelContractError
        Given a bundle: the graph returned a segment id its manifest does not name.
    """
    if chunk_rows < 1:
        raise InvalidInput("chunk_rows", "minimum 1")
    if threads is not None and threads < 1:
        raise InvalidInput("threads", "minimum 1")
    scorer = model.scorer if isinstance(model, Bundle) else model
    inputs = _inputs(columns, scorer.input_names)
    n = len(inputs[0])
    segment_id = np.empty(n, dtype=np.int64)
    distance = np.empty(n, dtype=np.float64)
    outputs = list(SCORING_OUTPUT_NAMES)

    def one(start: int) -> None:
        stop = min(start + chunk_rows, n)
        feeds = {name: a[start:stop] for name, a in zip(scorer.input_names, inputs, strict=True)}
        if stop - start == 1:
            # onnxruntime runs a 1-row Gemm as a matrix-vector product whose float32
            # rounding differs (distances in the 6th digit): run the row twice instead,
            # so no result depends on where the chunks (or the caller's batches) end.
            feeds = {name: np.repeat(a, 2) for name, a in feeds.items()}
        ids, distances = scorer.session.run(outputs, feeds)
        segment_id[start:stop] = ids[: stop - start]
        _nearest(distances[: stop - start], distance[start:stop])

    starts = range(0, n, chunk_rows)
    workers = min(len(starts), threads or _default_threads(scorer))
    if workers <= 1:
        for start in starts:
            one(start)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="segmentation-batch") as pool:
            for _ in pool.map(one, starts):  # re-raises the first failure
                pass
    if isinstance(model, Bundle):
        segment_slots(model, segment_id)
    return BatchScores(segment_id, distance)


def segment_slots(bundle: Bundle, segment_id: np.ndarray) -> np.ndarray:
    """Each id's position in the manifest's segments (its name, its distances column).

    Raises
    ------
    ModelContractError
        An id the manifest does not name.
    """
    ids = np.fromiter(bundle.segment_columns, dtype=np.int64)
    slots = np.fromiter(bundle.segment_columns.values(), dtype=np.intp)
    segment_id = np.asarray(segment_id, dtype=np.int64)
    if len(segment_id) == 0:
        return np.zeros(0, dtype=np.intp)
    low = int(ids.min())
    # A lookup table over the manifest's id range: one gather per row, no search.
    table = np.full(int(ids.max()) - low + 1, -1, dtype=np.intp)
    table[ids - low] = slots
    if int(segment_id.min()) < low or int(segment_id.max()) - low >= len(table):
        raise ModelContractError(f"{bundle.graph}: returned a segment id the manifest lacks")
    out = table[segment_id - low]
    if (out < 0).any():
        raise ModelContractError(f"{bundle.graph}: returned a segment id the manifest lacks")
    return out


def _nearest(distances: np.ndarray, out: np.ndarray) -> None:
    # Column by column: numpy reduces a short inner axis (K of 2-10) an order of magnitude
    # slower than it takes the element-wise minimum of K strided columns.
    best = distances[:, 0].copy()
    for j in range(1, distances.shape[1]):
        np.minimum(best, distances[:, j], out=best)
    out[:] = best


def _default_threads(scorer: Scorer) -> int:
    if scorer.session.get_session_options().intra_op_num_threads != 1:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _inputs(columns: Mapping[str, np.ndarray], names: tuple[str, ...]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for name in names:
        if name not in columns:
            raise InvalidInput(name, "required")
        a = np.ascontiguousarray(columns[name], dtype=np.float64)  # a view when it can be
        if a.ndim != 1:
            raise InvalidInput(name, "expected a 1-D array")
        if out and len(a) != len(out[0]):
            raise InvalidInput(name, f"expected {len(out[0])} values like the other columns")
        out.append(a)
    return out


def load_version(model_store: str, version: str, manifest_sha256: str = "") -> Bundle:
    """Model ``version`` of ``model_store``, verified completely (``load_bundle``), for a
    batch that scores with one named version (dbt's customer_segments, Spark).

    Without ``manifest_sha256`` (an analyst naming only the version) the manifest's own
    bytes identify it, and every file is checked against that manifest.

    Raises
    ------
    ModelContractError
        The version is unknown or incompletely published, or fails verification.
    """
    from segmentation.bundle import load_bundle
    from segmentation.bundle_format import MANIFEST_FILE, sha256_hex
    from segmentation.store import Pointer, open_store, version_key

    store = open_store(model_store)
    if not manifest_sha256:
        try:
            manifest_sha256 = sha256_hex(store.read(version_key(version, MANIFEST_FILE)))
        except FileNotFoundError:
            raise ModelContractError(
                f"customer_segments: version {version} has no {MANIFEST_FILE} in the "
                f"model store {store.uri} (unknown or incompletely published)"
            ) from None
    return load_bundle(store, Pointer(version, manifest_sha256, promoted_at=""))
