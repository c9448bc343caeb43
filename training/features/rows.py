"""Every training row of the warehouse: DuckDB's engineered features and the staged inputs
of the same customers, streamed in Arrow batches of ``batch_rows`` rows (default
`training.features.row_source.BATCH_ROWS`) with DuckDB's buffer pool capped, so memory is
bounded by a batch whatever the number of customers. It is a
`training.features.row_source.RowSource`: every full pass reads it as it reads rows held in
memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from segmentation import FIELD_NAMES, GateFailed, Settings
from training.features._arrow import matrix, side_by_side
from training.features._ordered import RankBuckets
from training.features.row_source import TrainingData, batch_rows_or_default
from training.features.warehouse import FEATURE_MODEL, STAGED_MODEL, memory_limit


class WarehouseRows:
    """Every training row of the warehouse: ``customer_features`` joined to the staged
    columns of the same customers (``stg_customers``), read in Arrow batches.

    Raises `GateFailed` when the feature table lacks a feature the compiled SQL returns, or
    holds no rows.
    """

    def __init__(
        self, settings: Settings, feature_names: tuple[str, ...], batch_rows: int | None = None
    ) -> None:
        self.warehouse = settings.warehouse
        self.feature_names = tuple(feature_names)
        self.batch_rows = batch_rows
        with self._connect() as con:
            columns = {
                r[0]
                for r in con.execute(
                    "select column_name from information_schema.columns where table_name = ?",
                    [FEATURE_MODEL],
                ).fetchall()
            }
            missing = sorted(set(self.feature_names) - columns)
            if missing:
                raise GateFailed(
                    f"{FEATURE_MODEL}: the compiled feature SQL returns {missing}, "
                    "which the warehouse table lacks; rebuild the features"
                )
            self._aligned = self._tables_aligned(con)
            ((self._rows, last),) = con.execute(
                f"select count(*), max(f.rowid) from {self._rows_from}"
            ).fetchall()
        if self._rows == 0:
            raise GateFailed(f"{FEATURE_MODEL}: expected training rows, found none")
        self._row_id_end = int(last) + 1
        self._ranks: np.ndarray | None = None  # row id -> position in customer id order

    @property
    def rows(self) -> int:
        return int(self._rows)

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # Default configuration: when dbt-duckdb just built the features in this process,
        # DuckDB's instance cache refuses a connection with other settings (read_only).
        with duckdb.connect(self.warehouse) as con, memory_limit(con, self.warehouse):
            yield con

    def _tables_aligned(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Whether both tables list the same customers in the same scan order (dbt builds
        the feature table from the staged view in its order: a pure projection)."""
        ((differ,),) = con.execute(
            f"select count(*) from (select customer_id from {FEATURE_MODEL}) f "
            f"positional join (select customer_id as staged_id from {STAGED_MODEL}) s "
            "where f.customer_id is distinct from s.staged_id"
        ).fetchall()
        return differ == 0

    @property
    def _rows_from(self) -> str:
        """The training rows' FROM clause (alias ``f``): the feature rows of staged
        customers (all of them when the tables are aligned)."""
        if self._aligned:
            return f"{FEATURE_MODEL} f"
        return f"{FEATURE_MODEL} f semi join {STAGED_MODEL} s using (customer_id)"

    def _features_select(self, alias: str = "") -> str:
        return ", ".join(f"{alias}{n}::double as {n}" for n in self.feature_names)

    def _staged_select(self, alias: str = "") -> str:
        return ", ".join(f"{alias}{n}::double as raw__{n}" for n in FIELD_NAMES)

    def chunks(self, batch_rows: int | None = None) -> Iterator[TrainingData]:
        """Every row once, in the tables' scan order, at most ``batch_rows`` per chunk.

        When both tables scan in the same order (the usual case, checked when opened) the
        two scans are read side by side and each chunk's customer ids are compared, which
        costs far less than a join; otherwise DuckDB joins them.
        """
        size = batch_rows_or_default(batch_rows or self.batch_rows)
        with self._connect() as con:
            if not self._aligned:
                reader = con.sql(
                    f"select f.customer_id::varchar as customer_id, "
                    f"{self._features_select('f.')}, {self._staged_select('s.')} "
                    f"from {FEATURE_MODEL} f join {STAGED_MODEL} s using (customer_id)"
                ).to_arrow_reader(size)
                for batch in reader:
                    yield self._chunk(batch, batch)
                return
            features = con.cursor().sql(
                f"select customer_id::varchar as customer_id, {self._features_select()} "
                f"from {FEATURE_MODEL}"
            )
            staged = con.cursor().sql(
                f"select customer_id::varchar as customer_id, {self._staged_select()} "
                f"from {STAGED_MODEL}"
            )
            pairs = side_by_side(features.to_arrow_reader(size), staged.to_arrow_reader(size))
            for left, right in pairs:
                if not pc.all(pc.equal(left.column(0), right.column(0))).as_py():
                    raise GateFailed(
                        f"{FEATURE_MODEL} and {STAGED_MODEL} changed order while training "
                        "read them; rebuild the features"
                    )
                yield self._chunk(left, right)

    def _chunk(self, features: pa.RecordBatch, staged: pa.RecordBatch) -> TrainingData:
        def column(batch: pa.RecordBatch, name: str) -> np.ndarray:
            # Arrow's nulls become NaN in a float64 array.
            return batch.column(name).to_numpy(zero_copy_only=False)

        X = matrix(features.select(list(self.feature_names)), 0)
        raw = {n: column(staged, f"raw__{n}") for n in FIELD_NAMES}
        return TrainingData(features.column("customer_id"), X, raw)

    def ordered_ids(self, batch_rows: int | None = None) -> Iterator[pa.Array]:
        """The customer ids (Arrow strings), sorted (DuckDB's byte order, the same as
        Python's for str).

        Records each row's rank on the way, for `ordered_features`.
        """
        size = batch_rows_or_default(batch_rows or self.batch_rows)
        # 4 bytes a row id while the ranks fit (0.2 GB for 50M customers).
        kind = np.int32 if self._row_id_end < 2**31 else np.int64
        ranks = np.full(self._row_id_end, -1, dtype=kind)
        position = 0
        with self._connect() as con:
            reader = con.sql(
                f"select f.rowid as row_id, f.customer_id::varchar as customer_id "
                f"from {self._rows_from} order by f.customer_id"
            ).to_arrow_reader(size)
            for batch in reader:
                row_ids = batch.column(0).to_numpy()
                ranks[row_ids] = np.arange(position, position + len(row_ids))
                position += len(row_ids)
                yield batch.column(1)
        self._ranks = ranks

    def ordered_features(self, batch_rows: int | None = None) -> Iterator[np.ndarray]:
        """The feature rows in customer id order, as `ordered_ids` lists them: one plain
        scan into rank buckets on disk, read back in order (``training.features._ordered``;
        DuckDB sorting the wide rows costs about 5x the scan)."""
        size = batch_rows_or_default(batch_rows or self.batch_rows)
        if self._ranks is None:
            for _ in self.ordered_ids(batch_rows):
                pass
        ranks, self._ranks = self._ranks, None  # held by the buckets until they are read
        buckets = RankBuckets(ranks, len(self.feature_names))
        del ranks
        try:
            with self._connect() as con:
                reader = con.sql(
                    f"select f.rowid as row_id, {self._features_select('f.')} "
                    f"from {self._rows_from}"
                ).to_arrow_reader(size)
                for batch in reader:
                    buckets.add(batch.column(0).to_numpy(), matrix(batch, 1))
        except BaseException:
            buckets.close()
            raise
        yield from buckets.ordered(size)

    def sample(self, rows: int, seed: int) -> TrainingData:
        """A seeded sample of about ``rows`` customers (all of them when there are no
        more), in customer id order.

        A customer is in it when ``hash(customer_id, seed)`` falls below ``rows / N`` of
        DuckDB's 64-bit hash range: the same customers for the same seed and data whatever
        the file's row order or the number of threads (DuckDB's hash, stable for a DuckDB
        version, which the manifest records), each table filtered in one scan, no join.
        """
        if rows >= self.rows:
            where = "true"
        else:
            cutoff = int(2**64 * rows / self.rows)
            where = f"hash(customer_id, {int(seed)}) < {cutoff}::ubigint"
        with self._connect() as con:
            features = con.sql(
                f"select customer_id::varchar as customer_id, {self._features_select()} "
                f"from {FEATURE_MODEL} where {where} order by customer_id"
            ).to_arrow_table()
            staged = con.sql(
                f"select customer_id::varchar as customer_id, {self._staged_select()} "
                f"from {STAGED_MODEL} where {where} order by customer_id"
            ).to_arrow_table()
        # The training rows are the customers in both tables (all of them, built by dbt).
        left = np.asarray(features.column(0).to_numpy(), dtype=str)
        right = np.asarray(staged.column(0).to_numpy(), dtype=str)
        ids, in_left, in_right = np.intersect1d(left, right, return_indices=True)
        if not len(ids):
            raise GateFailed(f"{FEATURE_MODEL}: expected training rows, found none")
        X = np.column_stack(
            [features.column(n).to_numpy().astype(np.float64) for n in self.feature_names]
        )
        raw = {
            n: staged.column(f"raw__{n}").to_numpy().astype(np.float64)[in_right]
            for n in FIELD_NAMES
        }
        return TrainingData(ids, X[in_left], raw)


def load_training_data(settings: Settings, feature_names: tuple[str, ...]) -> TrainingData:
    """Every training row in memory, ordered by customer id (small data: the real file,
    benchmarks of the fit; training itself streams, see `WarehouseRows`)."""
    source = WarehouseRows(settings, feature_names)
    return source.sample(source.rows, seed=0)
