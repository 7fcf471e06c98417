"""What a parent's outcome gives its dependants (dependencies.dependency_action): a table, no I/O."""

from __future__ import annotations

import pytest

from local.batch.dependencies import dependency_action

FAILED = {"category": "usererror", "code": "FailureExitCode", "message": "x"}
SATISFY = {"dependencyAction": "satisfy"}
BLOCK = {"dependencyAction": "block"}


@pytest.mark.parametrize(("conditions", "exit_code", "failure", "expected"), [
    (None, 0, None, "satisfy"),
    (None, 3, FAILED, "block"),
    ({"exitCodes": [{"code": 3, "exitOptions": SATISFY}]}, 3, FAILED, "satisfy"),
    ({"exitCodes": [{"code": 3, "exitOptions": SATISFY}]}, 4, FAILED, "block"),
    ({"exitCodeRanges": [{"start": 2, "end": 5, "exitOptions": SATISFY}]}, 4, FAILED, "satisfy"),
    ({"exitCodeRanges": [{"start": 2, "end": 5, "exitOptions": SATISFY}]}, 6, FAILED, "block"),
    ({"default": SATISFY}, 9, FAILED, "satisfy"),
    ({"default": SATISFY, "exitCodes": [{"code": 9, "exitOptions": BLOCK}]}, 9, FAILED, "block"),
    ({"exitCodes": [{"code": 0, "exitOptions": BLOCK}]}, 0, None, "block"),
    ({"default": SATISFY}, 0, None, "satisfy"),
    ({"preProcessingError": SATISFY}, None, {"code": "ResourceDownloadFailed"}, "satisfy"),
    ({"preProcessingError": SATISFY}, None, {"code": "TaskEnded"}, "block"),
    ({"default": SATISFY}, None, {"code": "TaskEnded"}, "satisfy"),
    ({"fileUploadError": SATISFY}, 0, {"code": "FileUploadFailed"}, "satisfy"),
    ({"fileUploadError": SATISFY}, 0, None, "satisfy"),
    ({"default": SATISFY}, 0, {"code": "FileUploadFailed"}, "satisfy"),
    ({"fileUploadError": BLOCK}, 0, {"code": "FileUploadFailed"}, "block"),
])
def test_dependency_action(conditions, exit_code, failure, expected):
    spec = {"exitConditions": conditions} if conditions else {}
    assert dependency_action(spec, exit_code, failure) == expected
