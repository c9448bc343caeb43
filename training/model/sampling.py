"""Seeded subsampling: how training picks a reproducible subset of rows.

Two levels, both seeded by ``TrainingParams.seed``:

- the *training sample*, drawn by DuckDB from the warehouse
  (``training.features.rows.WarehouseRows.sample``: the `TRAINING_SAMPLE_ROWS` customers
  with the smallest ``hash(customer_id, seed)``), which everything fitted sees;
- subsets of an in-memory matrix (`sample_rows`): the selection's, the stability
  refits', the silhouette's and the report's samples, drawn from the training sample.

Every statistic the manifest states about the customers (segment sizes and shares,
profiles, explanations, drift histogram counts, the atypical distance, the data snapshot
hash) and every export gate is computed on all rows, streamed (``training.export``).
"""

from __future__ import annotations

import numpy as np

#: Customers the preprocessing, the clustering and the segment ids are fitted on. The
#: final KMeans fits at most 200,000 rows anyway (``training.clustering.choose``), the
#: selection 50,000 and the bootstrap refits 5,000; at 200,000 rows the fitted medians,
#: the 0.5%/99.5% clipping quantiles (1,000 customers beyond each), the scaling and the
#: PCA differ from the whole population's by far less than their effect on any segment,
#: and the sample costs ~70 MB (41 float64 columns) whatever the number of customers.
TRAINING_SAMPLE_ROWS = 200_000


def sample_rows(n: int, rows: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(rows, n)`` distinct rows of ``n``, chosen by ``seed``.

    All rows (``arange(n)``) when ``n <= rows``; the same seed always picks the same rows,
    and sorting keeps them in their original order.
    """
    if n <= rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))
