"""`segmentation contract`: regenerate what is derived from ``segmentation.schema``.

The staging model's YAML and field macro (dbt) and the OpenAPI document (serving) are
generated, never hand-edited, so the warehouse, the API validation and the docs cannot
disagree. ``--check`` only reports stale files (exit 1), for CI and pre-commit.
"""

from __future__ import annotations

import argparse

from segmentation import Settings

HELP = "Regenerate the dbt staging YAML and the OpenAPI document from the schema."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check", action="store_true", help="report stale generated files, write nothing"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from training.contract import dbt as contract_dbt
    from training.contract import openapi as contract_openapi

    if args.check:
        stale = [str(p) for p in contract_dbt.stale_files()]
        if contract_openapi.OPENAPI_PATH.read_text() != contract_openapi.render():
            stale.append(str(contract_openapi.OPENAPI_PATH))
        for path in stale:
            print(f"stale: {path}")
        return 1 if stale else 0
    for path in contract_dbt.write_dbt_contract():
        print(f"wrote {path}")
    print(f"wrote {contract_openapi.write()}")
    return 0
