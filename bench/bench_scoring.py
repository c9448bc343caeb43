"""Raw-to-segment throughput of the exported graph vs a scikit-learn baseline.

Builds the graph exactly as `segmentation train` does (the project's feature SQL compiled
to ONNX + the folded pipeline fitted on the real file's customers), then scores N rows
resampled (seeded) from ``../shared/data/cc_general.csv``:

- ``onnx``: the exported graph in onnxruntime, graph optimisation ALL, fed in chunks of
  the given sizes, asked for ``segment_id`` and ``distances`` (onnxruntime runs every node
  whatever a run asks for, so the features are computed too): one session with
  ``intra_op_num_threads=2``, and one session with 1 intra-op thread run on chunks by two
  Python threads;
- ``onnx, previous graph``: the graph as joined before ``features`` became float32 (double
  ``[N, F]`` features, the pipeline gathering and casting its columns from them), for a
  ratio within the same run;
- ``skl2onnx``: skl2onnx's graph of the fitted pipeline alone (features precomputed), for
  reference: the converter's default;
- ``sklearn``: the baseline, the same features in numpy then ``Pipeline.predict``, in
  chunks of 1M rows.

Usage: ``python bench/bench_scoring.py [--rows 1000000 10000000] [--chunks 16384 32768]
[--repeat 3] [--profile]``. Prints a Markdown table (median of ``--repeat`` runs).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from _features_numpy import numpy_features  # bench/ is sys.path[0]
from onnx import compose

from segmentation import FIELD_NAMES, Settings
from segmentation.schema import FIELDS
from training.export import converters, fold, join, parity
from training.features import compiled_feature_sql
from training.features.sql_onnx import compile_features
from training.model.params import TrainingParams
from training.model.pipeline import build_pipeline

#: What batch scoring reads (onnxruntime runs every node of the graph whatever is asked).
OUTPUTS = ["segment_id", "distances"]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cc_general.csv"


#: Columns the feature SQL takes ln(1 + x) of, and columns it passes through.
def read_raw(path: Path) -> dict[str, np.ndarray]:
    """The real file's columns under their staged names, blanks as NaN."""
    header = path.read_text().splitlines()[0].split(",")
    table = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=range(1, len(header)))
    by_raw = {name: table[:, i] for i, name in enumerate(header[1:])}
    return {f.name: np.ascontiguousarray(by_raw[f.raw_name]) for f in FIELDS}


def session(
    model_bytes: bytes, profile: str | None = None, threads: int = 2
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle intra-op threads spin by default; on a shared 2-core machine the spinning
    # thread steals the core the work needs (measured 5x slower under load).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return float(np.median(runs))


def build(raw: dict[str, np.ndarray]):
    """The exported graph, the fitted pipeline and the feature names (as training does)."""
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
    params = TrainingParams()
    pipeline = build_pipeline(params, names).fit(X)
    folded = fold.folded_graph(pipeline)
    parity.prove_folded(folded, pipeline, X)
    previous = compose.merge_models(
        compiled.model,
        folded,
        io_map=[("features", fold.PIPELINE_INPUT)],
        outputs=["segment_id", "distances", "features"],
    )
    return join.join_graphs(compiled, folded), previous, pipeline, names


def profile_nodes(model_bytes: bytes, feeds: dict, runs: int = 3) -> list[tuple[str, float]]:
    """Per-node kernel time (share of total) from onnxruntime's profiler."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(model_bytes, profile=os.path.join(tmp, "ort"))
        for _ in range(runs):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[f"{e['args'].get('op_name')} {e['name'][: -len('_kernel_time')]}"] += e["dur"]
    total = sum(per_node.values())
    return [(k, v / total) for k, v in sorted(per_node.items(), key=lambda kv: -kv[1])]


def _row(n: int, engine: str, chunk: int, rate: float, base: float | None) -> str:
    ratio = f"{rate / base:.1f}x" if base else ""
    return f"| {n:,} | {engine} | {chunk:,} | {rate / 1e6:.2f} | {ratio} |"


def _chunked(run, raw: dict[str, np.ndarray], chunk: int, pool=None):
    """A callable scoring all of ``raw`` in chunks, sequentially or on ``pool``."""
    n = len(raw["balance"])

    def one(i: int) -> None:
        run(OUTPUTS, {k: v[i : i + chunk] for k, v in raw.items()})

    if pool is None:
        return lambda: [one(i) for i in range(0, n, chunk)]
    return lambda: list(pool.map(one, range(0, n, chunk)))


def bench_rows(raw, model, sessions, pipeline, names, chunks, repeat, baseline_repeat) -> list[str]:
    """Table rows for one data size: baseline, each engine and chunk, skl2onnx reference."""
    n = len(raw["balance"])
    sess, single, previous, reference, pool = sessions

    def sklearn_run() -> None:
        for i in range(0, n, 1_000_000):
            part = numpy_features({k: v[i : i + 1_000_000] for k, v in raw.items()})
            pipeline.predict(np.column_stack([part[name] for name in names]))

    base = n / timed(sklearn_run, baseline_repeat)
    rows = [_row(n, "sklearn: numpy features + predict", 1_000_000, base, base)]
    for chunk in chunks:
        rate = n / timed(_chunked(sess.run, raw, chunk), repeat)
        rows.append(_row(n, "onnx, intra_op 2", chunk, rate, base))
        rate = n / timed(_chunked(single.run, raw, chunk, pool), repeat)
        rows.append(_row(n, "onnx, 2 threads x intra_op 1", chunk, rate, base))
        rate = n / timed(_chunked(previous.run, raw, chunk, pool), repeat)
        rows.append(_row(n, "onnx, previous graph, 2 threads x intra_op 1", chunk, rate, base))
    first = {k: v[:1_000_000] for k, v in raw.items()}
    feats = parity.run(model, join.raw_feeds(first))["features"].astype(np.float32)
    rate = len(feats) / timed(lambda: reference.run(None, {fold.PIPELINE_INPUT: feats}), repeat)
    rows.append(_row(len(feats), "skl2onnx, fitted pipeline only", len(feats), rate, None))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunks", type=int, nargs="+", default=[16_384, 32_768, 65_536])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-repeat", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print the top nodes")
    args = parser.parse_args()

    real = read_raw(DATA)
    model, previous, pipeline, names = build(real)
    model_bytes = model.SerializeToString()
    sessions = (
        session(model_bytes),
        # One session shared by two Python threads (run() releases the GIL), a core each.
        session(model_bytes, threads=1),
        session(previous.SerializeToString(), threads=1),
        session(converters.reference_graph(pipeline, len(names)).SerializeToString()),
        ThreadPoolExecutor(max_workers=2),
    )
    rng = np.random.default_rng(42)
    print(f"graph: {len(model.graph.node)} nodes, {len(names)} features, {os.cpu_count()} cpus")
    print("| rows | engine | chunk | rows/s (M) | vs sklearn |")
    print("|---:|---|---:|---:|---:|")
    for n in args.rows:
        pick = rng.integers(0, len(real["balance"]), n)
        raw = {k: np.ascontiguousarray(v[pick]) for k, v in real.items()}
        rows = bench_rows(
            raw, model, sessions, pipeline, names, args.chunks, args.repeat, args.baseline_repeat
        )
        print("\n".join(rows), flush=True)
    if args.profile:
        feeds = {k: v[: max(args.chunks)] for k, v in raw.items()}
        print(f"\nper-node kernel time, {max(args.chunks):,}-row chunks:")
        for name, share in profile_nodes(model_bytes, feeds)[:15]:
            print(f"  {share:6.1%}  {name}")


if __name__ == "__main__":
    main()
