"""handlers/runtime/validation.py: parameters are checked by a validator compiled once per
parameter; a failing value still gets connexion's own message."""
from __future__ import annotations

import pytest
from connexion.validators import ParameterValidator

from handlers.runtime import validation
from handlers.runtime.specs import load_contracts

LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}}
STATUS = {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["open", "resolved"]}}
KEY = {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 200}}


@pytest.fixture(scope="module")
def validator():
    cls = validation.parameter_validator_for(load_contracts().alpinechat)
    return cls([LIMIT, STATUS, KEY], uri_parser=None)


@pytest.mark.parametrize("param, value", [
    (LIMIT, 1), (LIMIT, 200), (STATUS, "open"), (KEY, "k" * 200), (KEY, ""),
])
def test_valid_values_pass(validator, param, value):
    assert validator.validate_parameter("query", value, param) is None
    assert ParameterValidator.validate_parameter("query", value, param) is None  # as connexion says


@pytest.mark.parametrize("param, value", [
    (LIMIT, 0), (LIMIT, 201), (LIMIT, "many"), (STATUS, "closed"), (KEY, "k" * 201),
])
def test_failing_values_get_connexions_message(validator, param, value):
    message = validator.validate_parameter("query", value, param)
    assert message and message == ParameterValidator.validate_parameter("query", value, param)


def test_a_missing_required_parameter_is_still_reported(validator):
    required = {**KEY, "required": True}
    assert validator.validate_parameter("header", None, required) == "Missing header parameter 'Idempotency-Key'"


def test_each_parameter_is_compiled_once(validator):
    validator.validate_parameter("query", 5, LIMIT)
    check = validation._PARAMETER_CHECKS[id(LIMIT)]
    validator.validate_parameter("query", 6, LIMIT)
    assert validation._PARAMETER_CHECKS[id(LIMIT)] is check
