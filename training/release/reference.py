"""The data a version was trained on, summarised for later: the snapshot hash and the
drift reference, both computed chunk by chunk so every training row counts in bounded
memory (the in-memory forms are the same code on one chunk)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.features.row_source import RowSource, TrainingData


def snapshot_digest(
    feature_names: tuple[str, ...],
    ordered_ids: Iterable[np.ndarray | pa.Array],
    ordered_features: Iterable[np.ndarray],
) -> str:
    """sha256 of the training feature table's content, from chunks in customer id order.

    Canonical form (``docs/bundle-format.md``): the feature names (comma separated), then
    the customer ids sorted and newline separated, then the feature matrix in that row
    order as little-endian float64 with every NaN as the one canonical quiet NaN.
    ``ordered_ids`` and ``ordered_features`` are the same rows in the same (sorted) order,
    in chunks of any sizes (an empty chunk adds nothing).
    """
    digest = hashlib.sha256(",".join(feature_names).encode())
    first = True
    for ids in ordered_ids:
        if len(ids) == 0:
            continue
        if not first:
            digest.update(b"\n")
        digest.update(_newline_joined(ids))
        first = False
    for X in ordered_features:
        canonical = np.where(np.isnan(X), np.nan, X).astype("<f8", copy=False)
        digest.update(np.ascontiguousarray(canonical).tobytes())
    return digest.hexdigest()


class SnapshotJob:
    """`snapshot_digest` of ``rows`` computed in a background thread, started at once.

    The hash needs only the warehouse, so it runs while the model fits: the fit keeps one
    core busy (its refits run single-threaded), and DuckDB, Arrow and hashlib release the
    GIL while they work. ``result`` waits for it; ``cancel`` stops it at the next chunk.
    """

    def __init__(self, feature_names: tuple[str, ...], rows: RowSource) -> None:
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        ids = _until(self._stop, rows.ordered_ids())
        features = _until(self._stop, rows.ordered_features())
        self._future = self._pool.submit(snapshot_digest, feature_names, ids, features)
        self._pool.shutdown(wait=False)

    def result(self) -> str:
        return self._future.result()

    def cancel(self) -> None:
        """Stop the hash (if it still runs) and wait for its thread to let go; its
        outcome, if it failed, is `result`'s to report, not this call's."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self._future.result()


class _Stopped(Exception):
    pass


def _until(stop: threading.Event, chunks: Iterator) -> Iterator:
    """``chunks`` until ``stop`` is set; then the source is closed (its files, its
    connection) and `_Stopped` raised."""
    for chunk in chunks:
        if stop.is_set():
            chunks.close()
            raise _Stopped
        yield chunk


def _newline_joined(ids: np.ndarray | pa.Array) -> bytes | pa.Buffer:
    """The ids as UTF-8, newline separated (Arrow joins its strings without making Python
    objects of them)."""
    if isinstance(ids, pa.Array):
        offsets = pa.array([0, len(ids)], pa.int32())
        return pc.binary_join(pa.ListArray.from_arrays(offsets, ids), "\n")[0].as_buffer()
    return "\n".join(ids.tolist()).encode()


def snapshot_sha256(customer_ids: np.ndarray, X: np.ndarray, feature_names: tuple[str, ...]) -> str:
    """sha256 of the training feature table's content (in memory), independent of row order;
    the canonical form is `snapshot_digest`'s."""
    rows = TrainingData(np.asarray(customer_ids, dtype=str), np.asarray(X, dtype=np.float64), {})
    return snapshot_digest(feature_names, rows.ordered_ids(), rows.ordered_features())


def _quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    valid = values[np.isfinite(values)]
    if not len(valid):
        return np.zeros(0)
    return np.unique(np.quantile(valid, np.linspace(0, 1, bins + 1)))


def quantile_histogram(values: np.ndarray, bins: int) -> dict:
    """Quantile bin edges of the finite ``values`` and each bin's share (``np.histogram``
    bins: left-closed, the last one closed), plus the share of non-finite values."""
    counts = HistogramCounts(_quantile_edges(values, bins))
    counts.add(values)
    return counts.histogram()


class HistogramCounts:
    """A `quantile_histogram` whose bin edges are fixed first (a sample's quantiles) and
    whose counts accumulate over chunks of values.

    Values outside the edges count in the first or last bin, and the outer edges become
    the smallest and largest finite value counted: exactly ``np.histogram`` of every value
    on those edges. With the edges of all the values it is `quantile_histogram` itself.
    """

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.inner = self.edges[1:-1]
        self.at_or_above = np.zeros(len(self.inner), dtype=np.int64)
        self.valid = self.total = 0
        self.low, self.high = np.inf, -np.inf

    def add(self, values: np.ndarray) -> None:
        valid = values[np.isfinite(values)]
        self.total += len(values)
        self.valid += len(valid)
        if not len(valid):
            return
        self.low, self.high = min(self.low, float(valid.min())), max(self.high, float(valid.max()))
        for i, edge in enumerate(self.inner):
            self.at_or_above[i] += np.count_nonzero(valid >= edge)

    def histogram(self) -> dict:
        if len(self.edges) >= 2:
            edges = [min(self.low, self.edges[0]), *self.inner, max(self.high, self.edges[-1])]
            above = np.array([self.valid, *self.at_or_above, 0], dtype=np.int64)
            counts = above[:-1] - above[1:]
        else:  # one edge (or none): a single bin of every finite value
            edges = sorted({self.low, self.high}) if self.valid else []
            counts = np.array([self.valid])
        return {
            "bin_edges": [float(e) for e in edges],
            "shares": [float(c) / max(self.valid, 1) for c in counts],
            "null_share": float(1.0 - self.valid / max(self.total, 1)),
        }


class DriftCounts:
    """The drift reference accumulated over chunks of rows: per-feature histograms on the
    quantile bin edges of ``sample`` (the training sample's features), segment counts and
    the served graph's distance to the nearest segment (float32, 4 bytes a row)."""

    def __init__(self, sample: np.ndarray, names: tuple[str, ...], bins: int) -> None:
        self.names, self.bins, self.sample_rows = names, bins, len(sample)
        self.features = [
            HistogramCounts(_quantile_edges(sample[:, j], bins)) for j in range(len(names))
        ]
        self.segments: dict[int, int] = {}
        self._nearest: list[np.ndarray] = []

    def add(
        self,
        X: np.ndarray,
        segment_ids: np.ndarray,
        nearest_distance: np.ndarray | None = None,
    ) -> None:
        """One chunk: features [n, F], segment ids [n], nearest distances [n] (optional)."""
        for j, counts in enumerate(self.features):
            counts.add(X[:, j])
        ids, sizes = np.unique(segment_ids, return_counts=True)
        for i, c in zip(ids.tolist(), sizes.tolist(), strict=True):
            self.segments[i] = self.segments.get(i, 0) + c
        if nearest_distance is not None:
            self._nearest.append(np.asarray(nearest_distance, dtype=np.float32))

    def reference(self, atypical_distance: float | None = None) -> dict:
        rows = sum(self.segments.values())
        reference: dict = {
            "features": {n: c.histogram() for n, c in zip(self.names, self.features, strict=True)},
            "segment_shares": {str(i): c / rows for i, c in sorted(self.segments.items())},
        }
        if self._nearest:
            nearest = np.concatenate(self._nearest)
            self._nearest = [nearest]  # the chunks' copies go
            reference["nearest_distance"] = quantile_histogram(nearest, self.bins)
            if atypical_distance is not None:
                reference["atypical_share"] = float(np.mean(nearest > atypical_distance))
        return reference


def drift_reference(
    X: np.ndarray,
    names: tuple[str, ...],
    segment_ids: np.ndarray,
    bins: int,
    nearest_distance: np.ndarray | None = None,
    atypical_distance: float | None = None,
) -> dict:
    """What drift checks compare against (``training.monitoring``): per-feature quantile
    histograms, segment shares, and, given the served graph's distance to the nearest
    segment on the training rows, its histogram and the share flagged atypical."""
    counts = DriftCounts(X, names, bins)
    counts.add(X, segment_ids, nearest_distance)
    return counts.reference(atypical_distance)
