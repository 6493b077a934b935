"""Property-based fuzzing of the OpenAPI document: whatever a client sends, never a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.e2e


def test_no_server_errors(server):
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/v1/audio/transcriptions" for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            derandomize=True,  # the same examples on every run
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def no_5xx(case):
            case.call_and_validate(base_url=server, checks=[not_a_server_error], timeout=120)

        no_5xx()
