"""schemathesis against the app's own /openapi.json: no undeclared status code, no server error, every
answer matches its documented schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from engine.localizer import Localizer
from service.app import create_app
from service.settings import Settings

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(small_checkpoint, tmp_path_factory):
    config = Settings(checkpoint=small_checkpoint, temp_dir=tmp_path_factory.mktemp("uploads"), max_upload_mb=2)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(config, Localizer(config.engine_settings())))


def test_every_answer_is_documented(api_schema):
    # schemathesis' pytest plugin (from_fixture) does not run under pytest 9, so drive hypothesis directly.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {"POST /localize", "GET /health/ready"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(checks=CHECKS)

        check()
