"""Gate: the graph runs in a fresh process that can import only onnxruntime and numpy."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from segmentation import GateFailed

_ISOLATED_SCRIPT = r"""
import sys
STARTUP = set(sys.modules)  # the interpreter and site's .pth hooks, before any import
import importlib.abc, json
FORBIDDEN = set(sys.argv[2].split(","))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"{name} is not available in the serving process")
sys.meta_path.insert(0, Refuse())
import numpy as np
import onnxruntime as ort
rows = json.load(sys.stdin)
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
feeds = {i.name: np.array([np.nan if r[i.name] is None else r[i.name] for r in rows], "float64")
         for i in session.get_inputs()}
names = [o.name for o in session.get_outputs()]
outs = dict(zip(names, session.run(names, feeds)))
loaded = sorted(m for m in set(sys.modules) - STARTUP if "." not in m
                and m not in sys.stdlib_module_names
                and getattr(sys.modules[m], "__file__", None) is not None)
json.dump({"outputs": {k: np.where(np.isnan(v), None, v).tolist() if v.dtype.kind == "f"
                       else v.tolist() for k, v in outs.items()}, "modules": loaded}, sys.stdout)
"""


#: The training stack; the isolated run refuses to import any of it.
_FORBIDDEN = ("sklearn", "skl2onnx", "onnx", "duckdb", "dbt", "scipy", "sqlglot", "pyarrow",
              "pandas", "matplotlib", "training", "segmentation", "joblib")  # fmt: skip


def run_isolated(model_bytes: bytes, rows: list[dict]) -> dict[str, np.ndarray]:
    """Gate: run the graph in a fresh ``python -I`` that can import only onnxruntime + numpy.

    Returns the outputs for ``rows`` (dicts of staged column -> value or None).
    """
    with tempfile.TemporaryDirectory(prefix="segmentation-isolated-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model_bytes)
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _ISOLATED_SCRIPT, str(path), ",".join(_FORBIDDEN)],
            input=json.dumps(rows),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp,
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise GateFailed(f"isolated run: the graph must run with onnxruntime + numpy; {last}")
    result = json.loads(proc.stdout)
    extra = sorted(set(result["modules"]) - {"numpy", "onnxruntime"})
    if extra:
        raise GateFailed(f"isolated run: expected only onnxruntime + numpy, also loaded {extra}")
    outs = result["outputs"]
    return {
        "segment_id": np.asarray(outs["segment_id"], dtype=np.int64),
        "distances": np.asarray(outs["distances"], dtype=np.float64),
        "features": np.asarray(outs["features"], dtype=np.float64),
    }
