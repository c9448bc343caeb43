"""Contracts generated from ``segmentation.schema`` and the dbt YAML: the dbt staging files
and the OpenAPI document. Never hand-edited; ``segmentation contract --check`` finds stale ones."""
