"""Assemble a function deployable: the adapter, the shared core and pinned requirements.

The folder it writes is exactly what Cloud Functions (source upload) or Lambda (zip) gets:
``main.py`` / ``aws_lambda.py``, ``openapi.yaml``, the ``segmentation`` core package and a
``requirements.txt`` holding onnxruntime, numpy and the platform's pieces only. Nothing
from ``training/`` is copied, so scikit-learn, dbt and DuckDB cannot reach serving.

    python infra/package.py gcp build/deploy/gcp
    python infra/package.py aws build/deploy/aws
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = {"gcp": ["main.py"], "aws": ["aws_lambda.py"]}
#: The object-store client each platform needs to read gs:// or s3:// model stores.
#: Lambda's Python runtime ships boto3, but a pinned copy keeps behaviour reproducible.
STORE_CLIENT = {"gcp": "google-cloud-storage", "aws": "boto3"}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def requirements(platform: str) -> list[str]:
    """The deployable's requirements: functions/requirements.txt plus the store client."""
    base = [
        line.strip()
        for line in (ROOT / "functions" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    if platform == "aws":  # Lambda invokes the handler directly: no HTTP framework needed
        base = [r for r in base if not r.lower().startswith("functions-framework")]
    client = STORE_CLIENT[platform]
    return [*base, f"{client}=={_pins()[client]}"]


def package(platform: str, out: Path) -> Path:
    """Write the deployable for ``platform`` into ``out`` (replaced if it exists)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in [*ADAPTERS[platform], "openapi.yaml"]:
        shutil.copy2(ROOT / "functions" / name, out / name)
    shutil.copytree(
        ROOT / "src" / "segmentation",
        out / "segmentation",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    (out / "requirements.txt").write_text("\n".join(requirements(platform)) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("platform", choices=sorted(ADAPTERS))
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(package(args.platform, args.out))


if __name__ == "__main__":
    main()
