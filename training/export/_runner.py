"""Running the gated graphs over chunks of rows: one onnxruntime session per graph, runs
sized for the CPU caches, and the transposing copy the comparisons need."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from segmentation.scoring import session_options

#: Rows per onnxruntime run: the graphs' intermediate tensors of 32k rows stay in the
#: CPU caches (measured: ~40% less CPU per row than runs of 131k rows).
RUN_ROWS = 32_768


#: Rows per block of a transposing copy: a block of both layouts stays in the CPU caches
#: (numpy's own casting, transposing copy of a whole chunk is about three times slower).
_BLOCK = 4096


def transpose(source: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[...] = source.T``, source [n, F], block by block."""
    for start in range(0, len(source), _BLOCK):
        out[:, start : start + _BLOCK] = source[start : start + _BLOCK].T
    return out


class GraphRunner:
    """One onnxruntime session over ``model``, run chunk after chunk (in runs of at most
    `RUN_ROWS` rows, outputs concatenated); output names are read from the session."""

    def __init__(self, model: onnx.ModelProto) -> None:
        # One thread per run: the export pass runs graphs in one thread while numpy and
        # scikit-learn work in another (two cores); spinning threads would steal both.
        options = session_options(threads=1)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {n: feeds[n] for n in self.input_names}
        rows = len(next(iter(feeds.values()))) if feeds else 0
        if rows <= RUN_ROWS:
            out = self.session.run(self.output_names, feeds)
        else:
            runs = [
                self.session.run(
                    self.output_names, {n: v[i : i + RUN_ROWS] for n, v in feeds.items()}
                )
                for i in range(0, rows, RUN_ROWS)
            ]
            out = [np.concatenate(parts) for parts in zip(*runs, strict=True)]
        return dict(zip(self.output_names, out, strict=True))
