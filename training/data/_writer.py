"""Blocks to tables to files: a small thread pipeline with bounded memory.

numpy and Arrow release the GIL in their kernels, so a few threads sampling and
rendering blocks while the main thread writes the previous ones keep both cores busy.
Blocks come back in order, so the output does not depend on the number of threads.
"""

from __future__ import annotations

import math
import operator
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from segmentation.errors import ConfigError

from ._dirty import DirtyPlan, apply_dirty, dirty_counts, plan_dirty
from ._params import load_params
from ._render import to_numeric_table, to_text_table, warm_caches
from ._sampler import BLOCK_ROWS, COUNTS, FREQUENCIES, sample_block

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: Parquet row group size, a whole number of blocks (DuckDB reads row groups in parallel).
ROW_GROUP_ROWS = 1 << 17
#: Threads sampling and rendering blocks (the writer is the calling thread).
WORKERS = max(1, min(2, os.cpu_count() or 1))


def check_rows(n_rows: int, name: str = "n_rows") -> int:
    try:
        n = operator.index(n_rows)
    except TypeError:
        raise ConfigError(
            f"{name}: expected a whole number, found {type(n_rows).__name__}"
        ) from None
    if n < 1:
        raise ConfigError(f"{name}: expected at least 1 row, found {n}")
    return n


def resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is None:
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ConfigError(
                f"format: cannot infer it from the suffix '{path.suffix}'; "
                "expected .csv, .parquet or .pq, or pass fmt"
            )
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"format: expected 'csv' or 'parquet', found '{fmt}'")
    return fmt


def iter_tables(
    n_rows: int, seed: int, dirty_fraction: float, text: bool, workers: int = WORKERS
) -> Iterator[pa.Table]:
    """Tables of ``BLOCK_ROWS`` rows (the last one shorter), in row order."""
    n_rows = check_rows(n_rows)
    dirty_counts(n_rows, dirty_fraction)  # validates the fraction before any work
    plan: DirtyPlan | None = (
        plan_dirty(n_rows, seed, dirty_fraction) if dirty_fraction > 0 else None
    )
    params = load_params()
    warm_caches()

    def make(block: int) -> pa.Table:
        rows = min(BLOCK_ROWS, n_rows - block * BLOCK_ROWS)
        sample = sample_block(seed, block, rows, params)
        table = to_text_table(sample) if text or plan else to_numeric_table(sample)
        return apply_dirty(table, sample.start, plan) if plan else table

    n_blocks = math.ceil(n_rows / BLOCK_ROWS)
    # The archetype matrix products are tiny (15 x 15): BLAS threads only fight over
    # the cores with the sampling threads, several times slower on a busy machine.
    with (
        threadpool_limits(1, user_api="blas"),
        ThreadPoolExecutor(max(1, workers), thread_name_prefix="datagen") as pool,
    ):
        pending: deque = deque()
        for b in range(n_blocks):
            pending.append(pool.submit(make, b))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_file(
    path: Path, n_rows: int, seed: int, fmt: str, dirty_fraction: float, chunk_rows: int
) -> Path:
    """Write to a temporary file beside ``path``, then rename it into place atomically."""
    # Whole row groups per write: row groups, hence the bytes, do not depend on chunk_rows.
    chunk_rows = math.ceil(check_rows(chunk_rows, "chunk_rows") / ROW_GROUP_ROWS) * ROW_GROUP_ROWS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink:
            writer = None
            buffer: list[pa.Table] = []
            buffered = 0
            for table in iter_tables(n_rows, seed, dirty_fraction, text=fmt == "csv"):
                if writer is None:
                    writer = _open(sink, fmt, table.schema)
                buffer.append(table)
                buffered += len(table)
                if buffered >= chunk_rows:
                    _write(writer, fmt, buffer)
                    buffer, buffered = [], 0
            if buffer:
                _write(writer, fmt, buffer)
            writer.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _open(sink: pa.NativeFile, fmt: str, schema: pa.Schema):
    if fmt == "csv":
        # No quotes, like the published file (Arrow would quote the header); no generated
        # value holds a comma, a quote or a line break.
        sink.write((",".join(schema.names) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        return pacsv.CSVWriter(sink, schema, write_options=options)
    # Dictionary pages only where values repeat (grid frequencies, counts): on money and
    # ids they cost half the write time and make the file larger.
    return pq.ParquetWriter(
        sink, schema, compression="snappy", use_dictionary=[*FREQUENCIES, *COUNTS]
    )


def _write(writer, fmt: str, tables: list[pa.Table]) -> None:
    table = pa.concat_tables(tables)
    if fmt == "csv":
        writer.write_table(table)
    else:
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
