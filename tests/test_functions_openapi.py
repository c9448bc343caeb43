"""functions/openapi.yaml is generated from segmentation.schema and must be up to date."""

from __future__ import annotations

import jsonschema
import pytest
from fixtures import openapi

from segmentation.schema import FIELDS
from training.contract import openapi as contract_openapi


def test_the_committed_openapi_document_is_up_to_date():
    assert contract_openapi.OPENAPI_PATH.read_text() == contract_openapi.render(), (
        "functions/openapi.yaml is stale: run `segmentation contract`"
    )


def test_the_document_is_a_valid_openapi_31_with_valid_schemas():
    doc = openapi.document()
    assert doc["openapi"].startswith("3.1")
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)  # raises naming the keyword


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_each_input_field_carries_the_schema_bounds_and_nullability(field):
    prop = openapi.document()["components"]["schemas"]["Customer"]["properties"][field.name]
    assert (prop["minimum"], prop["maximum"]) == (field.minimum, field.maximum)
    assert ("null" in prop["type"]) is field.nullable
    assert prop["description"].startswith(field.description)
