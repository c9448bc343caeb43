"""`segmentation score`: batch-score the warehouse's customers with the current model.

Runs ``dbt build --select customer_segments+ segment_profiles``: the dbt Python model
``customer_segments`` loads and verifies the current model from SEGMENTATION_MODEL_STORE
and scores ``stg_customers`` with onnxruntime; ``segment_profiles`` aggregates per segment.
"""

from __future__ import annotations

import argparse

import duckdb

from segmentation import Settings

HELP = "Score the warehouse's customers with the current model (batch)."
SELECTION = "customer_segments+ segment_profiles"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="show only dbt's errors")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from training.features import build_features

    build_features(
        settings,
        select=SELECTION,
        vars={"segmentation_model_store": settings.model_store},
        quiet=args.quiet,
    )
    # Default configuration: dbt-duckdb ran in this process and DuckDB's instance cache
    # refuses a second connection to the same file with other settings (read_only).
    with duckdb.connect(settings.warehouse) as con:
        rows = con.execute(
            "select model_version, segment_id, any_value(segment_name), count(*) "
            "from customer_segments group by all order by segment_id"
        ).fetchall()
    if not rows:
        print("no current model: customer_segments is empty (run `segmentation train`)")
        return 0
    total = sum(r[3] for r in rows)
    print(f"scored {total} customers with model {rows[0][0]} into {settings.warehouse}")
    for _, segment_id, name, count in rows:
        print(f"  segment {segment_id} {name}: {count} ({count / total:.1%})")
    return 0
