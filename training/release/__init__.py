"""Release: the manifest, the report and its plots, publishing to the store, the run ledger."""
