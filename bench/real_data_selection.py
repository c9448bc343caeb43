"""Model selection, stability and feature-set comparison on the real CC GENERAL data.

Usage: ``.venv/bin/python bench/real_data_selection.py [--csv PATH] [--seed 42]``

Loads ``../shared/data/cc_general.csv`` (never copied into the repository) and prints:

1. the feature-set comparison (raw scaled columns as in the seed notebook, log
   transforms, ratios only, the full agreed set, compact behavioural subsets), on the
   agreed engineered features computed in numpy (same formulas as
   ``customer_features.sql``) with the training preprocessing idea (median imputation,
   quantile clipping 0.5/99.5%, standard scaling, PCA keeping >= 80% of the variance);
2. what ``segmentation train`` does by default on that file, by running the same code:
   ``dbt build`` into a temporary warehouse, then ``training.fit.fit_model`` with the
   default ``TrainingParams`` (``--cluster-features`` overrides the clustering features):
   the selection tables (k sweep, algorithms), the chosen model's silhouette on every row
   in its clustering space and in a 2-D PCA projection, bootstrap ARI and per-segment
   Jaccard, segment shares, names and descriptions.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from _features_numpy import numpy_features  # noqa: E402  (bench/ is sys.path[0])

from segmentation import Settings  # noqa: E402
from segmentation.schema import FIELD_NAMES, RAW_NAMES  # noqa: E402
from segmentation.store import LocalStore  # noqa: E402
from training.clustering.stability import assess_stability  # noqa: E402
from training.clustering.surrogate import ClusterSpec  # noqa: E402
from training.features import feature_names  # noqa: E402
from training.model.params import (  # noqa: E402
    BEHAVIOUR_FEATURES,
    TrainingParams,
    parse_cluster_features,
)

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "cc_general.csv"
MONEY = (
    "balance",
    "purchases",
    "oneoff_purchases",
    "installments_purchases",
    "cash_advance",
    "credit_limit",
    "payments",
    "minimum_payments",
)
FREQUENCIES = (
    "balance_frequency",
    "purchases_frequency",
    "oneoff_purchases_frequency",
    "purchases_installments_frequency",
    "cash_advance_frequency",
)
RATIOS = (
    "credit_utilization_ratio",
    "purchases_per_month",
    "average_ticket",
    "oneoff_purchase_share",
    "installment_purchase_share",
    "cash_advance_ratio",
    "cash_advance_intensity",
    "payment_to_minimum_ratio",
    "full_payment_share",
    "payment_consistency_index",
)
FULL = feature_names()  # every feature of customer_features.yml
#: Compact behavioural subsets: what customers do (buy, draw cash, repay), one or two
#: features per behaviour, without the near-duplicates of the full set (the full set has
#: six purchase features and three cash-advance features, which PCA folds together).
BEHAVIOUR_6 = BEHAVIOUR_FEATURES  # the training default, so the table measures what ships
BEHAVIOUR_7 = (*BEHAVIOUR_6, "credit_utilization_ratio")
BEHAVIOUR_9 = (*BEHAVIOUR_7, "log_balance", "log_credit_limit")


def load_raw(path: Path) -> dict[str, np.ndarray]:
    """Staged columns (snake_case) as float arrays; blanks become NaN."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {
        name: np.array([float(r[raw]) if r[raw].strip() else np.nan for r in rows])
        for name, raw in zip(FIELD_NAMES, RAW_NAMES, strict=True)
    }


def preprocess(X: np.ndarray, variance: float | None, clip: bool, seed: int) -> np.ndarray:
    """Median imputation, optional 0.5/99.5% clipping, scaling, optional PCA."""
    X = SimpleImputer(strategy="median").fit_transform(X)
    if clip:
        lo, hi = np.quantile(X, [0.005, 0.995], axis=0)
        X = np.clip(X, lo, hi)
    X = StandardScaler().fit_transform(X)
    if variance is not None:
        X = PCA(n_components=variance, svd_solver="full", random_state=seed).fit_transform(X)
    return X


def pca2_silhouette(X: np.ndarray, labels: np.ndarray, seed: int) -> float:
    xy = PCA(n_components=2, random_state=seed).fit_transform(X)
    return float(silhouette_score(xy, labels))


def compare_feature_sets(raw, feats, seed: int, n_boot: int) -> None:
    """Silhouette (clustering space and 2-D PCA) and bootstrap ARI, KMeans k=3..5."""
    sets = {
        "raw scaled, no PCA (seed notebook)": (np.column_stack(list(raw.values())), None, False),
        "raw + clip + PCA80": (np.column_stack(list(raw.values())), 0.80, True),
        "log money + freq + counts": (
            np.column_stack(
                [feats[f"log_{m}"] for m in MONEY]
                + [feats[f] for f in FREQUENCIES]
                + [np.log1p(raw["cash_advance_trx"]), np.log1p(raw["purchases_trx"])]
                + [raw["prc_full_payment"], raw["tenure"]]
            ),
            0.80,
            True,
        ),
        "ratios + frequencies only": (
            np.column_stack([feats[f] for f in (*RATIOS, *FREQUENCIES)]),
            0.80,
            True,
        ),
        "all engineered features (24)": (np.column_stack([feats[f] for f in FULL]), 0.80, True),
        "behaviour 6": (np.column_stack([feats[f] for f in BEHAVIOUR_6]), 0.80, True),
        "behaviour 6, no PCA": (np.column_stack([feats[f] for f in BEHAVIOUR_6]), None, True),
        "behaviour 7 (+utilisation)": (
            np.column_stack([feats[f] for f in BEHAVIOUR_7]),
            0.80,
            True,
        ),
        "behaviour 9 (+balance, limit)": (
            np.column_stack([feats[f] for f in BEHAVIOUR_9]),
            0.80,
            True,
        ),
    }
    print("\n## Feature sets (KMeans n_init=10 on all 8,950 rows; ARI: B bootstrap refits)")
    print(
        f"| feature set | dims | k | silhouette | silhouette 2-D PCA | ARI mean | ARI min "
        f"| min share |  (B={n_boot})"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (X, variance, clip) in sets.items():
        Z = preprocess(X, variance, clip, seed)
        for k in (3, 4, 5):
            labels = KMeans(k, n_init=10, random_state=seed).fit_predict(Z)
            stab = assess_stability(ClusterSpec("kmeans", k), Z, n_boot=n_boot, random_state=seed)
            share = np.bincount(labels).min() / len(labels)
            print(
                f"| {name} | {Z.shape[1]} | {k} | {silhouette_score(Z, labels):.3f} "
                f"| {pca2_silhouette(Z, labels, seed):.3f} | {stab.ari_mean:.3f} "
                f"| {stab.ari_min:.3f} | {share:.1%} |"
            )


def _verdict(score) -> str:
    return "yes" if score.eligible else "; ".join(score.reasons)


def print_selection(result) -> None:
    print("\n## k sweep (KMeans)")
    print("| k | inertia | silhouette | CH | DB | min share | ARI mean | ARI min | eligible |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in result.k_scores:
        print(
            f"| {s.n_segments} | {s.inertia:.4g} | {s.silhouette:.3f} | "
            f"{s.calinski_harabasz:.0f} | {s.davies_bouldin:.3f} | {s.min_share:.1%} | "
            f"{s.ari_mean:.3f} | {s.ari_min:.3f} | {_verdict(s)} |"
        )
    print("\n## Algorithms at the chosen k (served labels)")
    print(
        "| candidate | segments | silhouette | CH | DB | noise | min share | agreement "
        "| ARI mean | min Jaccard | eligible |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in result.algorithm_scores:
        print(
            f"| {s.spec.label} | {s.n_segments} | {s.silhouette:.3f} | "
            f"{s.calinski_harabasz:.0f} | {s.davies_bouldin:.3f} | {s.noise_share:.1%} | "
            f"{s.min_share:.1%} | {s.agreement:.3f} | {s.ari_mean:.3f} | {s.jaccard_min:.3f} "
            f"| {_verdict(s)} |"
        )
    print(f"\nChosen: {result.chosen.label}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--boot", type=int, default=20, help="bootstrap replicates")
    parser.add_argument("--skip-feature-sets", action="store_true")
    parser.add_argument(
        "--cluster-features",
        help="comma list or 'all' (default: training's default, the six behaviour features)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # 8,950 rows: OpenMP threads only add contention on a shared 2-core machine.
    with threadpool_limits(limits=1, user_api="openmp"):
        return _run(args)


def _train_default(args: argparse.Namespace, root: Path):
    """What `segmentation train` fits on the file: dbt features, then `fit_model`."""
    from training.features import build_features, compiled_feature_sql
    from training.features.rows import load_training_data
    from training.features.sql_onnx import compile_features
    from training.fit import fit_model

    settings = Settings(
        data=str(args.csv),
        warehouse=str(root / "wh.duckdb"),
        dbt_target_path=str(root / "target"),
        dbt_log_path=str(root / "logs"),
    )
    with contextlib.redirect_stdout(io.StringIO()):  # dbt's per-model log lines
        build_features(settings)
    names = tuple(compile_features(compiled_feature_sql(settings), FIELD_NAMES).feature_names)
    data = load_training_data(settings, names)
    overrides = {"seed": args.seed, "stability_boot": args.boot}
    if args.cluster_features is not None:
        overrides["cluster_features"] = parse_cluster_features(args.cluster_features)
    params = TrainingParams(**overrides)
    fitted = fit_model(data, names, params, LocalStore(root / "store"), lambda stage: None)
    return params, names, fitted


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    raw = load_raw(args.csv)
    feats = numpy_features(raw)
    print(f"# Real data: {len(raw['balance']):,} customers from {args.csv.name}")
    if not args.skip_feature_sets:
        compare_feature_sets(raw, feats, args.seed, n_boot=10)

    with tempfile.TemporaryDirectory(prefix="real-data-") as tmp:
        params, names, fitted = _train_default(args, Path(tmp))
    choice, ev, trust = fitted.choice, fitted.evaluation, fitted.trust
    clustered = names if params.cluster_features is None else params.cluster_features
    Z, labels = ev.embedding, ev.labels
    print(
        f"\n# What `segmentation train` fits by default: {len(clustered)} clustering features "
        f"({', '.join(clustered)}), {Z.shape[1]} PCA components "
        f"({ev.explained_variance:.1%} of the variance)"
    )
    print_selection(choice.selection)
    stab = trust.stability
    print(f"\n## Chosen model {choice.spec.label}, served as {choice.served_as}")
    print(f"- silhouette, clustering space, all {len(Z):,} rows: {silhouette_score(Z, labels):.3f}")
    print(f"- silhouette, 2-D PCA projection: {pca2_silhouette(Z, labels, args.seed):.3f}")
    # Published figures are usually KMeans fitted in the 2-D projection itself.
    xy = PCA(n_components=2, random_state=args.seed).fit_transform(Z)
    refit = KMeans(choice.clusterer.n_clusters, n_init=10, random_state=args.seed)
    print(
        "- silhouette, KMeans refitted in the 2-D projection: "
        f"{silhouette_score(xy, refit.fit_predict(xy)):.3f}"
    )
    print(
        f"- bootstrap on {stab.rows:,} rows (B={stab.n_boot}): ARI mean {stab.ari_mean:.3f}, "
        f"min {stab.ari_min:.3f}; surrogate agreement {choice.surrogate_agreement:.3f}"
    )
    print("\n| id | name | share | bootstrap Jaccard | band | description |")
    print("|---|---|---|---|---|---|")
    for j, (nm, ex) in enumerate(zip(trust.naming.names, trust.explanations, strict=True)):
        seg = next((s for s in stab.segments if s.cluster == j), None)
        jac, band = (f"{seg.jaccard_mean:.3f}", seg.band) if seg else ("n/a", "n/a")
        print(
            f"| {trust.ids.ids[j]} | {nm.name} | {ex.share:.1%} | {jac} | {band} "
            f"| {ex.description} |"
        )
    print(f"\nTotal time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
