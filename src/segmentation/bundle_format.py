"""Names and constants of the bundle format (``docs/bundle-format.md``), defined once.

Training writes bundles with these names, serving and the store read them; the sha256
hex digest is how every file of a version (and the pointer's manifest) is identified.
"""

from __future__ import annotations

import hashlib

#: ``format_version`` of the manifest this code writes and reads.
FORMAT_VERSION = 1
#: The full graph: raw columns -> segment_id, distances, features (every consumer's contract).
MODEL_FILE = "model.onnx"
#: The same graph without the ``features`` output and the nodes only it needs; optional
#: (bundles before it have none). Serving and batch scoring run it when present.
SCORING_FILE = "scoring.onnx"
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "report.html"


def sha256_hex(data: bytes) -> str:
    """Lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
