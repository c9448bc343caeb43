"""The deployables hold the adapter, the core and serve-only requirements, and they run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "infra"))
import package  # noqa: E402

HEAVY = ("scikit-learn", "sklearn", "dbt", "duckdb", "sqlglot", "skl2onnx", "onnx==", "pyarrow")


@pytest.mark.parametrize("platform", ["gcp", "aws"])
def test_deployable_holds_adapter_core_and_only_serve_requirements(tmp_path, platform):
    out = package.package(platform, tmp_path / platform)
    reqs = (out / "requirements.txt").read_text().lower().splitlines()
    assert any(r.startswith("onnxruntime==") for r in reqs)
    assert any(r.startswith("numpy==") for r in reqs)
    assert not [r for r in reqs for h in HEAVY if r.startswith(h)]
    assert (out / "segmentation" / "api.py").is_file()
    assert not (out / "training").exists()
    assert (out / package.ADAPTERS[platform][0]).is_file()


def test_gcp_deployable_answers_health_without_training_libraries(tmp_path):
    out = package.package("gcp", tmp_path / "gcp")
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


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads !Ref, !Sub, !GetAtt as plain values: enough to check the template's shape."""


_CloudFormationLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_sam_template_handlers_exist_in_the_lambda_adapter():
    template = yaml.load(
        (ROOT / "infra" / "aws" / "template.yaml").read_text(), Loader=_CloudFormationLoader
    )
    source = (ROOT / "functions" / "aws_lambda.py").read_text()
    handlers = [
        res["Properties"]["Handler"]
        for res in template["Resources"].values()
        if res["Type"] == "AWS::Serverless::Function"
    ]
    assert handlers
    for handler in handlers:
        module, function = handler.split(".")
        assert module == "aws_lambda"
        assert f"\ndef {function}(" in source
