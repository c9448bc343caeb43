"""End to end through the CLI: generate -> features -> train -> a verified, current bundle.

Also on the real file, with a deliberately broken feature that the parity gate refuses,
and with ``--no-promote``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from segmentation import Settings
from segmentation.bundle import load_bundle
from segmentation.schema import FIELDS
from segmentation.store import open_store
from training.cli import main
from training.release import ledger

pytestmark = pytest.mark.slow

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cc_general.csv"


def _workspace(mp: pytest.MonkeyPatch, root: Path, data: Path) -> Settings:
    env = {
        "SEGMENTATION_DATA": str(data),
        "SEGMENTATION_WAREHOUSE": str(root / "wh.duckdb"),
        "SEGMENTATION_MODEL_STORE": str(root / "store"),
        "DBT_TARGET_PATH": str(root / "target"),
        "DBT_LOG_PATH": str(root / "logs"),
    }
    for name, value in env.items():
        mp.setenv(name, value)
    return Settings.from_env()


def _runs(settings: Settings) -> list[dict]:
    """Each run's outcome as the ledger records it ({"status": "started"} if unfinished)."""
    runs = ledger.list_runs(open_store(settings.model_store))
    return [{**r.started, **(r.finished or {})} for r in runs]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    with pytest.MonkeyPatch.context() as mp:
        settings = _workspace(mp, root, root / "customers.csv")
        assert main(["generate", "--rows", "4000", "--seed", "3"]) == 0
        assert main(["features"]) == 0
        assert main(["train", "--k", "4", "--seed", "3"]) == 0
    return root, settings


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    with pytest.MonkeyPatch.context() as mp:
        settings = _workspace(mp, root, REAL)
        # No `features` step: train builds the features when the warehouse lacks them.
        assert main(["train"]) == 0
    return root, settings


@pytest.mark.parametrize("workspace", ["generated", "real"])
def test_train_publishes_a_verified_current_version(workspace, request):
    _, settings = request.getfixturevalue(workspace)
    store = open_store(settings.model_store)
    pointer, _ = store.read_pointer()
    bundle = load_bundle(store, pointer)
    manifest = bundle.manifest.raw
    assert manifest["training"]["rows"] == (8950 if workspace == "real" else 4000)
    assert manifest["metrics"]["label_agreement"] >= 0.999
    assert len(manifest["segments"]) == 4
    assert [r["status"] for r in _runs(settings)].count("promoted") == 1


def _real_customers() -> np.ndarray:
    """Every customer of the real file, [N, 17] in FIELDS order, blank as NaN."""
    with REAL.open(newline="") as fh:
        rows = [
            [float(raw[f.raw_name]) if raw[f.raw_name] else np.nan for f in FIELDS]
            for raw in csv.DictReader(fh)
        ]
    return np.array(rows)


def _matching_customers(inputs: dict, customers: np.ndarray) -> np.ndarray:
    """Indices of the customers equal to ``inputs`` on all 17 fields (null equals null)."""
    row = np.array([np.nan if inputs[f.name] is None else inputs[f.name] for f in FIELDS])
    same = np.isclose(customers, row, rtol=1e-6, atol=0.005, equal_nan=True)
    return np.flatnonzero(same.all(axis=1))


def test_the_customer_match_finds_a_real_customer_given_as_golden_inputs():
    customers = _real_customers()
    first = {f.name: None if np.isnan(v) else round(float(v), 2) for f, v in
             zip(FIELDS, customers[0], strict=True)}  # fmt: skip
    assert len(customers) == 8950
    assert 0 in _matching_customers(first, customers)
    assert len(_matching_customers({**first, "tenure": 3.0}, customers)) == 0


def test_real_file_golden_rows_are_synthetic_not_customers(real):
    _, settings = real
    store = open_store(settings.model_store)
    manifest = load_bundle(store, store.read_pointer()[0]).manifest.raw
    customers = _real_customers()
    copied = {
        r["name"]: _matching_customers(r["inputs"], customers).tolist()
        for r in manifest["golden_rows"]
    }
    assert len(copied) == len(manifest["golden_rows"]) >= 5
    assert {name: rows for name, rows in copied.items() if rows} == {}


def test_a_feature_sql_that_differs_from_duckdb_fails_the_export_and_publishes_nothing(
    real, monkeypatch, capsys
):
    root, settings = real
    import training.candidate as train_module

    compiled = train_module.compiled_feature_sql

    def broken(*args, **kwargs) -> str:
        # The served graph would compute log_balance differently from the warehouse.
        sql = compiled(*args, **kwargs)
        assert "ln(1.0 + balance)" in sql
        return sql.replace("ln(1.0 + balance)", "ln(2.0 + balance)")

    monkeypatch.setattr(train_module, "compiled_feature_sql", broken)
    store = open_store(settings.model_store)
    before = store.list("versions")
    pointer_before = store.read_pointer()[0]
    with monkeypatch.context() as mp:
        _workspace(mp, root, REAL)
        assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert "feature parity" in err and "'log_balance'" in err
    assert store.list("versions") == before
    assert store.read_pointer()[0] == pointer_before
    failed = [r for r in _runs(settings) if r["status"] == "failed"]
    assert len(failed) == 1 and "feature parity" in failed[0]["error"]
    assert "'log_balance'" in failed[0]["error"]


def test_no_promote_publishes_a_version_without_moving_the_pointer(generated, monkeypatch):
    root, settings = generated
    store = open_store(settings.model_store)
    pointer_before = store.read_pointer()[0]
    with monkeypatch.context() as mp:
        _workspace(mp, root, root / "customers.csv")
        assert main(["train", "--no-promote", "--k", "3"]) == 0
    assert store.read_pointer()[0] == pointer_before
    versions = {key.split("/")[1] for key in store.list("versions")}
    assert len(versions) == 2
    (new,) = versions - {pointer_before.version}
    assert json.loads(store.read(f"versions/{new}/manifest.json"))["training"]["k"] == 3
    assert [r["status"] for r in _runs(settings)].count("published") == 1
