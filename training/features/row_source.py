"""Training rows in memory, and the interface every full pass over the training rows reads.

Two ways to hold the rows, with one interface (`RowSource`), so every full pass over the
training data is the same code whatever their number:

- `TrainingData`: rows in memory (a seeded sample, a test's arrays);
- `training.features.rows.WarehouseRows`: every row of the warehouse, streamed from
  DuckDB in Arrow batches.

A full pass reads ``chunks()``: each chunk is a `TrainingData` whose features and staged
columns are the same customers, row for row; chunks may be empty and come in a fixed but
unspecified order. What needs an order (the data snapshot hash) reads ``ordered_ids()``
and ``ordered_features()``: the same rows in customer id order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

#: Rows per chunk of a full pass. About 45 MB of Arrow columns (24 features + 17 staged
#: columns in float64) and a few times that in the gates' temporaries (the full graph's
#: intermediate tensors, the comparisons): well under the memory target, and large enough
#: that DuckDB, onnxruntime and numpy calls are amortised (DuckDB exports batches of
#: this size about 8x faster than batches of a million rows, bench/bench_operations.py).
BATCH_ROWS = 131_072


@dataclass(frozen=True)
class TrainingData:
    """Training rows in memory, ordered by customer id: DuckDB's features and the staged
    inputs of the same customers."""

    #: [N] str; a chunk streamed from the warehouse keeps them as an Arrow string array
    #: (a full pass never reads them, and 10M Python strings cost seconds).
    customer_ids: np.ndarray | pa.StringArray
    features: np.ndarray  # [N, F] float64, NULL as NaN
    raw: dict[str, np.ndarray]  # staged column -> [N] float64, NULL as NaN

    @property
    def rows(self) -> int:
        return len(self.customer_ids)

    def take(self, index: slice | np.ndarray) -> TrainingData:
        """The rows ``index`` selects, as a new `TrainingData`."""
        ids = self.customer_ids
        if isinstance(ids, pa.Array) and not isinstance(index, slice):
            ids = ids.take(pa.array(index))
        else:
            ids = ids[index]
        return TrainingData(ids, self.features[index], {n: v[index] for n, v in self.raw.items()})

    def chunks(self, batch_rows: int | None = None) -> Iterator[TrainingData]:
        """Consecutive slices of at most ``batch_rows`` rows (default `BATCH_ROWS`)."""
        size = batch_rows_or_default(batch_rows)
        for start in range(0, self.rows, size):
            yield self.take(slice(start, start + size))

    def ordered_ids(self, batch_rows: int | None = None) -> Iterator[np.ndarray | pa.Array]:
        """The customer ids in sorted order, in slices of at most ``batch_rows``."""
        order, size = self._order(), batch_rows_or_default(batch_rows)
        for start in range(0, self.rows, size):
            yield self.customer_ids[order[start : start + size]]

    def ordered_features(self, batch_rows: int | None = None) -> Iterator[np.ndarray]:
        """The feature rows in the order of `ordered_ids`, in slices of at most
        ``batch_rows``."""
        order, size = self._order(), batch_rows_or_default(batch_rows)
        for start in range(0, self.rows, size):
            yield self.features[order[start : start + size]]

    def _order(self) -> np.ndarray:
        return np.argsort(np.asarray(self.customer_ids, dtype=str), kind="stable")


class RowSource(Protocol):
    """Training rows that a full pass can read chunk by chunk (`TrainingData`,
    `WarehouseRows`)."""

    @property
    def rows(self) -> int: ...

    def chunks(self, batch_rows: int | None = None) -> Iterator[TrainingData]: ...

    def ordered_ids(self, batch_rows: int | None = None) -> Iterator[np.ndarray | pa.Array]: ...

    def ordered_features(self, batch_rows: int | None = None) -> Iterator[np.ndarray]: ...


def batch_rows_or_default(batch_rows: int | None) -> int:
    # Read at call time, so a test can make every pass use small chunks.
    size = BATCH_ROWS if batch_rows is None else batch_rows
    if size < 1:
        raise ValueError(f"batch_rows: expected at least 1, found {size}")
    return size
