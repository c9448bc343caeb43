"""Shared fixtures. Serving fixtures build contract-exact bundles (``fixtures/bundles.py``)
into temporary local stores; nothing here fits a real model or touches the network."""

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
