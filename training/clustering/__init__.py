"""Clustering in the fitted space: selection of k and the algorithm, bootstrap stability,
servable (nearest-centroid) forms, and the choice training serves."""
