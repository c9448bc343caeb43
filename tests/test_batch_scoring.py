"""Batch scoring for analysts: customer_segments and segment_profiles for a named version.

`segmentation features` never scores; `segmentation score` reads the store's pointer once
and passes the version to dbt as vars. Without the version var the scoring models are
disabled, so plain `dbt build` leaves earlier scores alone and never picks a model itself.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml
from rich.console import Console

from segmentation import FIELD_NAMES, FeatureBuildError, Settings
from segmentation.bundle import load_bundle
from segmentation.store import POINTER_KEY, open_store, version_key
from training.cli import main
from training.contract import dbt as contract_dbt
from training.data import write_customers
from training.features import SCORING_SELECTION, build_features
from training.features.warehouse import warehouse_has_table
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


def _env(mp: pytest.MonkeyPatch, settings: Settings, root: Path) -> None:
    mp.setenv("SEGMENTATION_DATA", settings.data)
    mp.setenv("SEGMENTATION_WAREHOUSE", settings.warehouse)
    mp.setenv("SEGMENTATION_MODEL_STORE", settings.model_store)
    mp.setenv("DBT_TARGET_PATH", str(root / "target"))
    mp.setenv("DBT_LOG_PATH", str(root / "logs"))


def _query(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    # Default configuration: dbt-duckdb ran in this process and keeps the file open.
    with duckdb.connect(settings.warehouse) as con:
        return con.execute(sql, params or []).fetchall()


def _run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


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
        assert _run_cli(["features", "--quiet"])[0] == 0
        before = {
            "segments_built": warehouse_has_table(settings.warehouse, "customer_segments"),
            "profiles_built": warehouse_has_table(settings.warehouse, "segment_profiles"),
            "score": _run_cli(["score", "--quiet"]),
            "segments_built_by_score": warehouse_has_table(settings.warehouse, "customer_segments"),
        }
        train_and_publish(settings, TrainingParams(k=4, algorithm="kmeans", seed=5))
        code, before["scored"] = _run_cli(["score", "--quiet"])
        assert code == 0
    return root, settings, before


@pytest.fixture
def copy_of(workspace, tmp_path):
    """The workspace's warehouse and store copied under tmp_path, for builds that change them."""
    _, settings, _ = workspace
    shutil.copytree(settings.model_store, tmp_path / "store")
    _query(settings, "checkpoint")  # the copy must hold the scores, not just the WAL
    shutil.copy(settings.warehouse, tmp_path / "wh.duckdb")
    return Settings(
        data=settings.data,
        warehouse=str(tmp_path / "wh.duckdb"),
        model_store=str(tmp_path / "store"),
        dbt_target_path=str(tmp_path / "target"),
        dbt_log_path=str(tmp_path / "logs"),
    )


def _current_version(settings: Settings) -> str:
    pointer, _ = open_store(settings.model_store).read_pointer()
    return pointer.version


def _built_nodes(settings: Settings) -> set[str]:
    results = json.loads((Path(settings.dbt_target_path) / "run_results.json").read_text())
    return {r["unique_id"] for r in results["results"]}


def test_features_build_no_scoring_tables_and_score_without_a_model_says_so(workspace):
    _, _, before = workspace
    assert not before["segments_built"] and not before["profiles_built"]
    code, out = before["score"]
    assert code == 0
    assert out.startswith("no current model")
    assert not before["segments_built_by_score"]


def test_score_assigns_every_staged_customer_with_the_current_model(workspace):
    _, settings, before = workspace
    store = open_store(settings.model_store)
    pointer, _ = store.read_pointer()
    bundle = load_bundle(store, pointer)
    assert f"with model {pointer.version}" in before["scored"]
    # Not a terminal: the result lines only, no progress display and no escape codes.
    lines = before["scored"].splitlines()
    assert lines[0].startswith("scored ") and "\x1b" not in before["scored"]
    assert all(line.startswith(("  segment ", "warning: ")) for line in lines[1:])
    assert [c[:2] for c in _query(settings, "describe customer_segments")] == COLUMNS
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


def test_score_records_the_version_in_the_lineage(workspace):
    root, settings, _ = workspace
    manifest = json.loads((root / "target" / "manifest.json").read_text())
    config = manifest["nodes"]["model.segmentation.customer_segments"]["config"]
    pointer, _ = open_store(settings.model_store).read_pointer()
    assert (config["model_version"], config["model_manifest_sha256"]) == (
        pointer.version,
        pointer.manifest_sha256,
    )


def test_segment_profiles_aggregate_the_scored_customers(workspace):
    _, settings, _ = workspace
    profiles = _query(
        settings,
        "select p.segment_id, p.customer_count, p.customer_share, p.avg_distance, "
        "p.max_distance, p.avg_credit_utilization_ratio, count(*), avg(s.distance), "
        "max(s.distance), avg(f.credit_utilization_ratio) "
        "from segment_profiles p join customer_segments s using (segment_id) "
        "join customer_features f using (customer_id) group by all order by 1",
    )
    staged = _query(settings, "select count(*) from stg_customers")[0][0]
    assert sum(p[1] for p in profiles) == staged
    assert sum(p[2] for p in profiles) == pytest.approx(1.0)
    for _, count, _, avg_d, max_d, utilization, joined, mean_d, top_d, mean_u in profiles:
        assert count == joined
        assert (avg_d, max_d) == (pytest.approx(mean_d), pytest.approx(top_d))
        assert utilization == pytest.approx(mean_u)


def test_segment_profiles_has_exactly_the_columns_its_generated_contract_declares(workspace):
    _, settings, _ = workspace
    [model] = yaml.safe_load(contract_dbt.render_profiles_yaml())["models"]
    declared = [(c["name"], c["data_type"].upper()) for c in model["columns"]]
    assert [c[:2] for c in _query(settings, "describe segment_profiles")] == declared
    features = [c[0] for c in _query(settings, "describe customer_features")][1:]
    figures = ["model_version", "segment_id", "segment_name", "customer_count"]
    figures += ["customer_share", "avg_distance", "max_distance"]
    assert [name for name, _ in declared] == figures + [f"avg_{f}" for f in features]


def test_plain_dbt_build_skips_scoring_and_keeps_the_scores(workspace, copy_of):
    version = _current_version(copy_of)
    build_features(copy_of, select=None, quiet=True)  # `dbt build`, no version var
    built = _built_nodes(copy_of)
    assert "model.segmentation.customer_features" in built
    assert not {n for n in built if "customer_segments" in n or "segment_profiles" in n}
    assert _query(copy_of, "select distinct model_version from customer_segments") == [(version,)]


def test_dbt_given_only_a_version_scores_with_it_without_reading_the_pointer(copy_of):
    version = _current_version(copy_of)
    _query(copy_of, "drop table customer_segments")
    (Path(copy_of.model_store) / POINTER_KEY).unlink()  # nothing is current any more
    build_features(
        copy_of,
        select=SCORING_SELECTION,
        vars={
            "segmentation_model_version": version,
            "segmentation_model_store": copy_of.model_store,
        },
        quiet=True,
    )
    assert _query(copy_of, "select distinct model_version from customer_segments") == [(version,)]
    assert _query(copy_of, "select count(*) from segment_profiles")[0][0] >= 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"segmentation_model_manifest_sha256": "0" * 64}, "sha256 differs from the pointer's"),
        ({"segmentation_model_version": "v20990101T000000Z-deadbeef"}, "has no manifest.json"),
    ],
    ids=["wrong_manifest_sha256", "unknown_version"],
)
def test_dbt_refuses_a_version_it_cannot_verify_and_keeps_the_scores(copy_of, override, message):
    version = _current_version(copy_of)
    vars = {"segmentation_model_version": version, "segmentation_model_store": copy_of.model_store}
    with pytest.raises(FeatureBuildError, match="customer_segments: ModelContractError") as err:
        build_features(copy_of, select=SCORING_SELECTION, vars=vars | override, quiet=True)
    assert message in str(err.value)
    assert _query(copy_of, "select distinct model_version from customer_segments") == [(version,)]


def test_score_refuses_a_model_whose_bytes_differ_from_the_manifest(copy_of, capsys):
    model = Path(copy_of.model_store) / version_key(_current_version(copy_of), "model.onnx")
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, copy_of, Path(copy_of.warehouse).parent)
        assert main(["score", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "model.onnx: sha256 differs from the manifest's" in captured.err  # the CLI's line
    assert "sha256 differs" in captured.out  # dbt's own report
    # The failed build left the previous scores in place.
    assert _query(copy_of, "select count(distinct model_version) from customer_segments") == [(1,)]


@pytest.mark.parametrize("command", ["features", "score", "train"])
def test_long_commands_draw_their_stage_and_elapsed_time_on_a_terminal(copy_of, command, caplog):
    caplog.set_level(logging.INFO, logger="training.candidate")  # the CLI logs at INFO
    drawn = io.StringIO()
    console = Console(file=drawn, force_terminal=True, width=200)
    parser = argparse.ArgumentParser()
    module = importlib.import_module(f"training.commands.{command}")
    module.add_arguments(parser)
    argv = {"features": ["--quiet"], "score": ["--quiet"], "train": ["--no-select", "--no-promote"]}
    with contextlib.redirect_stdout(io.StringIO()):
        assert module.run(parser.parse_args(argv[command]), copy_of, console=console) == 0
    expected = {
        "features": "dbt build of customers.csv",
        "score": "dbt build customer_segments+ with v",
        "train": "compile the feature SQL and load the training sample",
    }
    assert command in drawn.getvalue()
    assert expected[command] in drawn.getvalue()
    assert "0:00:" in drawn.getvalue()  # the time elapsed
    if command == "train":
        assert "publish" in drawn.getvalue()  # every stage, up to the last
