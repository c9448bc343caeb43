"""The warehouse's tables as the rest of training knows them, and questions asked of them.

Table names are dbt's model names (``dbt_project/models``); every check of a table's
existence or size goes through here.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

FEATURE_MODEL = "customer_features"
STAGED_MODEL = "stg_customers"
QUARANTINE_MODEL = "stg_customers__quarantine"
SEGMENTS_MODEL = "customer_segments"
PROFILES_MODEL = "segment_profiles"
#: Separator between the reasons of one quarantined row (see base_customers.sql).
REASON_SEPARATOR = "; "


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether the connected database has a table or view named ``table``."""
    found = con.execute(
        "select count(*) from information_schema.tables where table_name = ?", [table]
    ).fetchone()
    return bool(found and found[0])


def warehouse_has_table(warehouse: str, table: str) -> bool:
    """Whether the DuckDB file ``warehouse`` exists and has ``table`` (never creates it)."""
    if "://" not in warehouse and not Path(warehouse).exists():
        return False  # connecting would create an empty database
    # Default configuration: when dbt-duckdb just built the features in this process,
    # DuckDB's instance cache refuses a connection with other settings (read_only).
    with duckdb.connect(warehouse) as con:
        return table_exists(con, table)


def row_count(con: duckdb.DuckDBPyConnection, table: str) -> int | None:
    """Rows of ``table``; None when it does not exist."""
    if not table_exists(con, table):
        return None
    row = con.execute(f'select count(*) from "{table}"').fetchone()
    return int(row[0]) if row else None


def quarantine_reasons(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Quarantined rows per failed rule, most frequent first (a row may count twice)."""
    rows = con.execute(
        f"""
        select reason, count(*) as n
        from (
            select unnest(string_split(rejection_reason, '{REASON_SEPARATOR}')) as reason
            from "{QUARANTINE_MODEL}"
        )
        group by reason
        order by n desc, reason
        """
    ).fetchall()
    return dict(Counter({str(reason): int(n) for reason, n in rows}))


def build_counts(warehouse: str) -> tuple[int | None, int | None, int | None, dict[str, int]]:
    """Staged, quarantined and feature rows, and the quarantine's reasons."""
    # Same process as dbt-duckdb: connect with default settings so DuckDB's instance
    # cache hands back the database dbt may still hold open.
    with duckdb.connect(warehouse) as con:
        staged = row_count(con, STAGED_MODEL)
        quarantined = row_count(con, QUARANTINE_MODEL)
        reasons = quarantine_reasons(con) if quarantined else {}
        return staged, quarantined, row_count(con, FEATURE_MODEL), reasons


def segment_counts(warehouse: str, version: str) -> list[tuple[int, str, int]]:
    """(segment id, name, customers) that ``version`` scored into customer_segments."""
    # Same process as dbt-duckdb: default settings, see build_counts.
    with duckdb.connect(warehouse) as con:
        rows = con.execute(
            f'select segment_id, any_value(segment_name), count(*) from "{SEGMENTS_MODEL}" '
            "where model_version = ? group by segment_id order by segment_id",
            [version],
        ).fetchall()
    return [(int(i), str(name), int(n)) for i, name, n in rows]


#: DuckDB's buffer pool while rows stream (training, drift): the scans read each page once,
#: so a cache cannot help, and uncapped DuckDB keeps every page it read (about 200 bytes a
#: customer).
DUCKDB_MEMORY_LIMIT = "512MB"

_limits_lock = threading.Lock()
_limits: dict[str, list] = {}  # warehouse -> [connections reading, setting before]


@contextmanager
def memory_limit(
    con: duckdb.DuckDBPyConnection, warehouse: str, limit: str = DUCKDB_MEMORY_LIMIT
) -> Iterator[None]:
    """Cap the database's buffer pool at ``limit`` while any reader of it is open (the
    setting is the database's, shared by its connections and threads: the first reader's
    limit holds until the last one closes), then restore the setting."""
    with _limits_lock:
        entry = _limits.setdefault(warehouse, [0, None])
        if entry[0] == 0:
            ((entry[1],),) = con.execute("select current_setting('memory_limit')").fetchall()
            con.execute(f"set memory_limit = '{limit}'")
        entry[0] += 1
    try:
        yield
    finally:
        with _limits_lock:
            entry[0] -= 1
            if entry[0] == 0:
                con.execute(f"set memory_limit = '{entry[1]}'")
                del _limits[warehouse]
