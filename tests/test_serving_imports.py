"""The serving path stays light: importing and running the functions loads only the core,
numpy, onnxruntime and the framework (no scikit-learn, dbt, DuckDB, SQL parser, onnx)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = (
    "sklearn",
    "skl2onnx",
    "onnx",
    "dbt",
    "duckdb",
    "sqlglot",
    "pyarrow",
    "scipy",
    "pandas",
    "matplotlib",
    "joblib",
    "training",
)

_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("entry", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.SERVICE.holder.get()  # load and verify the model: the whole serving path
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("entry", ["functions/main.py", "functions/aws_lambda.py"])
def test_the_serving_path_imports_no_training_libraries(shared_model_store, entry):
    env = {"SEGMENTATION_MODEL_STORE": shared_model_store.uri, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(REPO / entry)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    modules = set(json.loads(out.stdout.splitlines()[-1]))
    assert "onnxruntime" in modules and "numpy" in modules
    loaded = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)
    assert loaded == []
