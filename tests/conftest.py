"""Shared fixtures. Serving fixtures build contract-exact bundles (``fixtures/bundles.py``)
into temporary local stores; ``trained_model_store`` holds a bundle the real training and
export produced from generated customers (once per session, only for the tests that ask
for it). Nothing here touches the network."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `fixtures` importable in any mode

from fixtures.bundles import GOLDEN_INPUTS, ModelSpec, publish

from segmentation.schema import FIELDS, ID_RAW_NAME
from segmentation.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "cc_general.csv"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """An empty local model store."""
    return LocalStore(tmp_path / "store")


@pytest.fixture
def model_store(store: LocalStore) -> LocalStore:
    """A local store whose pointer names one verified test model (ModelSpec defaults)."""
    publish(store, ModelSpec())
    return store


@pytest.fixture(scope="session")
def shared_model_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """Like ``model_store`` but built once per session, for read-only users."""
    store = LocalStore(tmp_path_factory.mktemp("shared") / "store")
    publish(store, ModelSpec())
    return store


@pytest.fixture(scope="session")
def trained_model_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """A local store whose current version is a real export: generated customers, dbt
    build, fit, gates and publish (KMeans k=4, no selection sweep; seconds, once)."""
    from segmentation import Settings
    from training.data import write_customers
    from training.model.params import TrainingParams
    from training.train import train_and_publish

    root = tmp_path_factory.mktemp("trained")
    write_customers(root / "customers.csv", 2_500, seed=3)
    settings = Settings(
        data=str(root / "customers.csv"),
        warehouse=str(root / "warehouse.duckdb"),
        model_store=str(root / "store"),
        dbt_target_path=str(root / "target"),
        dbt_log_path=str(root / "logs"),
    )
    train_and_publish(settings, TrainingParams(k=4, seed=3, select=False, stability_boot=5))
    return LocalStore(root / "store")


@pytest.fixture(
    scope="session",
    params=["fixture-graph", pytest.param("trained", marks=pytest.mark.slow)],
)
def served_store(request: pytest.FixtureRequest) -> LocalStore:
    """Read-only store serving either the hand-built fixture graph or the real export; for
    tests of behaviour that holds whatever the model (ids, names and golden rows are read
    from the store's own manifest)."""
    if request.param == "trained":
        return request.getfixturevalue("trained_model_store")
    return request.getfixturevalue("shared_model_store")


@pytest.fixture(scope="session")
def customer() -> dict:
    """One valid customer in the API's shape (staged names, floats, nulls allowed)."""
    return {**GOLDEN_INPUTS[1], "customer_id": "C-test-1"}


@pytest.fixture(scope="session")
def real_customers() -> list[dict]:
    """The first 500 real customers as API payloads (staged names, blanks as null)."""
    rows = []
    with REAL_DATA.open(newline="") as fh:
        for i, raw in enumerate(csv.DictReader(fh)):
            if i == 500:
                break
            row = {f.name: float(raw[f.raw_name]) if raw[f.raw_name] else None for f in FIELDS}
            rows.append({**row, "customer_id": raw[ID_RAW_NAME]})
    return rows


@pytest.fixture(scope="session")
def spark_settings(tmp_path_factory: pytest.TempPathFactory):
    """Settings of the ``spark`` engine with this session's one SparkSession started
    (local[2], a warehouse of its own); every Spark test shares it, stopped at the end."""
    from segmentation import Settings
    from training.spark.session import spark_session

    root = tmp_path_factory.mktemp("spark")
    settings = Settings(
        home=str(root),
        engine="spark",
        spark_warehouse=str(root / "spark-warehouse"),
        dbt_target_path=str(root / "target"),
        dbt_log_path=str(root / "logs"),
    )
    session = spark_session(settings)
    yield settings
    session.stop()
