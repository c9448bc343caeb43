"""The engineered features as the dbt project documents them (``customer_features.yml``).

The YAML beside the feature model is the one list of feature names and descriptions:
the manifest, the generated dbt files, tests and benchmarks read it from here instead of
copying the names.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from training.features._dbt import DBT_PROJECT_DIR
from training.features.warehouse import FEATURE_MODEL

FEATURES_YAML = DBT_PROJECT_DIR / "models" / "marts" / f"{FEATURE_MODEL}.yml"


@cache
def _columns(path: Path) -> tuple[tuple[str, str], ...]:
    import yaml  # dbt-core's dependency

    doc = yaml.safe_load(path.read_text()) or {}
    for model in doc.get("models", []):
        if model.get("name") == FEATURE_MODEL:
            return tuple(
                (str(c["name"]), " ".join(str(c.get("description", "")).split()))
                for c in model.get("columns", [])
                if c["name"] != "customer_id"
            )
    return ()


def feature_names(path: Path = FEATURES_YAML) -> tuple[str, ...]:
    """The feature columns of ``customer_features``, in the YAML's order (no customer_id)."""
    return tuple(name for name, _ in _columns(path))


def feature_descriptions(path: Path = FEATURES_YAML) -> dict[str, str]:
    """Feature name -> its one-line description from the YAML."""
    return dict(_columns(path))
