"""A raw file dbt could not stage is refused at the edge, naming the file and the columns.

`check_raw_file` reads only the header (CSV) or the schema (Parquet); `segmentation
features` then exits 2 with the message before dbt runs, and the warehouse is neither
created nor changed.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segmentation import InvalidInput
from segmentation.schema import ID_RAW_NAME, RAW_NAMES
from training import cli
from training.features.raw_file import check_raw_file

HEADER = [ID_RAW_NAME, *RAW_NAMES]
#: 17 behaviour columns of the CC GENERAL layout, written out here rather than derived.
EXPECTED = "the CC GENERAL columns CUST_ID + 17 behaviour columns"


def _csv(path: Path, header: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerow(["C1", *("1" for _ in header[1:])])
    return path


def _parquet(path: Path, header: list[str]) -> Path:
    pq.write_table(pa.table({name: [1.0] for name in header}), path)
    return path


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _without(*names: str) -> list[str]:
    return [c for c in HEADER if c not in names]


#: (case, file name, writer, fragments the message must contain besides the path).
REFUSED: list[tuple[str, str, Callable[[Path], object], list[str]]] = [
    (
        "missing_columns",
        "customers.csv",
        lambda p: _csv(p, _without("BALANCE", "TENURE")),
        ["missing ['BALANCE', 'TENURE']", EXPECTED],
    ),
    (
        "unexpected_columns_named_alongside",
        "customers.csv",
        lambda p: _csv(p, [*_without("BALANCE"), "Balance", "REGION"]),
        ["missing ['BALANCE']", "unexpected ['Balance', 'REGION']"],
    ),
    (
        "duplicated_column",
        "customers.csv",
        lambda p: _csv(p, [*HEADER, "TENURE"]),
        ["duplicated ['TENURE']", EXPECTED],
    ),
    ("empty_file", "customers.csv", _bytes(b""), ["is empty", EXPECTED]),
    ("blank_lines_only", "customers.csv", _bytes(b"\n \r\n\n"), ["is empty", EXPECTED]),
    (
        "binary_file",
        "customers.csv",
        _bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
        ["is binary", EXPECTED],
    ),
    (
        "latin1_text",
        "customers.csv",
        _bytes("CUST_ID,BALANCE\nC\xe9,1\n".encode("latin-1")),
        ["UTF-8", EXPECTED],
    ),
    (
        "csv_named_parquet",
        "customers.parquet",
        lambda p: _csv(p, HEADER),
        ["cannot be read as one", "Parquet", EXPECTED],
    ),
    (
        "parquet_missing_a_column",
        "customers.parquet",
        lambda p: _parquet(p, _without("PRC_FULL_PAYMENT")),
        ["missing ['PRC_FULL_PAYMENT']", EXPECTED],
    ),
    ("not_gzip", "customers.csv.gz", lambda p: _csv(p, HEADER), ["gzip", EXPECTED]),
]


@pytest.mark.parametrize(
    ("case", "name", "write", "fragments"), REFUSED, ids=[c[0] for c in REFUSED]
)
def test_check_refuses_the_file_naming_it_and_the_columns(tmp_path, case, name, write, fragments):
    path = tmp_path / name
    write(path)
    with pytest.raises(InvalidInput) as raised:
        check_raw_file(path)
    message = str(raised.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("customers.csv", lambda p: _csv(p, HEADER)),
        ("customers.csv", lambda p: _csv(p, [*reversed(HEADER), "REGION"])),  # order, extras
        ("customers.parquet", lambda p: _parquet(p, HEADER)),
        ("customers.csv.gz", lambda p: p.write_bytes(gzip.compress(_csv(p, HEADER).read_bytes()))),
    ],
    ids=["csv", "csv_reordered_with_extra", "parquet", "gzip_csv"],
)
def test_check_accepts_every_required_column_in_any_order(tmp_path, name, write):
    path = tmp_path / name
    write(path)
    assert set(HEADER) <= set(check_raw_file(path))


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    warehouse = tmp_path / "var" / "warehouse.duckdb"
    monkeypatch.setenv("SEGMENTATION_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("SEGMENTATION_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "logs"))
    return warehouse


@pytest.mark.parametrize(
    ("case", "name", "write", "fragments"), REFUSED, ids=[c[0] for c in REFUSED]
)
def test_features_command_exits_2_with_the_message_and_creates_no_warehouse(
    tmp_path, monkeypatch, capsys, cli_env, case, name, write, fragments
):
    path = tmp_path / name
    write(path)
    monkeypatch.setenv("SEGMENTATION_DATA", str(path))
    assert cli.main(["features", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segmentation features: error: ")
    assert str(path) in err and all(fragment in err for fragment in fragments)
    assert not cli_env.parent.exists()  # not even the warehouse's folder
    assert not (tmp_path / "target").exists()  # dbt never started


def test_features_command_leaves_an_existing_warehouse_unchanged(
    tmp_path, monkeypatch, capsys, cli_env
):
    cli_env.parent.mkdir(parents=True)
    with duckdb.connect(str(cli_env)) as con:
        con.execute("create table stg_customers as select 'C1' as customer_id")
    before = cli_env.read_bytes()
    monkeypatch.setenv("SEGMENTATION_DATA", str(_csv(tmp_path / "bad.csv", _without("TENURE"))))
    assert cli.main(["features", "--quiet"]) == 2
    assert "missing ['TENURE']" in capsys.readouterr().err
    assert cli_env.read_bytes() == before
    assert sorted(p.name for p in cli_env.parent.iterdir()) == [cli_env.name]  # no WAL either
