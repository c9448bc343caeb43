"""ONNX scoring: one onnxruntime session per loaded model, shared by every thread.

The graph contract (inputs, outputs, shapes) is in ``docs/bundle-format.md``. This module
runs the graph and turns its distances into the API's per-customer answer: the assigned
segment, the distance to it, a confidence and an atypical flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from segmentation.errors import ModelContractError

#: Outputs of ``model.onnx``, the full graph, fixed by the bundle format.
OUTPUT_NAMES: tuple[str, str, str] = ("segment_id", "distances", "features")
#: Outputs of ``scoring.onnx``: the full graph without ``features`` and the nodes only
#: ``features`` needs (onnxruntime runs every node of a graph, asked for or not).
SCORING_OUTPUT_NAMES: tuple[str, str] = ("segment_id", "distances")


class Scores(NamedTuple):
    """Raw graph outputs for N rows (a named tuple: built on every request, cheaply)."""

    segment_id: np.ndarray  # int64 [N]
    distances: np.ndarray  # float32 [N, K]
    features: np.ndarray | None = None  # float32 [N, F]; None from a scoring graph


class UnscorableRow(Exception):
    """A row whose distances are not finite (the features overflowed or divided by zero)."""

    def __init__(self, row: int):
        super().__init__(f"row {row}: distances are not finite")
        self.row = row


def _ort():
    # Imported on first use, never at module import: gunicorn imports the function module
    # in its parent and forks workers from it, and a child forked after onnxruntime was
    # imported hangs or aborts at exit (onnxruntime 1.32's global state is not fork-safe).
    import onnxruntime

    return onnxruntime


def session_options(threads: int = 1):
    """Options for a session: by default one thread per run, threads come from the server.

    Requests are tiny (1..1,000 rows); intra-op parallelism costs more in wake-ups than it
    saves, and the web server already runs requests concurrently. Bulk scoring (drift,
    batch jobs) passes ``threads=0``: onnxruntime's default, one per physical core.
    """
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


class Scorer:
    """An onnxruntime session over a verified graph; safe to share across threads.

    The graph is ``model.onnx`` or ``scoring.onnx`` (``docs/bundle-format.md``); the inputs
    it reads are the staged fields the session reports (a scoring graph reads only the
    columns its clustering uses), so callers may pass more columns than it needs.

    Parameters
    ----------
    model_bytes : the serialized ONNX model (already checked for external data).
    threads : intra-op threads (1 for serving; 0 for all cores, see `session_options`).
    name : the bundle file the graph came from, for messages.
    """

    def __init__(self, model_bytes: bytes, threads: int = 1, name: str = "model.onnx"):
        ort = _ort()
        self._model_bytes = model_bytes
        self.name = name
        try:
            self.session = ort.InferenceSession(
                model_bytes,
                sess_options=session_options(threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelContractError(f"{name}: onnxruntime cannot load it ({exc})") from None
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.has_features = "features" in self.output_names
        self._order = [self.output_names.index(n) for n in OUTPUT_NAMES if n in self.output_names]

    @property
    def model_bytes(self) -> bytes:
        """The verified ``model.onnx`` this session runs."""
        return self._model_bytes

    def for_bulk(self) -> Scorer:
        """A scorer of the same verified model for large batches: every core per run."""
        return Scorer(self._model_bytes, threads=0, name=self.name)

    def signature(self) -> tuple[dict[str, tuple[str, list]], dict[str, tuple[str, list]]]:
        """Input and output ``{name: (type, shape)}`` as the session reports them."""
        ins = {i.name: (i.type, list(i.shape)) for i in self.session.get_inputs()}
        outs = {o.name: (o.type, list(o.shape)) for o in self.session.get_outputs()}
        return ins, outs

    def score(self, columns: Mapping[str, np.ndarray]) -> Scores:
        """Run the graph on column arrays (float64 [N] each, NaN for null)."""
        feeds = {name: columns[name] for name in self.input_names}
        out = self.session.run(None, feeds)
        return Scores(*(out[i] for i in self._order))


def assign(
    scores: Scores, columns: Mapping[int, int], atypical_distance: float
) -> list[tuple[int, float, float, bool]]:
    """Per row: segment id, distance to it, confidence ``1 - d1/d2``, atypical flag.

    Parameters
    ----------
    scores : graph outputs.
    columns : segment id -> column of ``distances`` (the manifest's segment order).
    atypical_distance : d1 (distance to the nearest segment) above this flags the row.

    Raises
    ------
    UnscorableRow
        A row's distances are not all finite.
    ModelContractError
        The graph returned a segment id the manifest does not name.
    """
    # Plain Python over lists: K is small, and for the usual 1..100 rows this is several
    # times faster than a dozen numpy calls with their fixed per-call overhead.
    out = []
    for i, (sid, dist) in enumerate(
        zip(scores.segment_id.tolist(), scores.distances.tolist(), strict=True)
    ):
        total = sum(dist)
        if total - total != 0:  # NaN or an infinity somewhere in the row
            raise UnscorableRow(i)
        col = columns.get(sid)
        if col is None:
            raise ModelContractError("model.onnx: returned a segment id the manifest lacks")
        if len(dist) >= 2:
            d1, d2 = sorted(dist)[:2]
            # d2 == 0 only when two centroids coincide at the point: a boundary.
            confidence = 1.0 - d1 / d2 if d2 > 0 else 0.0
        else:
            d1, confidence = dist[0], 1.0
        out.append((sid, dist[col], confidence, d1 > atypical_distance))
    return out
