"""Batch scoring in dbt: customer_segments and segment_profiles for ONE named model version.

The caller names the version (``segmentation score`` reads the store's pointer once) and
it reaches dbt as vars: the scores are then a function of the build's inputs, and the
version is in the lineage (the node's config in ``target/manifest.json``) and in every
row. The dbt Python model loads exactly that version and verifies it as serving does.
Without the vars dbt disables both models, so plain ``dbt build`` never guesses a model.

Bounded memory: ``customer_segments`` streams (its Python model returns an Arrow reader
that DuckDB consumes batch by batch), and the build runs with DuckDB's buffer pool capped
at :data:`SCORING_MEMORY_LIMIT`. Uncapped, the SQL models built from it (segment_history's
delete+insert and segment_profiles' join with customer_features, both hash joins on
customer_id) took 6.5 GB at 10M customers; capped, they spill to the warehouse's temporary
folder, which costs them time (``docs/benchmarks.md``: 0.9 GB and about 1.6x the time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from segmentation import FeatureBuildError, Settings
from training.features._dbt import dbt_args, run_build
from training.features.build import absolute, is_local
from training.features.warehouse import (
    FEATURE_MODEL,
    memory_limit,
    segment_counts,
    warehouse_has_table,
)

#: customer_segments and everything built from it (segment_profiles).
SCORING_SELECTION = "customer_segments+"
#: DuckDB's buffer pool during a scoring build (it spills past it; the process peaks at
#: about 0.4 GB above it with dbt and onnxruntime loaded). 1 GB or 2 GB spill as much and
#: take as long at 10M customers; uncapped takes 6.5 GB.
SCORING_MEMORY_LIMIT = "512MB"


@dataclass(frozen=True)
class ScoringResult:
    """What one scoring build wrote."""

    version: str
    seconds: float
    #: (segment id, segment name, customers), in segment id order.
    segments: tuple[tuple[int, str, int], ...]
    #: One line per warn-level test that found rows: ``"<test name>: <n> rows"``.
    warnings: tuple[str, ...] = ()

    @property
    def customers(self) -> int:
        return sum(n for *_, n in self.segments)


def scoring_vars(settings: Settings, version: str, manifest_sha256: str = "") -> dict[str, str]:
    """The dbt vars that name the model version batch scoring must load.

    Parameters
    ----------
    settings : the warehouse and the model store.
    version : the model version id.
    manifest_sha256 : its manifest's sha256 as the pointer records it; empty lets dbt
        identify the manifest by its bytes (what an analyst passing only a version gets).

    Returns
    -------
    dict
        ``segmentation_model_version``, ``segmentation_model_manifest_sha256``,
        ``segmentation_model_store`` and the warehouse, for ``--vars``.
    """
    return {
        "segmentation_data": absolute(settings.data),
        "segmentation_warehouse": absolute(settings.warehouse),
        "segmentation_model_store": absolute(settings.model_store),
        "segmentation_model_version": version,
        "segmentation_model_manifest_sha256": manifest_sha256,
    }


def build_scores(
    settings: Settings,
    version: str,
    manifest_sha256: str = "",
    *,
    target_path: Path | str | None = None,
    log_path: Path | str | None = None,
    quiet: bool = False,
) -> ScoringResult:
    """Score the warehouse's staged customers with model ``version`` (``dbt build``).

    Parameters
    ----------
    settings : where the warehouse, the model store and dbt's folders are.
    version, manifest_sha256 : the model version, as the store's pointer names it.
    target_path, log_path : dbt's folders, as in :func:`training.features.build_features`.
    quiet : show only dbt's errors instead of its progress lines.

    Returns
    -------
    ScoringResult
        The version, timing and customers per segment.

    Raises
    ------
    FeatureBuildError
        The features are not built yet, the bundle fails verification, or a model or an
        error-level test failed; the warehouse keeps its previous scores then.
    """
    warehouse = absolute(settings.warehouse)
    if is_local(warehouse) and not warehouse_has_table(warehouse, FEATURE_MODEL):
        raise FeatureBuildError(
            f"{warehouse}: expected {FEATURE_MODEL} to score, found none "
            "(run `segmentation features` first)"
        )
    args = dbt_args(
        "build",
        vars=scoring_vars(settings, version, manifest_sha256),
        select=SCORING_SELECTION,
        target_path=target_path or settings.dbt_target_path,
        log_path=log_path or settings.dbt_log_path,
        quiet=quiet,
    )
    with _capped(warehouse):
        seconds, warnings = run_build(args)
    return ScoringResult(
        version=version,
        seconds=seconds,
        segments=tuple(segment_counts(warehouse, version)),
        warnings=tuple(warnings),
    )


@contextmanager
def _capped(warehouse: str) -> Iterator[None]:
    """Cap the buffer pool of the DuckDB database dbt-duckdb will open in this process:
    dbt-duckdb connects with the default configuration, so DuckDB's instance cache hands
    it the database this connection holds open, with its ``memory_limit``. Remote
    warehouses are left alone."""
    if not is_local(warehouse):
        yield
        return
    with duckdb.connect(warehouse) as con, memory_limit(con, warehouse, SCORING_MEMORY_LIMIT):
        yield
