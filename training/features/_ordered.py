"""Rows in customer id order without DuckDB sorting the wide rows: an external bucket sort.

DuckDB sorts the customer ids alone cheaply, but sorting the 24 feature columns with
them costs about 5x a plain scan, most of it spilling the sort to disk within the
capped buffer pool (bench/bench_train.py). Instead each row's rank in id order (from the
sort of the ids) sends it, during a plain scan, to one of a few rank-range buckets on
disk; each bucket is then read back and its rows placed by rank, bucket after bucket.
Memory: the ranks (4 bytes a row) and one bucket (`BUCKET_ROWS` rows); disk: 8 + 8F bytes
a row (2 GB for 10M customers), in a temporary folder (``TMPDIR``) removed afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from segmentation import GateFailed

#: Rows per bucket: 524,288 rows of 24 float64 features are 100 MB in memory.
BUCKET_ROWS = 1 << 19


class RankBuckets:
    """Rows added in any order, read back in rank order (``ranks[row_id]`` is a row's
    position, 0..n-1; every position must be added once)."""

    def __init__(self, ranks: np.ndarray, n_features: int, bucket_rows: int | None = None):
        self.ranks = ranks
        self.rows = int((ranks >= 0).sum())
        # Read at call time, so a test can make every pass use small buckets.
        self.bucket_rows = BUCKET_ROWS if bucket_rows is None else bucket_rows
        self.n_features = n_features
        self._tmp = tempfile.TemporaryDirectory(prefix="segmentation-ordered-")
        n_buckets = max(-(-self.rows // self.bucket_rows), 1)
        self._paths = [Path(self._tmp.name) / f"{b}.bin" for b in range(n_buckets)]
        self._files = [p.open("wb") for p in self._paths]

    def add(self, row_ids: np.ndarray, X: np.ndarray) -> None:
        """Rows ``X`` [n, F] whose warehouse row ids are ``row_ids`` [n]."""
        if len(X) == 0:
            return
        # A record: the rank (exact in float64 below 2**53) and the row, little-endian.
        ranks = self.ranks[row_ids]
        records = np.empty((len(X), 1 + self.n_features), dtype="<f8")
        records[:, 0] = ranks
        records[:, 1:] = X
        bucket = ranks.astype(np.int64) // self.bucket_rows
        if (bucket != bucket[0]).any():
            order = np.argsort(bucket, kind="stable")
            records, bucket = records[order], bucket[order]
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        for start, end in zip(starts, np.r_[starts[1:], len(records)], strict=True):
            self._files[int(bucket[start])].write(memoryview(records[start:end]))

    def ordered(self, batch_rows: int) -> Iterator[np.ndarray]:
        """The rows in rank order, at most ``batch_rows`` a chunk; then the files go."""
        self.ranks = None  # every row is added: only the buckets are needed now
        try:
            for f in self._files:
                f.close()
            for b, path in enumerate(self._paths):
                records = np.fromfile(path, dtype="<f8").reshape(-1, 1 + self.n_features)
                path.unlink()
                base = b * self.bucket_rows
                size = min(self.bucket_rows, self.rows - base)
                at = records[:, 0].astype(np.int64) - base
                out = np.empty((size, self.n_features))
                filled = np.zeros(size, dtype=bool)
                out[at] = records[:, 1:]
                filled[at] = True
                if len(records) != size or not filled.all():
                    raise GateFailed(
                        "training rows: the warehouse changed while they were read; "
                        "expected every customer once"
                    )
                del records
                for start in range(0, size, batch_rows):
                    yield out[start : start + batch_rows]
        finally:
            self.close()

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._tmp.cleanup()
