"""The scoring graph: the gated graph without its ``features`` output, gated against it.

onnxruntime runs every node of a graph whatever outputs a run asks for, so a consumer that
needs only segments (serving, batch scoring, drift) would pay for every DuckDB-exact
feature on every row. ``scoring.onnx`` answers ``segment_id`` and ``distances`` only:
joined from the feature graph re-emitted for the clustered features alone (the same
nodes and rounding) when the compiler can, else the full graph cut to those outputs. It
reads only the inputs its nodes need. The gate runs both graphs on every training row,
chunk by chunk (`ScoringGraphCheck`): ids equal and distances bit for bit equal (the same
arithmetic on the same inputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx.utils

from segmentation import GateFailed
from segmentation.scoring import SCORING_OUTPUT_NAMES
from training.export._runner import GraphRunner
from training.export.join import FeatureGraph, join_scoring_graph


@dataclass(frozen=True)
class ScoringGraphProof:
    """Evidence that the scoring graph answers as the full graph on every training row."""

    rows: int
    inputs: tuple[str, ...]
    nodes: int
    full_nodes: int

    def to_dict(self) -> dict:
        return {
            "outputs": list(SCORING_OUTPUT_NAMES),
            "inputs": list(self.inputs),
            "nodes": self.nodes,
            "full_graph_nodes": self.full_nodes,
            "rows_equal_to_full_graph": self.rows,
        }


def scoring_graph(
    model: onnx.ModelProto,
    features: FeatureGraph | None = None,
    pipeline_graph: onnx.ModelProto | None = None,
) -> onnx.ModelProto:
    """The scoring graph of the full graph ``model``: joined from ``features`` and
    ``pipeline_graph`` (the folded pipeline) when given and re-emittable, else ``model``
    cut to ``segment_id`` and ``distances``; metadata copied from ``model``."""
    joined = None
    if features is not None and pipeline_graph is not None:
        joined = join_scoring_graph(features, pipeline_graph)
    pruned = _cut(model) if joined is None else joined
    onnx.helper.set_model_props(pruned, {p.key: p.value for p in model.metadata_props})
    pruned.producer_name, pruned.producer_version = model.producer_name, model.producer_version
    return pruned


def _cut(model: onnx.ModelProto) -> onnx.ModelProto:
    inputs = [i.name for i in model.graph.input]
    pruned = onnx.utils.Extractor(model).extract_model(inputs, list(SCORING_OUTPUT_NAMES))
    read = {name for node in pruned.graph.node for name in node.input}
    kept = [i for i in pruned.graph.input if i.name in read]
    del pruned.graph.input[:]
    pruned.graph.input.extend(kept)
    onnx.checker.check_model(pruned)
    return pruned


class ScoringGraphCheck:
    """The scoring graph against the full graph, chunk after chunk: ``add`` each chunk's
    feeds with the full graph's outputs on them, then ``result`` (raises `GateFailed`)."""

    def __init__(self, scoring: onnx.ModelProto, full: onnx.ModelProto) -> None:
        self.inputs = tuple(i.name for i in scoring.graph.input)
        self.nodes, self.full_nodes = len(scoring.graph.node), len(full.graph.node)
        self.runner = GraphRunner(scoring)
        self.rows = 0
        self.differ = dict.fromkeys(SCORING_OUTPUT_NAMES, 0)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The scoring graph's outputs on ``feeds``."""
        return self.runner({n: feeds[n] for n in self.inputs})

    def add(
        self,
        feeds: dict[str, np.ndarray],
        full_outputs: dict[str, np.ndarray],
        got: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Compare one chunk; ``got`` is `run`'s output on ``feeds`` when already computed."""
        rows = len(full_outputs["segment_id"])
        self.rows += rows
        if rows == 0:
            return
        got = self.run(feeds) if got is None else got
        for name in SCORING_OUTPUT_NAMES:
            if not np.array_equal(got[name], full_outputs[name]):
                wrong = (got[name] != full_outputs[name]).reshape(rows, -1).any(axis=1)
                self.differ[name] += int(wrong.sum())

    def result(self) -> ScoringGraphProof:
        for name, differ in self.differ.items():
            if differ:
                raise GateFailed(
                    f"scoring graph: {name} must equal the full graph's on every row; "
                    f"{differ} of {self.rows} rows differ"
                )
        return ScoringGraphProof(self.rows, self.inputs, self.nodes, self.full_nodes)


def check_scoring_graph(
    scoring: onnx.ModelProto, full: onnx.ModelProto, full_outputs: dict[str, np.ndarray], feeds
) -> ScoringGraphProof:
    """Run ``scoring`` on ``feeds`` and require the full graph's ids and distances."""
    check = ScoringGraphCheck(scoring, full)
    check.add(feeds, full_outputs)
    return check.result()
