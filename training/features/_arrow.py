"""DuckDB's Arrow batches as training reads them: batches of two scans side by side, columns
as a float64 matrix."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from segmentation import GateFailed
from training.features.warehouse import FEATURE_MODEL, STAGED_MODEL


def matrix(batch: pa.RecordBatch, first: int) -> np.ndarray:
    """Columns ``first..`` of ``batch`` as a float64 matrix [n, F] (Arrow nulls as NaN).

    Column-major (Fortran order): filling it column by column is ten times faster than a
    row-major matrix, and the pass reads it by column (clustered features, histograms).
    """
    X = np.empty((batch.num_columns - first, batch.num_rows), dtype=np.float64)
    for j in range(first, batch.num_columns):
        X[j - first] = batch.column(j).to_numpy(zero_copy_only=False)
    return X.T


def side_by_side(
    left: pa.RecordBatchReader, right: pa.RecordBatchReader
) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]:
    """Pairs of batches of equal length from two readers of the same number of rows
    (DuckDB's batches need not line up: the remainder waits for the next pair)."""
    left_batch = right_batch = None
    while True:
        if left_batch is None or left_batch.num_rows == 0:
            left_batch = _next_rows(left)
        if right_batch is None or right_batch.num_rows == 0:
            right_batch = _next_rows(right)
        if left_batch is None or right_batch is None:
            if left_batch is not None or right_batch is not None:
                raise GateFailed(
                    f"{FEATURE_MODEL} and {STAGED_MODEL}: expected the same customers, "
                    "found different row counts; rebuild the features"
                )
            return
        n = min(left_batch.num_rows, right_batch.num_rows)
        yield left_batch.slice(0, n), right_batch.slice(0, n)
        left_batch, right_batch = left_batch.slice(n), right_batch.slice(n)


def _next_rows(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    """The reader's next batch that has rows; None at the end."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return None
        if batch.num_rows:
            return batch
