"""Time model selection on 1M synthetic customers in an 8-dimensional clustering space.

Usage: ``.venv/bin/python bench/bench_selection.py [--rows 1000000] [--dims 8] [--repeat 1]``

Selection samples (``training.selection.SelectionConfig``): the k sweep and the Gaussian
mixture fit 50,000 rows; every metric, the agglomerative and DBSCAN fits and every
bootstrap refit use 5,000 rows. So selection costs the same at 1M or 10M rows; only the
final fit of the chosen model and its assignment of every row grow with the data.
The target (issue 4): the whole training with selection on 1M customers in <= 60 s.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from training.clustering.selection import SelectionConfig, select_model
from training.clustering.stability import assess_stability
from training.clustering.surrogate import fit_servable
from training.segments.explain import segment_profiles
from training.segments.naming import name_segments


def synthetic(rows: int, dims: int, seed: int) -> np.ndarray:
    """Five segments of unequal spread and size, overlapping a little (not toy blobs)."""
    X, _ = make_blobs(
        rows,
        n_features=dims,
        centers=5,
        cluster_std=[1.0, 1.5, 2.0, 1.2, 2.5],
        center_box=(-8, 8),
        random_state=seed,
    )
    return X


def run_once(X: np.ndarray, seed: int, config: SelectionConfig) -> dict[str, float]:
    times = {}
    t = time.perf_counter()
    result = select_model(X, random_state=seed, config=config)
    times["select (sweep + algorithms + stability)"] = time.perf_counter() - t
    t = time.perf_counter()
    model = fit_servable(result.chosen, X, random_state=seed)
    times[f"final fit of {result.chosen.label} on all rows"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = model.predict(X)
    times["assign every row (nearest centroid)"] = time.perf_counter() - t
    t = time.perf_counter()
    sample = X[np.random.default_rng(seed).permutation(len(X))[: config.eval_rows]]
    assess_stability(result.chosen, sample, n_boot=20, random_state=seed)
    times["stability of the chosen model, B=20"] = time.perf_counter() - t
    t = time.perf_counter()
    names = [f"f{i}" for i in range(X.shape[1])]
    prof = segment_profiles(X, labels, names, model.n_clusters)
    name_segments(prof.z, names)
    times["profiles + naming on all rows"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    run_once.result = result  # the tables of the last run are printed
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("-v", "--verbose", action="store_true", help="progress of each step")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    config = SelectionConfig()
    X = synthetic(args.rows, args.dims, args.seed)
    print(
        f"# Selection benchmark: {len(X):,} rows x {X.shape[1]} dims; samples: fit "
        f"{config.fit_rows:,}, evaluation/pairwise/bootstrap {config.eval_rows:,}; "
        f"B={config.n_boot} per candidate"
    )
    runs = [run_once(X, args.seed, config) for _ in range(args.repeat)]
    print(f"\n| step | median seconds over {args.repeat} run(s) |\n|---|---|")
    for step in runs[0]:
        print(f"| {step} | {statistics.median(r[step] for r in runs):.1f} |")
    result = run_once.result
    print("\n| k | silhouette | CH | DB | min share | ARI mean | eligible |")
    print("|---|---|---|---|---|---|---|")
    for s in result.k_scores:
        print(
            f"| {s.n_segments} | {s.silhouette:.3f} | {s.calinski_harabasz:.0f} | "
            f"{s.davies_bouldin:.3f} | {s.min_share:.1%} | {s.ari_mean:.3f} | {s.eligible} |"
        )
    print("\n| candidate | segments | silhouette | noise | agreement | ARI mean | eligible |")
    print("|---|---|---|---|---|---|---|")
    for s in result.algorithm_scores:
        print(
            f"| {s.spec.label} | {s.n_segments} | {s.silhouette:.3f} | {s.noise_share:.1%} | "
            f"{s.agreement:.3f} | {s.ari_mean:.3f} | {s.eligible} |"
        )
    print(f"\nChosen: {result.chosen.label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
