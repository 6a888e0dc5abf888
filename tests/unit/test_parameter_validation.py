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


def test_request_validation_is_built_per_operation_at_start_up_not_per_request(settings, database, monkeypatch,
                                                                               make_ingest_key):
    from handlers.runtime.app import create_app

    built: list = []
    init = validation.PrecomputedRequestValidation.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(validation.PrecomputedRequestValidation, "__init__", recording_init)
    app = create_app(settings, database=database)
    with app.test_client() as client:
        client.get("/api/v1/ingest/ping")  # the middleware stack is built on the first request
        assert {(layer.operation.method, layer.operation.path) for layer in built} >= {
            ("post", "/api/v1/ingest/events"), ("get", "/api/ping"), ("get", "/api/widget-config/{slug}")}, (
            "connexion no longer builds its validation layer through RequestValidationMiddleware.api_cls"
            ".make_operation: handlers/runtime/validation.py's RequestValidation needs updating")
        per_request: list = []
        monkeypatch.setattr(ParameterValidator, "__init__",
                            lambda *args, **kwargs: per_request.append(args))  # must not run again
        headers = {**make_ingest_key().headers, "Content-Type": "application/json"}
        answers = [client.post("/api/v1/ingest/events", headers=headers, content=b'{"events": []}')
                   for _ in range(2)]
        # A media type the operation does not accept: connexion's refusal, in the API's shape.
        wrong = client.post("/api/v1/ingest/events", headers={**headers, "Content-Type": "text/plain"},
                            content=b"{}")
        # Spellings of the accepted type share what is remembered for it.
        for n in range(40):
            spelling = "".join(c.upper() if (n >> i) & 1 else c for i, c in enumerate("application/json"))
            client.post("/api/v1/ingest/events", headers={**headers, "Content-Type": spelling},
                        content=b'{"events": []}')
    assert per_request == []
    assert [a.status_code for a in answers] == [400, 400]
    assert wrong.status_code == 415 and wrong.json()["error"]["code"] == "invalid_body"
    events = next(layer for layer in built
                  if (layer.operation.method, layer.operation.path) == ("post", "/api/v1/ingest/events"))
    assert list(events.media_types) == ["application/json"]
