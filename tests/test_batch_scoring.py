"""Batch scoring for analysts: `dbt build` writes customer_segments and segment_profiles.

Before any model exists the two tables are empty with their columns; after training,
`segmentation score` fills them with the current model, verified before use.
"""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pytest

from segmentation import FIELD_NAMES, Settings
from segmentation.bundle import load_bundle
from segmentation.store import open_store, version_key
from training.cli import main
from training.data import write_customers
from training.features import build_features
from training.model.params import TrainingParams
from training.train import train_and_publish

pytestmark = pytest.mark.slow

COLUMNS = [
    ("customer_id", "VARCHAR"),
    ("segment_id", "BIGINT"),
    ("segment_name", "VARCHAR"),
    ("distance", "DOUBLE"),
    ("model_version", "VARCHAR"),
]


def _env(mp: pytest.MonkeyPatch, settings: Settings, root) -> None:
    mp.setenv("SEGMENTATION_DATA", settings.data)
    mp.setenv("SEGMENTATION_WAREHOUSE", settings.warehouse)
    mp.setenv("SEGMENTATION_MODEL_STORE", settings.model_store)
    mp.setenv("DBT_TARGET_PATH", str(root / "target"))
    mp.setenv("DBT_LOG_PATH", str(root / "logs"))


def _query(settings: Settings, sql: str) -> list[tuple]:
    # Default configuration: dbt-duckdb ran in this process and keeps the file open.
    with duckdb.connect(settings.warehouse) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    data = root / "customers.csv"
    write_customers(data, 2000, seed=21)
    settings = Settings(
        data=str(data),
        warehouse=str(root / "wh.duckdb"),
        model_store=str(root / "store"),
        dbt_target_path=str(root / "target"),
        dbt_log_path=str(root / "logs"),
    )
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, settings, root)
        build_features(settings, quiet=True)
        before = {
            "columns": _query(settings, "describe customer_segments"),
            "segments": _query(settings, "select count(*) from customer_segments")[0][0],
            "profiles": _query(settings, "select count(*) from segment_profiles")[0][0],
        }
        train_and_publish(settings, TrainingParams(k=4, algorithm="kmeans", seed=5))
        assert main(["score", "--quiet"]) == 0
    return root, settings, before


def test_dbt_build_before_training_gives_empty_tables_with_the_columns(workspace):
    _, _, before = workspace
    assert [(c[0], c[1]) for c in before["columns"]] == COLUMNS
    assert before["segments"] == 0 and before["profiles"] == 0


def test_score_assigns_every_staged_customer_with_the_current_model(workspace):
    _, settings, _ = workspace
    store = open_store(settings.model_store)
    pointer, _ = store.read_pointer()
    bundle = load_bundle(store, pointer)
    staged = _query(settings, "select count(*) from stg_customers")[0][0]
    rows = _query(
        settings,
        "select s.customer_id, s.segment_id, s.segment_name, s.distance, s.model_version, "
        + ", ".join(f"c.{n}::double" for n in FIELD_NAMES)
        + " from customer_segments s join stg_customers c using (customer_id) order by 1",
    )
    assert len(rows) == staged == len({r[0] for r in rows})
    assert {r[4] for r in rows} == {pointer.version}
    assert {(r[1], r[2]) for r in rows} <= set(bundle.segment_names.items())
    columns = {
        n: np.array([np.nan if r[5 + j] is None else r[5 + j] for r in rows])
        for j, n in enumerate(FIELD_NAMES)
    }
    scores = bundle.scorer.score(columns)
    np.testing.assert_array_equal([r[1] for r in rows], scores.segment_id)
    column = [bundle.segment_columns[int(s)] for s in scores.segment_id]
    expected = scores.distances[np.arange(len(rows)), column]
    np.testing.assert_allclose([r[3] for r in rows], expected, rtol=1e-6)


def test_segment_profiles_aggregate_the_scored_customers(workspace):
    _, settings, _ = workspace
    profiles = _query(
        settings,
        "select p.segment_id, p.customer_count, p.customer_share, p.avg_distance, "
        "p.avg_credit_utilization_ratio, count(*), avg(s.distance) "
        "from segment_profiles p join customer_segments s using (segment_id) "
        "group by all order by 1",
    )
    staged = _query(settings, "select count(*) from stg_customers")[0][0]
    assert sum(p[1] for p in profiles) == staged
    assert sum(p[2] for p in profiles) == pytest.approx(1.0)
    for _, count, _, avg_distance, utilization, joined, mean_distance in profiles:
        assert count == joined and avg_distance == pytest.approx(mean_distance)
        assert utilization is None or utilization >= 0


def test_score_refuses_a_model_whose_bytes_differ_from_the_manifest(workspace, tmp_path, capsys):
    _, settings, _ = workspace
    shutil.copytree(settings.model_store, tmp_path / "store")
    _query(settings, "checkpoint")  # the copy must hold the scores, not just the WAL
    shutil.copy(settings.warehouse, tmp_path / "wh.duckdb")
    copy = Settings(
        data=settings.data,
        warehouse=str(tmp_path / "wh.duckdb"),
        model_store=str(tmp_path / "store"),
    )
    pointer, _ = open_store(copy.model_store).read_pointer()
    model = tmp_path / "store" / version_key(pointer.version, "model.onnx")
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, copy, tmp_path)
        assert main(["score", "--quiet"]) == 2
    assert "sha256 differs" in capsys.readouterr().out
    # The failed build left the previous scores in place.
    assert _query(copy, "select count(distinct model_version) from customer_segments") == [(1,)]
