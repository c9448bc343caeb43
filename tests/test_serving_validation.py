"""Request validation: every rule of the input contract, as field + rule + row."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segmentation.errors import InvalidInput
from segmentation.schema import FIELD_NAMES
from segmentation.validation import parse_request

SECRET = 987654.321  # a value that must never appear in an error


def _body(doc) -> bytes:
    return json.dumps(doc).encode()


def _error(body: bytes, max_rows: int = 1000) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_request(body, max_rows)
    return info.value


def test_a_single_customer_becomes_one_float64_column_per_field(customer):
    parsed = parse_request(_body(customer), 1000)
    assert not parsed.is_batch
    assert parsed.ids == ["C-test-1"]
    assert set(parsed.columns) == set(FIELD_NAMES)
    assert all(c.dtype == np.float64 and c.shape == (1,) for c in parsed.columns.values())
    assert parsed.columns["balance"][0] == customer["balance"]


def test_a_batch_keeps_row_order_and_maps_null_to_nan(customer):
    second = {**customer, "balance": 7.0, "credit_limit": None, "customer_id": None}
    parsed = parse_request(_body({"customers": [customer, second]}), 1000)
    assert parsed.is_batch and parsed.ids == ["C-test-1", None]
    assert parsed.columns["balance"].tolist() == [customer["balance"], 7.0]
    assert np.isnan(parsed.columns["credit_limit"][1])


def test_nullable_fields_may_be_omitted(customer):
    row = {k: v for k, v in customer.items() if k not in ("credit_limit", "minimum_payments")}
    parsed = parse_request(_body(row), 1000)
    assert np.isnan(parsed.columns["minimum_payments"][0])


@pytest.mark.parametrize(
    ("edit", "field", "rule"),
    [
        ({"balance": -0.01}, "balance", "minimum 0"),
        ({"payments": -SECRET}, "payments", "minimum 0"),
        ({"balance": 2e9}, "balance", "maximum 1e+09"),
        ({"purchases_frequency": 1.5}, "purchases_frequency", "maximum 1"),
        ({"tenure": 0.0}, "tenure", "minimum 1"),
        ({"tenure": 6.5}, "tenure", "integer"),
        ({"purchases_trx": 2.5}, "purchases_trx", "integer"),
        ({"balance": True}, "balance", "type number"),
        ({"balance": "12"}, "balance", "type number"),
        ({"balance": [1.0]}, "balance", "type number"),
        ({"balance": {"x": 1}}, "balance", "type number"),
        ({"balance": None}, "balance", "not null"),
        ({"balance": 1e39}, "balance", "finite float32"),
        ({"balance": 1e400}, "balance", "finite float32"),
        ({"customer_id": 12}, "customer_id", "type string"),
        ({"customer_id": ""}, "customer_id", "length 1 to 128"),
        ({"customer_id": "x" * 129}, "customer_id", "length 1 to 128"),
        ({"unexpected": 1}, "unexpected", "unknown field"),
        ({"bad key!": 1}, "(unnamed)", "unknown field"),
    ],
)
def test_each_broken_rule_names_the_field_and_the_rule(customer, edit, field, rule):
    error = _error(_body({**customer, **edit}))
    assert (error.field, error.rule, error.row) == (field, rule, None)
    assert str(SECRET) not in str(error)


@pytest.mark.parametrize("missing", ["balance", "tenure", "prc_full_payment"])
def test_a_missing_required_field_is_reported(customer, missing):
    row = {k: v for k, v in customer.items() if k != missing}
    assert (_error(_body(row)).field, _error(_body(row)).rule) == (missing, "required")


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_tokens_are_rejected_with_the_field(customer, token):
    text = json.dumps({**customer, "balance": 0.0}).replace('"balance": 0.0', f'"balance": {token}')
    error = _error(text.encode())
    assert (error.field, error.rule) == ("balance", "finite float32")


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        (b"{", "body", "valid JSON"),
        (b"", "body", "valid JSON"),
        (b"\xff\xfe\x00", "body", "valid JSON"),
        (b"[]", "body", "type object"),
        (b"42", "body", "type object"),
        (b"[" * 100_000 + b"]" * 100_000, "body", "maximum nesting depth"),
        (b'{"customers": {}}', "customers", "type array"),
        (b'{"customers": []}', "customers", "minimum 1 row"),
        (b'{"customers": [], "x": 1}', "x", "unknown field"),
    ],
)
def test_malformed_documents_are_rejected_as_a_whole(body, field, rule):
    error = _error(body)
    assert (error.field, error.rule) == (field, rule)


def test_a_batch_error_names_the_row(customer):
    rows = [customer, customer, {**customer, "cash_advance": -1.0}]
    error = _error(_body({"customers": rows}))
    assert (error.field, error.rule, error.row) == ("cash_advance", "minimum 0", 2)


def test_a_batch_row_that_is_not_an_object_names_the_row(customer):
    error = _error(_body({"customers": [customer, 3]}))
    assert (error.field, error.rule, error.row) == ("customers", "type object", 1)


@pytest.mark.parametrize(("rows", "max_rows", "ok"), [(3, 3, True), (4, 3, False)])
def test_batches_are_limited_to_max_rows(customer, rows, max_rows, ok):
    body = _body({"customers": [customer] * rows})
    if ok:
        assert parse_request(body, max_rows).rows == rows
    else:
        error = _error(body, max_rows)
        assert (error.field, error.rule) == ("customers", f"maximum {max_rows} rows")


def test_real_customers_all_validate(real_customers):
    parsed = parse_request(_body({"customers": real_customers}), 1000)
    assert parsed.rows == len(real_customers)


def test_integers_are_numbers_whichever_decoder_reads_them(customer):
    # orjson decodes integers as int; json (the fallback) as float: both are accepted alike.
    doc = {**customer, "tenure": 12, "purchases_trx": 3}
    plain = parse_request(_body(doc), 1000)
    assert plain.columns["tenure"].dtype == np.float64 and plain.columns["tenure"][0] == 12.0
    assert plain.columns["purchases_trx"][0] == 3.0
    # Beyond 64 bits orjson refuses the document and json decodes it: the field is named.
    big = json.dumps({**customer, "balance": 10**40}).encode()
    assert (_error(big).field, _error(big).rule) == ("balance", "finite float32")
    within = json.dumps({**customer, "balance": 10**10}).encode()  # orjson's own path
    assert (_error(within).field, _error(within).rule) == ("balance", "maximum 1e+09")
    boolean = json.dumps({**customer, "tenure": True}).encode()
    assert (_error(boolean).field, _error(boolean).rule) == ("tenure", "type number")
