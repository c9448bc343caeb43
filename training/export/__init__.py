"""Export: the folded pipeline joined to the compiled feature SQL as ONE graph, and the
gates it must pass before anything is written (``export_model``)."""

from training.export.gates import ExportResult, export_model

__all__ = ["ExportResult", "export_model"]
