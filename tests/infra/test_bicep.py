"""Offline checks of infra/: every Bicep file parses, the modules fit together, and the resources keep
the security settings the design relies on (no keys, least-privilege roles)."""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.bicep_model import (
    INFRA,
    MAIN,
    accessor,
    bicep_files,
    body,
    condition,
    module_path,
    one_resource,
    param_default,
    parse,
    resources_of_type,
    text,
    var,
    walk,
)

ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
# Built-in role definition ids, as published by Azure (the same in every tenant).
BUILTIN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "db58b8e5-c6ad-4a2a-8342-4190687cbf4a": "Storage Blob Delegator",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "48e5e92e-a480-4e71-aa9c-2778f4c13781": "Azure Batch Job Submitter",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
    "29fe4964-1e60-436b-bd3a-77fd4c178b3c": "Azure Batch Account Contributor",
    "6aaa78f1-f7de-44ca-8722-c64a23943cae": "Azure Batch Data Contributor",
}


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_file_parses(path):
    doc = parse(path)
    assert doc.get("resources") or doc.get("modules"), f"{path.name} declares nothing"


def test_main_uses_every_module_and_only_existing_ones():
    modules = parse(MAIN)["modules"]
    used = {m["detail"]["path"] for m in modules.values()}
    on_disk = {f"modules/{p.name}" for p in (INFRA / "modules").glob("*.bicep")}
    assert used == on_disk


def _module_docs():
    for name, decl in parse(MAIN)["modules"].items():
        yield name, decl, parse(INFRA / decl["detail"]["path"])


@pytest.mark.parametrize("name", sorted(parse(MAIN)["modules"]) if MAIN.exists() else [])
def test_module_params_match_the_module(name):
    decl = parse(MAIN)["modules"][name]
    module = parse(INFRA / decl["detail"]["path"])
    passed = set(body(decl).get("params", {}))
    declared = module.get("parameters", {})
    unknown = passed - set(declared)
    assert not unknown, f"{name}: params the module does not declare: {sorted(unknown)}"
    required = {p for p, spec in declared.items() if "default" not in spec}
    missing = required - passed
    assert not missing, f"{name}: required module params not passed: {sorted(missing)}"


def test_module_outputs_used_in_main_exist():
    main = parse(MAIN)
    outputs = {name: set(parse(INFRA / d["detail"]["path"]).get("outputs", {})) for name, d in main["modules"].items()}
    used = set()
    for node in walk(main):
        chain = accessor(node) if isinstance(node, dict) else None
        if chain and len(chain) >= 3 and chain[0] in outputs and chain[1] == "outputs":
            used.add((chain[0], chain[2]))
    assert used, "main.bicep reads no module outputs?"
    missing = sorted(f"{m}.outputs.{o}" for m, o in used if o not in outputs[m])
    assert not missing, f"main.bicep reads outputs the modules do not declare: {missing}"


def test_parameters_file_matches_main():
    main_params = parse(MAIN)["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(main_params), sorted(set(given) - set(main_params))
    required = {p for p, spec in main_params.items() if "default" not in spec}
    assert required <= set(given), sorted(required - set(given))


# --- storage -------------------------------------------------------------------------------------


def test_storage_account_is_locked_down():
    doc = parse(module_path("storage"))
    props = body(one_resource(doc, "Microsoft.Storage/storageAccounts"))["properties"]
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowSharedKeyAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    containers = body(one_resource(doc, "Microsoft.Storage/storageAccounts/blobServices/containers"))
    assert containers["properties"]["publicAccess"] == "None"


def test_storage_creates_the_app_and_host_containers():
    doc = parse(module_path("storage"))
    decl = one_resource(doc, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert decl["config"]["loop_type"]["detail"]["array_name"] == "containers"
    listed = text(var(doc, "containers"))
    for name in ("logsContainer", "reportsContainer", "toolsContainer", "deploymentContainer", "hostContainers"):
        assert name in listed
    assert var(doc, "hostContainers") == ["azure-webjobs-hosts", "azure-webjobs-secrets"]


# --- Service Bus ---------------------------------------------------------------------------------


def test_service_bus_queue_settings():
    doc = parse(module_path("servicebus"))
    namespace = body(one_resource(doc, "Microsoft.ServiceBus/namespaces"))
    assert namespace["sku"]["name"] == "Standard"
    assert namespace["properties"]["disableLocalAuth"] is True
    queue = body(one_resource(doc, "Microsoft.ServiceBus/namespaces/queues"))["properties"]
    assert queue["requiresDuplicateDetection"] is True
    assert queue["deadLetteringOnMessageExpiration"] is True
    assert queue["requiresSession"] is False
    assert {k: queue[k] for k in ("maxDeliveryCount", "lockDuration", "duplicateDetectionHistoryTimeWindow",
                                  "defaultMessageTimeToLive")} == {
        "maxDeliveryCount": "maxDeliveryCount",
        "lockDuration": "lockDuration",
        "duplicateDetectionHistoryTimeWindow": "duplicateDetectionWindow",
        "defaultMessageTimeToLive": "defaultMessageTimeToLive",
    }
    # main.bicep pins the values the design asks for.
    passed = body(parse(MAIN)["modules"]["serviceBus"])["params"]
    assert passed["maxDeliveryCount"] == 10
    assert passed["lockDuration"] == "PT5M"
    assert re.fullmatch(r"PT\d+[MH]", passed["duplicateDetectionWindow"])
    assert re.fullmatch(r"P\d+D", passed["defaultMessageTimeToLive"])


# --- Batch ---------------------------------------------------------------------------------------


def test_batch_account_and_pool():
    doc = parse(module_path("batch"))
    account = body(one_resource(doc, "Microsoft.Batch/batchAccounts"))["properties"]
    assert account["poolAllocationMode"] == "BatchService"
    assert "SharedKey" not in account["allowedAuthenticationModes"]
    pool = body(one_resource(doc, "Microsoft.Batch/batchAccounts/pools"))
    assert pool["identity"]["type"] == "UserAssigned"
    assert list(pool["identity"]["userAssignedIdentities"]) == ["'${poolIdentityId}'"]
    vm = pool["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"]
    assert vm["nodeAgentSkuId"] == "batch.node.ubuntu 22.04"
    assert vm["imageReference"]["sku"] == "22_04-lts"
    assert pool["properties"]["taskSlotsPerNode"] == "taskSlotsPerNode"
    assert pool["properties"]["scaleSettings"]["fixedScale"]["targetDedicatedNodes"] == "nodeCount"
    # Nothing is allocated (or billed) unless asked for.
    assert param_default(doc, "nodeCount") == 0
    assert param_default(parse(MAIN), "poolNodeCount") == 0


# --- Function app --------------------------------------------------------------------------------


def test_function_app_is_flex_consumption_python_311():
    doc = parse(module_path("functionapp"))
    plan = body(one_resource(doc, "Microsoft.Web/serverfarms"))
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = body(one_resource(doc, "Microsoft.Web/sites"))
    assert site["identity"]["type"] == "UserAssigned"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert site["properties"]["httpsOnly"] is True


def test_monitoring_uses_entra_ingestion():
    doc = parse(module_path("monitoring"))
    component = body(one_resource(doc, "Microsoft.Insights/components"))["properties"]
    assert component["DisableLocalAuth"] is True
    assert component["WorkspaceResourceId"] is not None


# --- Keys and secrets ----------------------------------------------------------------------------

SECRET_MARKERS = re.compile(
    r"AccountKey|SharedAccessKey|listConnectionStrings|listAccountSas|listServiceSas|primaryKey|secondaryKey",
    re.IGNORECASE,
)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_no_account_keys_or_connection_strings(path):
    source = path.read_text()
    assert not SECRET_MARKERS.search(source), f"{path.name} handles a key or connection string"
    # The only key the templates read is the blob extension's webhook key, for Event Grid.
    list_calls = re.findall(r"\blist\w*\(", source)
    if path.name == "eventgrid-subscriptions.bicep":
        assert list_calls == ["listKeys("]
        assert "systemKeys.blobs_extension" in source
    else:
        assert not list_calls, f"{path.name} calls {list_calls}"


# --- Role assignments ----------------------------------------------------------------------------


def _role_assignments():
    doc = parse(module_path("roles"))
    return doc, resources_of_type(doc, ROLE_ASSIGNMENT)


def _role_ids(doc, decl) -> set[str]:
    """The built-in role ids an assignment may use (both branches of a conditional)."""
    roles = var(doc, "roles")
    ids = set()
    for node in walk(body(decl)["properties"]["roleDefinitionId"]):
        chain = accessor(node) if isinstance(node, dict) else None
        if chain and len(chain) == 2 and chain[0] == "roles":
            ids.add(roles[chain[1]])
    return ids


def test_role_ids_are_the_builtin_ones():
    doc, _ = _role_assignments()
    roles = var(doc, "roles")
    assert set(roles.values()) <= set(BUILTIN_ROLES), set(roles.values()) - set(BUILTIN_ROLES)
    assert not set(roles.values()) & set(BROAD_ROLES)


def test_every_role_assignment_says_why():
    lines = module_path("roles").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if f"'{ROLE_ASSIGNMENT}@" in line]
    assert len(starts) == len(_role_assignments()[1])
    for i in starts:
        assert lines[i - 1].lstrip().startswith("//"), f"no comment right above: {lines[i]}"


def _scope_name(decl) -> str | None:
    scope = body(decl).get("scope")
    if isinstance(scope, dict):  # hostContainerRefs[i]
        scope = scope["operator"]["operands"]["operand_1"]
    return scope


def test_every_role_assignment_is_scoped_to_one_resource():
    doc, assignments = _role_assignments()
    existing = {name for name, r in doc["resources"].items() if r.get("existing")}
    for name, decl in assignments.items():
        scope = _scope_name(decl)
        assert scope is not None, f"{name} has no scope (it would land on the whole resource group)"
        assert scope in existing, f"{name} is scoped to {scope}, not to a named resource"


def _assignment(name):
    doc, assignments = _role_assignments()
    decl = assignments[name]
    return doc, decl, _scope_name(decl), _role_ids(doc, decl), body(decl)["properties"]["principalId"]


@pytest.mark.parametrize(
    ("name", "principal", "scope", "roles"),
    [
        ("appQueueReceiver", "appPrincipalId", "queue", {"Azure Service Bus Data Receiver"}),
        ("appQueueSender", "appPrincipalId", "queue", {"Azure Service Bus Data Sender"}),
        ("appReportsContributor", "appPrincipalId", "reports", {"Storage Blob Data Contributor"}),
        ("appToolsContributor", "appPrincipalId", "tools", {"Storage Blob Data Contributor"}),
        ("appLogsAccess", "appPrincipalId", "logs", {"Storage Blob Data Reader", "Storage Blob Data Contributor"}),
        ("appDelegator", "appPrincipalId", "storage", {"Storage Blob Delegator"}),
        ("appHostBlobOwner", "appPrincipalId", "hostContainerRefs", {"Storage Blob Data Owner"}),
        ("appHostQueues", "appPrincipalId", "storage", {"Storage Queue Data Contributor"}),
        ("appBatchJobs", "appPrincipalId", "batchAccount", {"Azure Batch Job Submitter"}),
        ("appTelemetry", "appPrincipalId", "appInsights", {"Monitoring Metrics Publisher"}),
        ("poolLogsWriter", "poolPrincipalId", "logs", set()),  # the custom role below, no built-in one
        ("poolToolsReader", "poolPrincipalId", "tools", {"Storage Blob Data Reader"}),
        ("appRequestsContributor", "appPrincipalId", "requests", {"Storage Blob Data Contributor"}),
        ("operatorQueueSender", "operatorPrincipalId", "queue", {"Azure Service Bus Data Sender"}),
    ],
)
def test_role_assignment(name, principal, scope, roles):
    _, _, actual_scope, role_ids, actual_principal = _assignment(name)
    assert actual_principal == principal
    assert actual_scope == scope
    assert {BUILTIN_ROLES[r] for r in role_ids} == roles


def test_pool_may_only_create_blobs_in_job_logs():
    """A node can add its job's files and nothing else: one data action, no read, write or delete."""
    doc = parse(module_path("roles"))
    definition = body(one_resource(doc, "Microsoft.Authorization/roleDefinitions"))["properties"]
    assert definition["type"] == "CustomRole"
    (permissions,) = definition["permissions"]
    assert permissions["dataActions"] == ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action"]
    assert permissions["actions"] == [] and permissions["notDataActions"] == []
    (scope,) = definition["assignableScopes"]
    assert "resource_group" in text(scope) and accessor(scope) is None
    writer = body(_role_assignments()[1]["poolLogsWriter"])["properties"]
    assert accessor(writer["roleDefinitionId"]) == ["poolLogWriterRole", "id"]


def test_only_the_app_reads_the_requests_as_sent():
    doc, assignments = _role_assignments()
    on_requests = [n for n, d in assignments.items() if _scope_name(d) == "requests"]
    assert on_requests == ["appRequestsContributor"], "operators see the redacted copy in job-reports only"


def test_app_sends_only_to_its_queue_and_pool_only_touches_logs():
    doc, assignments = _role_assignments()
    sender = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"
    for name, decl in assignments.items():
        principal = body(decl)["properties"]["principalId"]
        if principal == "appPrincipalId" and sender in _role_ids(doc, decl):
            assert _scope_name(decl) == "queue", name  # scheduled resend on the active-job quota
        if principal == "poolPrincipalId":
            assert name in ("poolLogsWriter", "poolToolsReader")
    # Blob Data Owner on the whole account only as the documented, off-by-default fallback.
    fallback = assignments["appHostBlobOwnerAccount"]
    assert condition(fallback) == "hostRolesAtAccountScope"
    assert param_default(doc, "hostRolesAtAccountScope") is False
    operator = [n for n, d in assignments.items() if body(d)["properties"]["principalId"] == "operatorPrincipalId"]
    assert operator and all(condition(assignments[n]) == "withOperator" for n in operator)


def test_app_roles_exist_before_the_app_starts():
    modules = parse(MAIN)["modules"]
    assert "roles" in body(modules["functionApp"]).get("dependsOn", [])
