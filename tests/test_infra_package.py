"""Each deployable holds exactly what its function needs, fits its budget, and runs.

The oracles are independent of ``infra/package.py``: the expected contents are written
here, pins are read from ``requirements/constraints.txt`` and ``pyproject.toml`` directly,
and the golden segment ids come from the trained bundle's own manifest on disk.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from fixtures.bundles import current_manifest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "infra"))
import package  # noqa: E402

ADAPTER = {"gcp": "main.py", "aws": "aws_lambda.py"}
#: What predict and health may require, by platform (Lambda's runtime ships boto3).
SERVE_REQUIREMENTS = {
    "gcp": {"onnxruntime", "numpy", "orjson", "functions-framework", "google-cloud-storage"},
    "aws": {"onnxruntime", "numpy", "orjson"},
}
TRAINING_LIBRARIES = ("sklearn", "duckdb", "dbt", "scipy", "skl2onnx", "sqlglot", "pyarrow")
MIB = 2**20


def _name(spec: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)[0]).lower()


def _lock() -> dict[str, str]:
    lines = (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
    return {_name(line): line.split("==")[1] for line in lines if "==" in line}


def _pinned(out: Path) -> dict[str, str]:
    """``{name: version}`` of the package's requirements.txt; every line must be ``==``."""
    lines = (out / "requirements.txt").read_text().splitlines()
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+(\[[^\]]+\])?==[^=\s]+", line) for line in lines)
    return {_name(line): line.split("==")[1] for line in lines}


def _files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize("function", ["predict", "health"])
@pytest.mark.parametrize("platform", ["gcp", "aws"])
def test_serving_packages_hold_the_adapter_the_core_and_serve_pins_only(
    tmp_path, platform, function
):
    out = package.package(platform, function, tmp_path / "out")
    top = {p.name for p in out.iterdir()}
    assert top == {ADAPTER[platform], "openapi.yaml", "segmentation", "requirements.txt"}
    assert _files(out / "segmentation") == _files(ROOT / "src" / "segmentation")
    assert (out / ADAPTER[platform]).read_bytes() == (
        ROOT / "functions" / ADAPTER[platform]
    ).read_bytes()
    pins = _pinned(out)
    assert set(pins) == SERVE_REQUIREMENTS[platform]
    lock = _lock()
    assert pins == {name: lock[name] for name in pins}


@pytest.mark.parametrize("platform", ["gcp", "aws"])
def test_the_retrain_package_adds_training_the_dbt_project_and_the_train_pins(tmp_path, platform):
    out = package.package(platform, "retrain", tmp_path / "out")
    top = {p.name for p in out.iterdir()}
    assert top == {ADAPTER[platform], "segmentation", "training", "dbt_project", "requirements.txt"}
    assert _files(out / "training") == _files(ROOT / "training")
    models = _files(out / "dbt_project" / "models")
    assert "marts/customer_features.sql" in models
    assert models == _files(ROOT / "dbt_project" / "models")
    pins = _pinned(out)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    train = {_name(spec) for spec in extras["optional-dependencies"]["train"]}
    store_client = {"gcp": "google-cloud-storage", "aws": "boto3"}[platform]
    assert {"scikit-learn", "duckdb", "dbt-duckdb", store_client} <= set(pins)
    assert train <= set(pins)
    lock = _lock()
    assert pins == {name: lock[name] for name in pins}


def test_the_retrain_package_leaves_out_what_dbt_generated(tmp_path, monkeypatch):
    # A repository whose dbt project holds build output, like one after `make run`.
    fake = tmp_path / "repo"
    fake.mkdir()
    for name in ("functions", "src", "training", "requirements", "pyproject.toml"):
        (fake / name).symlink_to(ROOT / name)
    (fake / "dbt_project").mkdir()
    for entry in (ROOT / "dbt_project").iterdir():
        if entry.name not in {"target", "logs", "dbt_packages"}:
            (fake / "dbt_project" / entry.name).symlink_to(entry)
    for generated in ("target/manifest.json", "logs/dbt.log", "dbt_packages/x/dbt_project.yml"):
        (fake / "dbt_project" / generated).parent.mkdir(parents=True, exist_ok=True)
        (fake / "dbt_project" / generated).write_text("{}")
    monkeypatch.setattr(package, "ROOT", fake)
    out = package.package("gcp", "retrain", tmp_path / "out")
    assert {p.name for p in (out / "dbt_project").iterdir()} == {
        p.name for p in (ROOT / "dbt_project").iterdir()
    } - {"target", "logs", "dbt_packages", ".user.yml"}
    assert (out / "dbt_project" / "models" / "marts" / "customer_features.sql").is_file()


def test_the_default_out_is_build_deploy_platform_function():
    assert package.default_out("aws", "retrain") == ROOT / "build" / "deploy" / "aws" / "retrain"


def test_package_refuses_to_replace_a_folder_that_is_not_a_package(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a package"):
        package.package("aws", "predict", tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_the_cli_builds_all_three_and_prints_their_files_and_sizes(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "package.py"), "aws", "all", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["aws/predict", "aws/health", "aws/retrain"]
    for line, function in zip(lines, ("predict", "health", "retrain"), strict=True):
        files = sum(1 for p in (tmp_path / function).rglob("*") if p.is_file())
        assert f" {files} files " in line
        assert re.search(r"code \d+\.\d MiB", line)


@pytest.mark.parametrize(
    ("installed", "status"),
    [(package.PREDICT_BUDGET_BYTES, 0), (package.PREDICT_BUDGET_BYTES + 1, 1)],
)
def test_measure_fails_naming_the_package_its_size_and_the_budget_when_predict_is_over(
    tmp_path, monkeypatch, capsys, installed, status
):
    monkeypatch.setattr(package, "installed_size", lambda platform, function: installed)
    assert package.main(["aws", "predict", str(tmp_path / "out"), "--measure"]) == status
    err = capsys.readouterr().err
    if status:
        assert "aws/predict" in err
        assert str(installed) in err
        assert str(200 * MIB) in err
    else:
        assert err == ""


def test_gcp_deployable_answers_health_without_training_libraries(tmp_path):
    out = package.package("gcp", "health", tmp_path / "gcp")
    probe = f"""
import json, sys
sys.path.insert(0, {str(out)!r})
from functions_framework import create_app
client = create_app("health", {str(out / "main.py")!r}).test_client()
status = client.get("/").status_code
import segmentation
heavy = [m for m in ("sklearn", "duckdb", "dbt", "sqlglot", "skl2onnx", "training")
         if m in sys.modules]
print(json.dumps({{"status": status, "core": segmentation.__file__, "heavy": heavy}}))
"""
    env = {"SEGMENTATION_MODEL_STORE": str(tmp_path / "empty-store"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 503  # no model in an empty store: not ready, not a crash
    assert result["core"].startswith(str(out))
    assert result["heavy"] == []


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["gcp", "aws"])
def test_predict_installed_for_python_312_on_linux_fits_the_budget(platform):
    size = package.installed_size(platform, "predict")
    # onnxruntime's and numpy's wheels alone are well above this: something was installed.
    assert 100 * MIB < size <= 200 * MIB


@pytest.mark.slow
def test_install_puts_cpython_312_manylinux_wheels_into_the_package(tmp_path):
    out = tmp_path / "predict"
    assert package.main(["aws", "predict", str(out), "--install"]) == 0
    binaries = [p.name for p in (out / "onnxruntime").rglob("*.so")]
    assert any(name.endswith(".cpython-312-x86_64-linux-gnu.so") for name in binaries)
    assert not any("cpython-311" in name for name in binaries)
    (wheel,) = (out).glob("onnxruntime-*.dist-info/WHEEL")
    assert "Tag: cp312-cp312-manylinux_" in wheel.read_text()
    assert not [p for p in out.iterdir() if p.name.split("-")[0] in TRAINING_LIBRARIES]


_VENV_PROBE = """
import importlib.util, json, sys, time
package, store_root, body_file, platform, modules = sys.argv[1:]
sys.path.insert(0, package)
import numpy as np
import segmentation
from segmentation.bundle import load_bundle
from segmentation.schema import FIELD_NAMES
from segmentation.store import LocalStore

store = LocalStore(store_root)
pointer, _ = store.read_pointer()
bundle = load_bundle(store, pointer)
rows = [row["inputs"] for row in bundle.manifest.golden_rows]
columns = {
    name: np.array([np.nan if r[name] is None else r[name] for r in rows], dtype=np.float64)
    for name in FIELD_NAMES
}
core_ids = bundle.scorer.score(columns).segment_id.tolist()

body = open(body_file).read()
if platform == "gcp":
    from functions_framework import create_app

    client = create_app("predict", package + "/main.py").test_client()

    def post():
        response = client.post("/", data=body, content_type="application/json")
        return response.status_code, response.get_data(as_text=True)
else:
    import aws_lambda

    event = {
        "rawPath": "/", "requestContext": {"http": {"method": "POST", "path": "/"}},
        "headers": {"content-type": "application/json"}, "body": body,
        "isBase64Encoded": False,
    }

    def post():
        result = aws_lambda.predict(event, None)
        return result["statusCode"], result["body"]

deadline = time.monotonic() + 60
status, text = post()
while status == 503 and time.monotonic() < deadline:  # the model loads in the background
    time.sleep(0.2)
    status, text = post()
function_ids = [r["segment_id"] for r in json.loads(text)["results"]] if status == 200 else text
print(json.dumps({
    "core": segmentation.__file__,
    "numpy": np.__file__,
    "core_ids": core_ids,
    "status": status,
    "function_ids": function_ids,
    "importable": [m for m in modules.split(",") if importlib.util.find_spec(m) is not None],
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["gcp", "aws"])
def test_the_predict_package_in_an_empty_venv_scores_the_golden_rows(
    tmp_path, trained_model_store, platform
):
    out = package.package(platform, "predict", tmp_path / "predict")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"),
            *("--disable-pip-version-check", "-c", str(ROOT / "requirements" / "constraints.txt")),
            *("-r", str(out / "requirements.txt")),
        ],
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    golden = current_manifest(trained_model_store)["golden_rows"]
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"customers": [row["inputs"] for row in golden]}))
    done = subprocess.run(
        [
            *(str(python), "-I", "-c", _VENV_PROBE, str(out), str(trained_model_store.root)),
            *(str(body), platform, ",".join((*TRAINING_LIBRARIES, "training"))),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "SEGMENTATION_MODEL_STORE": str(trained_model_store.root)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["core"].startswith(str(out))
    assert result["numpy"].startswith(str(venv))
    want = [row["segment_id"] for row in golden]
    assert len(set(want)) > 1  # the golden rows cover more than one segment
    assert result["core_ids"] == want
    assert result["status"] == 200
    assert result["function_ids"] == want
    assert result["importable"] == []
