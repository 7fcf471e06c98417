"""Every Batch data-plane api-version from 2017 on, and the wire differences between them that matter here.

Batch still serves each of these versions; the folders of Azure/azure-rest-api-specs'
specification/batch/data-plane/Microsoft.Batch/stable/ list them. The operations the emulator serves have
the same shape in all of them but for two renames, which this module translates at the edge so that the
rest of the emulator speaks the newest version only:
- 2018-12-01.8.0: a resource file's `blobSource` became `httpUrl` (and `storageContainerUrl`,
  `autoStorageContainerName` were added).
- 2020-09-01.12.0: a pool's `maxTasksPerNode` became `taskSlotsPerNode`, and Get Task Counts answers
  {taskCounts, taskSlotCounts} instead of the task counts themselves (azure-batch 10.0.0's changelog:
  https://github.com/Azure/azure-sdk-for-python/blob/main/sdk/batch/azure-batch/CHANGELOG.md).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

API_VERSION = "2025-06-01"
SUPPORTED_API_VERSIONS = frozenset({
    "2017-01-01.4.0", "2017-05-01.5.0", "2017-06-01.5.1", "2017-09-01.6.0", "2018-03-01.6.1", "2018-08-01.7.0",
    "2018-12-01.8.0", "2019-06-01.9.0", "2019-08-01.10.0", "2020-03-01.11.0", "2020-09-01.12.0",
    "2021-06-01.14.0", "2022-01-01.15.0", "2022-10-01.16.0", "2023-05-01.17.0", "2023-11-01.18.0",
    "2024-02-01.19.0", "2024-07-01.20.0", API_VERSION,
})
HTTP_URL_SINCE = "2018-12-01"
TASK_SLOTS_SINCE = "2020-09-01"


def _before(version: str, since: str) -> bool:
    # The date leads every version string, so comparing it orders them.
    return version[:10] < since


def _renames(version: str) -> dict[str, str]:
    """Old name -> current name, for the properties renamed since `version`."""
    renames = {}
    if _before(version, HTTP_URL_SINCE):
        renames["blobSource"] = "httpUrl"
    if _before(version, TASK_SLOTS_SINCE):
        renames["maxTasksPerNode"] = "taskSlotsPerNode"
    return renames


def _rename(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {names.get(k, k): _rename(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, names) for v in value]
    return value


def upgrade_body(version: str | None, body: dict) -> dict:
    """A request body of `version` in the current version's names."""
    names = _renames(version or API_VERSION)
    return _rename(body, names) if names else body


def downgrade(version: str, path: str, body: dict) -> dict:
    """A response body in `version`'s names and shapes."""
    names = _renames(version)
    if not names:
        return body
    if _before(version, TASK_SLOTS_SINCE) and path.endswith("/taskcounts") and "taskCounts" in body:
        # The old TaskCounts also carried validationStatus (dropped in 2020-09-01.12.0); counts here are exact.
        body = {**body["taskCounts"], "validationStatus": "validated"}
    return _rename(body, {new: old for old, new in names.items()})


@web.middleware
async def old_wire(request: web.Request, handler):
    """Answer a request made with an older api-version in that version's shapes."""
    response = await handler(request)
    version = request.query.get("api-version")
    if (not version or not _renames(version) or not isinstance(response, web.Response) or response.body is None
            or response.content_type != "application/json"):
        return response
    body = json.loads(response.body)
    if isinstance(body, dict):
        response.body = json.dumps(downgrade(version, request.path, body)).encode()
    return response
