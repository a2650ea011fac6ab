"""The OpenAPI schema documents every answer a route gives and the patterns its parameters must match, so a client
generated from it works (the Schemathesis run in test_schemathesis.py checks the answers against it)."""

from __future__ import annotations

import re

from inspection.names import PRODUCT_PATTERN
from inspection.settings import Settings
from serving.app import create_app


def _schema(tmp_path) -> dict:
    return create_app(Settings(home=tmp_path / "var")).openapi()


def test_error_answers_are_documented_with_a_json_body(tmp_path) -> None:
    paths = _schema(tmp_path)["paths"]
    inspect = paths["/v1/inspect/{product}"]["post"]
    assert {"400", "401", "403", "404", "413", "415", "422", "503"} <= set(inspect["responses"])
    assert "409" in paths["/v1/products/{product}/models/{version}/promote"]["post"]["responses"]
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            assert {"401"} <= set(operation["responses"]), (method, path)
            if path != "/v1/me":
                assert "403" in operation["responses"], (method, path)
            error = operation["responses"]["401"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}


def test_parameters_state_their_patterns(tmp_path) -> None:
    schema = _schema(tmp_path)
    inspect = schema["paths"]["/v1/inspect/{product}"]["post"]
    params = {p["name"]: p["schema"] for p in inspect["parameters"]}
    assert params["product"]["pattern"] == PRODUCT_PATTERN
    assert {"camera_id", "line_id", "frame_id", "captured_at"} <= set(params)
    assert {"image/png", "image/jpeg", "multipart/form-data"} <= set(inspect["requestBody"]["content"])
    stats = {p["name"]: p["schema"] for p in schema["paths"]["/v1/stats"]["get"]["parameters"]}
    time_pattern = stats["until"]["pattern"]
    assert re.fullmatch(time_pattern, "2026-12-07T10:00:00+02:00") and not re.fullmatch(time_pattern, "0.5")
    listing = {p["name"]: p["schema"] for p in schema["paths"]["/v1/inspections"]["get"]["parameters"]}
    assert listing["offset"]["maximum"] == 2**31 - 1
