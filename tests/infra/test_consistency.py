"""The templates agree with the app: container and queue names, every app setting the app reads,
identity-based connections only, the Event Grid wiring of the blob triggers, and what azd deploys."""

from __future__ import annotations

import ast
import fnmatch
import json
import re

import pytest

from shared.pure import settings
from tests.infra.bicep_model import (
    MAIN,
    ROOT,
    body,
    module_path,
    one_resource,
    param_default,
    parse,
    text,
    var,
)


def app_settings() -> dict:
    doc = parse(module_path("functionapp"))
    config = [r for r in doc["resources"].values() if r["type"] == "Microsoft.Web/sites/config"]
    assert len(config) == 1, "expected one Microsoft.Web/sites/config (appsettings) resource"
    cfg = body(config[0])
    assert cfg["name"] == "appsettings"
    return cfg["properties"]


# --- names and settings --------------------------------------------------------------------------


def test_container_and_queue_names_match_the_app():
    main = parse(MAIN)
    assert var(main, "logsContainer") == settings.LOGS_CONTAINER
    assert var(main, "reportsContainer") == settings.REPORTS_CONTAINER
    assert var(main, "toolsContainer") == settings.TOOLS_CONTAINER
    assert var(main, "requestsContainer") == settings.REQUESTS_CONTAINER
    assert var(main, "queueName") == settings.DEFAULT_QUEUE
    assert param_default(main, "watchdogSchedule") == settings.DEFAULT_SCHEDULE


def test_every_setting_azure_needs_is_set():
    keys = set(app_settings())
    required = {name for name, needed in settings.APP_SETTINGS.items() if needed}
    missing = required - keys
    assert not missing, f"app settings missing from functionapp.bicep: {sorted(missing)}"
    # Optional ones are set too, so the deployment documents its choices.
    assert set(settings.APP_SETTINGS) <= keys


def test_app_settings_get_their_values_from_the_deployment():
    values = app_settings()
    params = parse(module_path("functionapp"))["parameters"]
    assert values[settings.QUEUE_SETTING] == "queueName"
    assert values[settings.SCHEDULE_SETTING] == "watchdogSchedule"
    assert values[settings.BATCH_ACCOUNT_URL] == "batchAccountUrl"
    assert values[f"{settings.STORAGE_CONNECTION}__accountName"] == "storageAccountName"
    assert values[f"{settings.SERVICE_BUS_CONNECTION}__fullyQualifiedNamespace"] == "serviceBusFullyQualifiedNamespace"
    for value in values.values():
        if isinstance(value, str) and re.fullmatch(r"[A-Za-z]\w*", value) and value not in {"managedidentity"}:
            assert value in params, f"app setting value {value!r} is neither a literal nor a module param"


def test_connections_are_identity_based():
    values = app_settings()
    # Host storage as the host identity, the Service Bus trigger as the app identity (tests/infra/test_roles.py).
    for prefix, client in ((settings.STORAGE_CONNECTION, "hostClientId"), (settings.SERVICE_BUS_CONNECTION, "appClientId")):
        assert prefix not in values, f"{prefix} as a connection string would carry a key"
        assert values[f"{prefix}__credential"] == "managedidentity"
        assert values[f"{prefix}__clientId"] == client
    assert values["AZURE_CLIENT_ID"] == "appClientId"  # DefaultAzureCredential picks the user-assigned identity
    assert settings.BATCH_ACCOUNT_KEY not in values
    assert settings.BATCH_ACCOUNT_NAME not in values  # only meaningful with a key (local emulator)
    assert values["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${appClientId};Authorization=AAD"


def test_no_setting_holds_a_key():
    for name, value in app_settings().items():
        rendered = text(value)
        for marker in ("AccountKey", "SharedAccessKey", "SharedAccessSignature", "list_func", "listKeys", "sig="):
            assert marker not in rendered, f"app setting {name} holds {marker}"


def test_flex_consumption_runtime_is_not_an_app_setting():
    values = app_settings()
    # Flex Consumption rejects these: the runtime lives in functionAppConfig.runtime.
    assert "FUNCTIONS_WORKER_RUNTIME" not in values
    assert "FUNCTIONS_EXTENSION_VERSION" not in values
    assert "WEBSITE_RUN_FROM_PACKAGE" not in values


# --- the app's triggers --------------------------------------------------------------------------

APP_FILES = [ROOT / "function_app.py", *sorted((ROOT / "functions").glob("*.py"))]


def _resolve(node: ast.AST) -> str | None:
    """A string argument: a literal, a name from shared.pure.settings, or an f-string over those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name | ast.Attribute):
        name = node.id if isinstance(node, ast.Name) else node.attr
        value = getattr(settings, name, None)
        if isinstance(value, str):
            return value
        if name == "EVENT_GRID":
            return "EventGrid"
        if name == "LOGS_AND_CONTAINER_SCAN":
            return "LogsAndContainerScan"
        return None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for part in node.values:
            value = _resolve(part.value) if isinstance(part, ast.FormattedValue) else _resolve(part)
            if value is None:
                return None
            parts.append(value)
        return "".join(parts)
    return None


def _triggers() -> list[dict]:
    """Every trigger/binding decorator on a function in function_app.py and functions/*.py."""
    found = []
    for path in APP_FILES:
        if not path.exists():
            continue
        for fn in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            name = fn.name
            calls = [d for d in fn.decorator_list if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)]
            for call in calls:
                if call.func.attr == "function_name":
                    arg = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "name"), None)
                    name = _resolve(arg) or name
            for call in calls:
                kwargs = {k.arg: k.value for k in call.keywords if k.arg}
                found.append({
                    "file": path.name,
                    "function": name,
                    "kind": call.func.attr,
                    "args": {k: _resolve(v) for k, v in kwargs.items()},
                    "raw": [_resolve(a) for a in call.args],
                })
    return [t for t in found if t["kind"] != "function_name"]


def _need_triggers(kind: str | None = None) -> list[dict]:
    triggers = _triggers()
    if kind:
        triggers = [t for t in triggers if t["kind"] == kind]
    if not triggers:
        present = [p.name for p in APP_FILES if p.exists()]
        pytest.skip(f"no {kind or 'trigger'} decorators in function_app.py or functions/*.py yet "
                    f"(files present: {present or 'none'}): nothing to check the templates against")
    return triggers


def test_blob_triggers_use_event_grid_and_match_the_subscriptions():
    blob = _need_triggers("blob_trigger")
    wired = {f["name"]: f["advancedFilters"] for f in var(parse(MAIN), "blobFunctions")}
    assert {t["function"] for t in blob} == set(wired), "Event Grid subscriptions != blob-triggered functions"
    samples = {}
    for t in blob:
        args = t["args"]
        assert args.get("source") == "EventGrid", f"{t['function']}: blob trigger without source=EventGrid"
        assert args.get("connection") == settings.STORAGE_CONNECTION, t
        path = args.get("path")
        if path is None:
            continue  # built at run time; the container check below needs a literal
        assert path.startswith(f"{settings.LOGS_CONTAINER}/"), f"{t['function']} watches {path}"
        # The subscription's filters must let a blob of this function's path through.
        sample = re.sub(r"\{\w+\}", "x", path.split("/", 1)[1])
        samples[t["function"]] = sample
        subject = f"/blobServices/default/containers/{settings.LOGS_CONTAINER}/blobs/{sample}"
        assert passes(wired[t["function"]], subject), (t["function"], subject)
    # A manifest goes to collect_node alone, and a bundle to no function at all.
    for name, expected in (("j/n/manifest.json", {"collect_node"}),
                           ("j/n/bundles/20260101T000000Z-0123abcd.zip", set()),
                           ("j/n/crashdumps/r/core.gz", {"collect_crash_dump"}), ("outside.txt", {"collect_stray"})):
        subject = f"/blobServices/default/containers/{settings.LOGS_CONTAINER}/blobs/{name}"
        assert {f for f, filters in wired.items() if passes(filters, subject)} == expected, name


def passes(filters: list[dict], subject: str) -> bool:
    """Event Grid's advanced filters on the subject: every filter must pass (AND), any value of one (OR);
    the negated operators pass only if no value matches.
    https://learn.microsoft.com/azure/event-grid/event-filtering#advanced-filtering"""
    tests = {"StringEndsWith": str.endswith, "StringContains": str.__contains__,
             "StringBeginsWith": str.startswith}
    for f in filters:
        assert f["key"] == "subject", f
        op = f["operatorType"]
        negated = op.replace("Not", "", 1) if op.startswith("StringNot") else None
        test = tests[negated or op]
        hit = any(test(subject.lower(), v.lower()) for v in f["values"])
        if hit == bool(negated):
            return False
    return True


def test_every_setting_a_binding_names_is_set():
    triggers = _need_triggers()
    values = app_settings()
    for t in triggers:
        for value in [*t["args"].values(), *t["raw"]]:
            for name in re.findall(r"%(\w+)%", value or ""):
                assert name in values, f"{t['function']} reads %{name}% but the app does not set it"
        connection = t["args"].get("connection")
        if connection:
            assert f"{connection}__credential" in values, f"{t['function']}: no identity settings for {connection}"


def test_event_grid_subscriptions_target_the_blob_webhook():
    doc = parse(module_path("eventgrid-subscriptions"))
    sub = body(one_resource(doc, "Microsoft.EventGrid/systemTopics/eventSubscriptions"))["properties"]
    assert sub["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert sub["filter"]["subjectBeginsWith"] == "/blobServices/default/containers/${logsContainer}/"
    assert sub["destination"]["endpointType"] == "WebHook"
    url = sub["destination"]["properties"]["endpointUrl"]
    assert url == "${webhookBase}?functionName=Host.Functions.${fn.name}&code=${blobsExtensionKey}"
    assert var(doc, "webhookBase").endswith("/runtime/webhooks/blobs")
    assert "blobs_extension" in text(var(doc, "blobsExtensionKey"))
    main = parse(MAIN)
    wiring = main["modules"]["eventGridSubscriptions"]["config"]
    assert wiring["condition"] == "wireEventGrid"
    assert param_default(main, "wireEventGrid") is False
    assert body(main["modules"]["eventGridSubscriptions"])["params"]["logsContainer"] == "logsContainer"


def test_host_json_extension_bundle():
    path = ROOT / "host.json"
    if not path.exists():
        pytest.skip("host.json does not exist yet: the lead writes it with function_app.py")
    host = json.loads(path.read_text())
    assert host.get("version") == "2.0"
    bundle = host.get("extensionBundle")
    assert bundle, "the Python app gets its binding extensions (Service Bus, Blob) from the bundle"
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    # Blob triggers with source=EventGrid need Storage Blobs extension 5.x: bundle 4.x.
    match = re.fullmatch(r"\[\s*(\d+)(?:\.[\d*]+)*\s*,\s*(\d+)(?:\.\d+)*\s*\)", bundle["version"].strip())
    assert match, f"unexpected bundle range {bundle['version']}"
    low, high = int(match[1]), int(match[2])
    assert low >= 4 and high == low + 1, bundle["version"]


# --- what azd deploys ----------------------------------------------------------------------------


def _funcignore_patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "negations are not modelled here"
    return patterns


def funcignored(relpath: str) -> bool:
    parts = relpath.split("/")
    for pattern in _funcignore_patterns():
        dir_only = pattern.endswith("/")
        pat = pattern.strip("/")
        candidates = parts[:-1] if dir_only else parts
        if "/" in pat:
            if any(fnmatch.fnmatch("/".join(parts[: i + 1]), pat) for i in range(len(parts) - (1 if dir_only else 0))):
                return True
        elif any(fnmatch.fnmatch(part, pat) for part in candidates):
            return True
    return False


@pytest.mark.parametrize("path", [
    "local/batch/api.py", "tests/conftest.py", "bench/bench_collect.py", "node_modules/azurite/package.json",
    ".venv/bin/python", "infra/main.bicep", "examples/job-request.json", ".git/HEAD", "requirements-dev.txt",
    "package.json", "local.settings.json", "shared/__pycache__/settings.cpython-311.pyc",
])
def test_funcignore_excludes(path):
    assert funcignored(path)


@pytest.mark.parametrize("path", [
    "function_app.py", "host.json", "requirements.txt", "shared/pure/settings.py", "functions/__init__.py",
    "shared/node/log_uploader.py", "schemas/job-request.v1.json",
])
def test_funcignore_keeps(path):
    assert not funcignored(path)


def test_funcignore_keeps_every_app_source_file():
    for folder in ("shared", "functions"):
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT).as_posix()
                assert not funcignored(rel), rel


def _simple_yaml(text_: str) -> dict:
    """Nested mappings of `key: value` by indentation; enough for azure.yaml (no lists, no flow style)."""
    root: dict = {}
    stack: list[tuple[int, dict]] = [(-1, root)]
    for raw in text_.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if value.strip():
            parent[key] = value.strip()
        else:
            parent[key] = {}
            stack.append((indent, parent[key]))
    return root


def test_azure_yaml():
    doc = _simple_yaml((ROOT / "azure.yaml").read_text())
    assert doc["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert doc["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    hook = doc["hooks"]["postdeploy"]
    for shell, script in (("posix", "infra/hooks/postdeploy.sh"), ("windows", "infra/hooks/postdeploy.ps1")):
        assert hook[shell]["run"] == script
        assert (ROOT / script).exists()
    # azd finds the app by this tag; the service name must match.
    site = body(one_resource(parse(module_path("functionapp")), "Microsoft.Web/sites"))
    assert site["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "api"}


def test_watchdog_schedule_is_a_parameter_the_timer_reads():
    """The timer's schedule is the app setting %WATCHDOG_SCHEDULE%, set from main.bicep's watchdogSchedule,
    which azd fills from WATCHDOG_SCHEDULE (default: settings.DEFAULT_SCHEDULE)."""
    timers = [t for t in _need_triggers("timer_trigger") if t["function"] == "watchdog"]
    assert [t["args"].get("schedule") for t in timers] == [f"%{settings.SCHEDULE_SETTING}%"]
    assert app_settings()[settings.SCHEDULE_SETTING] == "watchdogSchedule"
    assert body(parse(MAIN)["modules"]["functionApp"])["params"]["watchdogSchedule"] == "watchdogSchedule"
    given = json.loads((ROOT / "infra/main.parameters.json").read_text())["parameters"]
    assert given["watchdogSchedule"]["value"] == f"${{WATCHDOG_SCHEDULE={settings.DEFAULT_SCHEDULE}}}"
    assert given["wireEventGrid"]["value"] == "${WIRE_EVENT_GRID=false}"


def test_instance_memory_is_a_parameter():
    passed = body(parse(MAIN)["modules"]["functionApp"])["params"]
    assert passed["instanceMemoryMB"] == "functionInstanceMemoryMB"
    site = body(one_resource(parse(module_path("functionapp")), "Microsoft.Web/sites"))
    assert site["properties"]["functionAppConfig"]["scaleAndConcurrency"]["instanceMemoryMB"] == "instanceMemoryMB"
    given = json.loads((ROOT / "infra/main.parameters.json").read_text())["parameters"]
    default = param_default(parse(MAIN), "functionInstanceMemoryMB")
    assert given["functionInstanceMemoryMB"]["value"] == f"${{FUNCTION_INSTANCE_MEMORY_MB={default}}}"
