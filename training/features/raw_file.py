"""The raw customer file, checked at the edge before dbt reads it.

A file in the wrong layout must be refused with a message a person can act on (which
file, which columns are missing, which are unexpected), not surface as a dbt Binder Error
half-way through a build. Only the header (CSV) or the schema (Parquet) is read.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from segmentation import ConfigError, InvalidInput
from segmentation.schema import ID_RAW_NAME, RAW_NAMES

#: Suffixes read as Parquet (the dbt source uses the same rule); anything else is CSV.
PARQUET_SUFFIXES = (".parquet", ".pq")
REQUIRED_COLUMNS = (ID_RAW_NAME, *RAW_NAMES)
#: Bytes read to find the CSV header line: far more than the 18 column names need.
_HEADER_BYTES = 64 * 1024
#: What every refusal says was expected.
_EXPECTED = f"the CC GENERAL columns {ID_RAW_NAME} + {len(RAW_NAMES)} behaviour columns, each once"


def is_parquet(path: Path | str) -> bool:
    return str(path).lower().endswith(PARQUET_SUFFIXES)


def _csv_header(path: Path) -> list[str]:
    # DuckDB's read_csv decompresses .gz by suffix; so does this check.
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(_HEADER_BYTES)
    except (OSError, EOFError):  # gzip.BadGzipFile is an OSError
        raise InvalidInput(
            "file", f"gzip-compressed CSV with {_EXPECTED} ({path} is not)"
        ) from None
    if not head.strip():
        raise InvalidInput("file", f"a CSV or Parquet file with {_EXPECTED} ({path} is empty)")
    if b"\x00" in head:
        raise InvalidInput(
            "file", f"CSV text, or a .parquet file, with {_EXPECTED} ({path} is binary)"
        )
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("file", f"UTF-8 CSV text with {_EXPECTED} ({path} is not)") from None
    line = text.splitlines()[0] if text.splitlines() else ""
    return [c.strip() for c in next(csv.reader(io.StringIO(line)), [])]


def _parquet_header(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception:  # pyarrow raises several types for a file that is not Parquet
        raise InvalidInput(
            "file", f"a Parquet file with {_EXPECTED} ({path} cannot be read as one)"
        ) from None


def check_raw_file(path: Path) -> list[str]:
    """Refuse a raw file dbt could not stage; return its column names.

    Raises
    ------
    ConfigError
        There is no file at ``path``.
    InvalidInput
        The file is empty, is neither CSV nor Parquet, or its header lacks a
        required column; the message names the file, the missing columns and any
        unexpected ones (which would be ignored), never a value.
    """
    if not path.is_file():
        raise ConfigError(f"SEGMENTATION_DATA: expected an existing CSV or Parquet file at {path}")
    columns = _parquet_header(path) if is_parquet(path) else _csv_header(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if missing or duplicated:
        unexpected = [c for c in columns if c not in REQUIRED_COLUMNS]
        parts = [f"missing {missing}"] if missing else []
        parts += [f"duplicated {duplicated}"] if duplicated else []
        parts += [f"unexpected {unexpected}"] if unexpected else []
        raise InvalidInput("header", f"{_EXPECTED} ({path}: {'; '.join(parts)})")
    return columns
