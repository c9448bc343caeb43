"""Raw-to-segment batch throughput: what a user runs, against the seed's scikit-learn pipeline.

Builds both graphs exactly as `segmentation train` does (the project's feature SQL compiled
to ONNX + the folded pipeline fitted on the real file's customers; ``model.onnx`` joined
from them, ``scoring.onnx`` by ``training.export.scoring_graph``), then scores N rows
resampled (seeded) from ``../shared/data/cc_general.csv``, every engine on the same rows in
the same run:

- ``seed pipeline`` (the baseline of issue 10): the seed's scikit-learn pipeline, mean
  imputation, StandardScaler, PCA keeping 90% of the variance and KMeans(4), fitted on the
  same 24 features computed with numpy; numpy features + ``Pipeline.predict`` in 1M-row
  chunks;
- ``project pipeline``: the same, with the project's fitted pipeline (clipping, the 6
  clustered features, PCA 80%), for reference;
- ``score_columns``: the public batch function (``segmentation.batch``) on each graph's
  ``Scorer`` as ``load_bundle`` makes it (one intra-op thread, chunks on one Python thread
  per core), at each ``--chunks`` size;
- ``default session``: each file the bundle ships run as a user loading it the ordinary way
  would, ``onnxruntime.InferenceSession(path)`` with default options, 1M rows per call,
  ``run(None, feeds)``;
- ``bulk session``: ``Scorer.for_bulk()`` (intra-op threads = cores), one run per chunk;
- ``skl2onnx``: skl2onnx's graph of the project's fitted pipeline alone (features given).

Usage: ``python bench/bench_scoring.py [--rows 1000000 10000000] [--chunks 16384 32768
65536] [--repeat 5] [--baseline-repeat 3] [--profile]``. Prints a Markdown table (median
of ``--repeat`` runs; ratios against the seed pipeline measured in the same run) and, with
``--profile``, onnxruntime's per-node kernel time of each graph on one thread.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from _features_numpy import numpy_features  # bench/ is sys.path[0]
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from segmentation import FIELD_NAMES, Settings
from segmentation.batch import score_columns
from segmentation.schema import FIELDS
from segmentation.scoring import Scorer
from training.export import converters, fold, join, parity
from training.export.scoring_graph import scoring_graph
from training.features import compiled_feature_sql
from training.features.sql_onnx import compile_features
from training.model.params import TrainingParams
from training.model.pipeline import build_pipeline

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cc_general.csv"
#: Rows per call for the default sessions and the scikit-learn pipelines.
CALL_ROWS = 1_000_000


def read_raw(path: Path) -> dict[str, np.ndarray]:
    """The real file's columns under their staged names, blanks as NaN."""
    header = path.read_text().splitlines()[0].split(",")
    table = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=range(1, len(header)))
    by_raw = {name: table[:, i] for i, name in enumerate(header[1:])}
    return {f.name: np.ascontiguousarray(by_raw[f.raw_name]) for f in FIELDS}


def seed_pipeline(seed: int = 42) -> Pipeline:
    """The seed project's pipeline: mean imputation, scaling, PCA 90%, KMeans(4)."""
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="mean")),
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=0.90, random_state=seed)),
            ("kmeans", KMeans(n_clusters=4, n_init=10, random_state=seed)),
        ]
    )


def build(raw: dict[str, np.ndarray]):
    """Both graphs, the fitted pipelines and the feature names (as training does)."""
    settings = Settings(data=str(DATA))
    with tempfile.TemporaryDirectory() as tmp:
        compiled = compile_features(
            compiled_feature_sql(settings, target_path=tmp, log_path=tmp), FIELD_NAMES
        )
    names = tuple(compiled.feature_names)
    X = parity.run(compiled.model, join.raw_feeds(raw))["features"]
    baseline = numpy_features(raw)
    expected = np.column_stack([baseline[n] for n in names])
    if not np.allclose(X, expected, rtol=1e-9, atol=0, equal_nan=True):
        raise SystemExit("numpy baseline features differ from the compiled SQL's")
    pipeline = build_pipeline(TrainingParams(), names).fit(X)
    folded = fold.folded_graph(pipeline)
    parity.prove_folded(folded, pipeline, X)
    model = join.join_graphs(compiled, folded)
    scoring = scoring_graph(model, compiled, folded)
    # The gate export runs: the scoring graph answers as the full graph on every row.
    full, pruned = parity.run(model, join.raw_feeds(raw)), parity.run(scoring, raw)
    for output in ("segment_id", "distances"):
        if not np.array_equal(full[output], pruned[output]):
            raise SystemExit(f"scoring graph: {output} differs from the full graph's")
    seed = seed_pipeline().fit(np.column_stack([baseline[n] for n in names]))
    return model, scoring, pipeline, seed, names


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return float(np.median(runs))


def profile_nodes(model_bytes: bytes, feeds: dict, runs: int = 5) -> list[tuple[str, float]]:
    """Per-node kernel time in ns per row, one intra-op thread, from onnxruntime's profiler."""
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[f"{e['args'].get('op_name')} {e['name'][: -len('_kernel_time')]}"] += e["dur"]
    scale = 1e3 / (runs * len(next(iter(feeds.values()))))  # us per run -> ns per row
    return [(k, v * scale) for k, v in sorted(per_node.items(), key=lambda kv: -kv[1])]


def _row(n: int, engine: str, chunk: int | str, rate: float, base: float) -> str:
    chunk = f"{chunk:,}" if isinstance(chunk, int) else chunk
    return f"| {n:,} | {engine} | {chunk} | {rate / 1e6:.2f} | {rate / base:.1f}x |"


def _in_calls(run, raw: dict[str, np.ndarray], rows: int):
    n = len(next(iter(raw.values())))
    return lambda: [run({k: v[i : i + rows] for k, v in raw.items()}) for i in range(0, n, rows)]


def bench_rows(raw, engines, names, chunks, repeat, baseline_repeat) -> list[str]:
    """Table rows for one data size, every engine on the same rows."""
    n = len(raw["balance"])
    seed, project, scorers, defaults, bulk, reference = engines

    def predict(pipeline):
        def run(part):
            f = numpy_features(part)
            pipeline.predict(np.column_stack([f[name] for name in names]))

        return _in_calls(run, raw, CALL_ROWS)

    base = n / timed(predict(seed), baseline_repeat)
    rows = [_row(n, "seed pipeline: numpy features + predict (baseline)", CALL_ROWS, base, base)]
    rate = n / timed(predict(project), baseline_repeat)
    rows.append(_row(n, "project pipeline: numpy features + predict", CALL_ROWS, rate, base))
    for file, scorer in scorers.items():
        for chunk in chunks:
            rate = n / timed(lambda s=scorer, c=chunk: score_columns(s, raw, c), repeat)
            rows.append(_row(n, f"`score_columns`, {file}", chunk, rate, base))
    for file, session in defaults.items():
        wanted = {i.name: raw[i.name] for i in session.get_inputs()}
        run = _in_calls(lambda part, s=session: s.run(None, part), wanted, CALL_ROWS)
        rows.append(_row(n, f"default session, {file}", CALL_ROWS, n / timed(run, repeat), base))
    cols = {k: raw[k] for k in bulk.input_names}
    run = _in_calls(lambda part: bulk.session.run(None, part), cols, max(chunks))
    rate = n / timed(run, repeat)
    rows.append(_row(n, "bulk session (`for_bulk`), scoring.onnx", max(chunks), rate, base))
    first = {k: v[:CALL_ROWS] for k, v in raw.items()}
    f = numpy_features(first)
    feats = np.column_stack([f[name] for name in names]).astype(np.float32)
    rate = len(feats) / timed(lambda: reference.run(None, {fold.PIPELINE_INPUT: feats}), repeat)
    rows.append(_row(len(feats), "skl2onnx, fitted pipeline only", len(feats), rate, base))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunks", type=int, nargs="+", default=[16_384, 32_768, 65_536])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="per-node time of each graph")
    args = parser.parse_args()

    real = read_raw(DATA)
    model, scoring, pipeline, seed, names = build(real)
    files = {"model.onnx": model.SerializeToString(), "scoring.onnx": scoring.SerializeToString()}
    with tempfile.TemporaryDirectory() as tmp:
        for file, data in files.items():
            (Path(tmp) / file).write_bytes(data)
        # What a user loading the bundle's files the ordinary way gets.
        defaults = {file: ort.InferenceSession(str(Path(tmp) / file)) for file in files}
    scorers = {file: Scorer(data, name=file) for file, data in files.items()}
    bulk = scorers["scoring.onnx"].for_bulk()
    reference = ort.InferenceSession(
        converters.reference_graph(pipeline, len(names)).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    engines = (seed, pipeline, scorers, defaults, bulk, reference)
    rng = np.random.default_rng(42)
    print(
        f"graphs: model.onnx {len(model.graph.node)} nodes, {len(model.graph.input)} inputs; "
        f"scoring.onnx {len(scoring.graph.node)} nodes, {len(scoring.graph.input)} inputs; "
        f"seed pipeline PCA {seed.named_steps['pca'].n_components_} components; "
        f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}"
    )
    print("| rows | engine | rows per call | rows/s (M) | vs seed pipeline |")
    print("|---:|---|---:|---:|---:|")
    for n in args.rows:
        pick = rng.integers(0, len(real["balance"]), n)
        raw = {k: np.ascontiguousarray(v[pick]) for k, v in real.items()}
        rows = bench_rows(raw, engines, names, args.chunks, args.repeat, args.baseline_repeat)
        print("\n".join(rows), flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    if args.profile:
        chunk = max(args.chunks)
        for file, data in files.items():
            wanted = scorers[file].input_names
            feeds = {k: raw[k][:chunk] for k in wanted}
            top = profile_nodes(data, feeds)
            total = sum(ns for _, ns in top)
            print(f"\n{file}: {total:.1f} ns per row on one thread, {chunk:,}-row runs; top nodes:")
            for name, ns in top[:12]:
                print(f"  {ns:6.1f} ns  {ns / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
