"""segment_history and segment_transitions for analysts: scoring with two model versions
keeps both assignments per customer, and the transitions equal a cross-tabulation of the
two versions' customer_segments computed here directly."""

from __future__ import annotations

import dataclasses

import duckdb
import pytest
from fixtures.workspace import workspace_settings

from segmentation import Settings
from segmentation.store import open_store
from training.data import write_customers
from training.features import build_features, build_scores
from training.model.params import TrainingParams
from training.train import train_and_publish

pytestmark = pytest.mark.slow


def _rows(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(settings.warehouse) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def scored_twice(tmp_path_factory):
    root = tmp_path_factory.mktemp("history")
    write_customers(root / "customers.csv", 2_500, seed=8)
    settings = workspace_settings(root, root / "customers.csv")
    build_features(settings, quiet=True)
    params = TrainingParams(seed=3, select=False, k=4, stability_boot=2)
    first = train_and_publish(settings, params)
    build_scores(settings, first.version, first.manifest_sha256, quiet=True)
    v1 = _rows(settings, "select customer_id, segment_id from customer_segments")
    # A different model (k=3): customers must move between segments.
    second = train_and_publish(settings, dataclasses.replace(params, k=3, seed=9))
    build_scores(settings, second.version, second.manifest_sha256, quiet=True)
    v2 = _rows(settings, "select customer_id, segment_id from customer_segments")
    # Scoring the second version again must not duplicate its rows.
    build_scores(settings, second.version, second.manifest_sha256, quiet=True)
    return settings, first, second, dict(v1), dict(v2)


def test_history_keeps_one_row_per_customer_and_version(scored_twice):
    settings, first, second, v1, v2 = scored_twice
    counts = dict(_rows(settings, "select model_version, count(*) from segment_history group by 1"))
    assert counts == {first.version: len(v1), second.version: len(v2)}
    history = _rows(
        settings,
        "select customer_id, segment_id from segment_history "
        f"where model_version = '{first.version}'",
    )
    assert dict(history) == v1


def test_transitions_equal_the_cross_tabulation_of_the_two_versions(scored_twice):
    settings, first, second, v1, v2 = scored_twice
    expected: dict[tuple[int, int], int] = {}
    for customer, old in v1.items():
        if customer in v2:
            expected[(old, v2[customer])] = expected.get((old, v2[customer]), 0) + 1
    rows = _rows(
        settings,
        "select from_version, to_version, from_segment_id, to_segment_id, customer_count, "
        "share_of_from_segment from segment_transitions",
    )
    assert {(r[0], r[1]) for r in rows} == {(first.version, second.version)}
    assert {(r[2], r[3]): r[4] for r in rows} == expected
    per_old: dict[int, float] = {}
    for r in rows:
        per_old[r[2]] = per_old.get(r[2], 0.0) + r[5]
    assert all(share == pytest.approx(1.0) for share in per_old.values())
    assert open_store(settings.model_store).read_pointer()[0].version == second.version
