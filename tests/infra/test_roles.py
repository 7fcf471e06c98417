"""Every role assignment in infra/modules/roles.bicep against the documented one: who gets which role on
which resource, and the page that says that is what the component needs. A new assignment fails
test_every_assignment_is_in_the_table until it is added here with its source."""

from __future__ import annotations

import json

import pytest

from tests.infra.bicep_model import (
    INFRA,
    MAIN,
    accessor,
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

# Built-in role definition ids, the same in every tenant:
# https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
BUILTIN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "db58b8e5-c6ad-4a2a-8342-4190687cbf4a": "Storage Blob Delegator",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "48e5e92e-a480-4e71-aa9c-2778f4c13781": "Azure Batch Job Submitter",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
# Never assigned: management roles that reach keys or every resource, and data roles wider than needed.
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",  # lists keys, re-enables shared keys
    "29fe4964-1e60-436b-bd3a-77fd4c178b3c": "Azure Batch Account Contributor",
    "6aaa78f1-f7de-44ca-8722-c64a23943cae": "Azure Batch Data Contributor",
}

# What each `existing` resource of roles.bicep is, so a scope is checked by type, not by name alone.
SCOPES = {
    "storage": "Microsoft.Storage/storageAccounts",
    "logs": "Microsoft.Storage/storageAccounts/blobServices/containers",
    "reports": "Microsoft.Storage/storageAccounts/blobServices/containers",
    "tools": "Microsoft.Storage/storageAccounts/blobServices/containers",
    "requests": "Microsoft.Storage/storageAccounts/blobServices/containers",
    "deploymentPackage": "Microsoft.Storage/storageAccounts/blobServices/containers",
    "queue": "Microsoft.ServiceBus/namespaces/queues",
    "batchAccount": "Microsoft.Batch/batchAccounts",
    "appInsights": "Microsoft.Insights/components",
}
# The container each container scope names (main.bicep's variables, passed through roles' params).
CONTAINER_PARAMS = {"logs": "logsContainer", "reports": "reportsContainer", "tools": "toolsContainer",
                    "requests": "requestsContainer", "deploymentPackage": "deploymentContainer"}

HOST_STORAGE = "https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity"
SB_TRIGGER = "https://learn.microsoft.com/azure/azure-functions/functions-reference?tabs=servicebus#configure-an-identity-based-connection"
SB_SCALE = "https://learn.microsoft.com/azure/azure-functions/functions-target-based-scaling#service-bus-queues-and-topics"
SB_ROLES = "https://learn.microsoft.com/azure/service-bus-messaging/authenticate-application#azure-built-in-roles-for-azure-service-bus"
FLEX_DEPLOY = "https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#configure-deployment-settings"
BLOB_ROLES = "https://learn.microsoft.com/azure/storage/blobs/assign-azure-role-data-access"
DELEGATION_KEY = "https://learn.microsoft.com/rest/api/storageservices/get-user-delegation-key#authorization"
USER_DELEGATION_SAS = "https://learn.microsoft.com/rest/api/storageservices/create-user-delegation-sas#assign-permissions-with-rbac"
PUT_BLOB = "https://learn.microsoft.com/rest/api/storageservices/put-blob#authorization"
BATCH_RBAC = "https://learn.microsoft.com/azure/batch/batch-role-based-access-control#azure-batch-job-submitter"
MONITOR_ENTRA = "https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication"

# name: (principal, scope, the role or roles it may take, source). A role of None is the custom role.
EXPECTED = {
    # app: the app's own code, its Service Bus trigger (and the scale controller), telemetry.
    "appQueueOwner": ("appPrincipalId", "queue", {"Azure Service Bus Data Owner"}, f"{SB_TRIGGER} {SB_SCALE}"),
    "appReportsContributor": ("appPrincipalId", "reports", {"Storage Blob Data Contributor"}, BLOB_ROLES),
    "appRequestsContributor": ("appPrincipalId", "requests", {"Storage Blob Data Contributor"}, BLOB_ROLES),
    "appToolsContributor": ("appPrincipalId", "tools", {"Storage Blob Data Contributor"},
                            f"{BLOB_ROLES} {USER_DELEGATION_SAS}"),
    "appLogsAccess": ("appPrincipalId", "logs", {"Storage Blob Data Reader", "Storage Blob Data Contributor"},
                      f"{BLOB_ROLES} {USER_DELEGATION_SAS}"),
    "appDelegator": ("appPrincipalId", "storage", {"Storage Blob Delegator"}, DELEGATION_KEY),
    "appBatchJobs": ("appPrincipalId", "batchAccount", {"Azure Batch Job Submitter"}, BATCH_RBAC),
    "appTelemetry": ("appPrincipalId", "appInsights", {"Monitoring Metrics Publisher"}, MONITOR_ENTRA),
    # host: identity-based AzureWebJobsStorage, as documented (account scope), and the deployment package.
    "hostBlobOwner": ("hostPrincipalId", "storage", {"Storage Blob Data Owner"}, HOST_STORAGE),
    "hostQueues": ("hostPrincipalId", "storage", {"Storage Queue Data Contributor"}, HOST_STORAGE),
    "hostTables": ("hostPrincipalId", "storage", {"Storage Table Data Contributor"}, HOST_STORAGE),
    "hostDeploymentContributor": ("hostPrincipalId", "deploymentPackage", {"Storage Blob Data Contributor"}, FLEX_DEPLOY),
    # pool: create-only on job-logs (custom role), read the uploader in tools.
    "poolLogsWriter": ("poolPrincipalId", "logs", None, PUT_BLOB),
    "poolToolsReader": ("poolPrincipalId", "tools", {"Storage Blob Data Reader"}, BLOB_ROLES),
    # operator (optional): the CLI.
    "operatorQueueSender": ("operatorPrincipalId", "queue", {"Azure Service Bus Data Sender"}, SB_ROLES),
    "operatorReportsReader": ("operatorPrincipalId", "reports", {"Storage Blob Data Reader"}, BLOB_ROLES),
    "operatorLogsReader": ("operatorPrincipalId", "logs", {"Storage Blob Data Reader"}, BLOB_ROLES),
    "operatorToolsContributor": ("operatorPrincipalId", "tools", {"Storage Blob Data Contributor"}, BLOB_ROLES),
    "operatorBatchJobs": ("operatorPrincipalId", "batchAccount", {"Azure Batch Job Submitter"}, BATCH_RBAC),
}

PRINCIPAL_TYPES = {"appPrincipalId": "ServicePrincipal", "hostPrincipalId": "ServicePrincipal",
                   "poolPrincipalId": "ServicePrincipal", "operatorPrincipalId": "operatorPrincipalType"}


def _roles_doc():
    return parse(module_path("roles"))


def _assignments() -> dict:
    return resources_of_type(_roles_doc(), ROLE_ASSIGNMENT)


def _role_ids(decl) -> set[str]:
    """The built-in role ids an assignment may use (both branches of a conditional)."""
    roles = var(_roles_doc(), "roles")
    ids = set()
    for node in walk(body(decl)["properties"]["roleDefinitionId"]):
        chain = accessor(node) if isinstance(node, dict) else None
        if chain and len(chain) == 2 and chain[0] == "roles":
            ids.add(roles[chain[1]])
    return ids


def test_every_assignment_is_in_the_table():
    assert set(_assignments()) == set(EXPECTED)
    for name, (_, _, _, source) in EXPECTED.items():
        assert all(url.startswith("https://learn.microsoft.com/") for url in source.split()), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_role_assignment_is_the_documented_one(name):
    principal, scope, roles, _source = EXPECTED[name]
    decl = _assignments()[name]
    props = body(decl)["properties"]
    assert props["principalId"] == principal
    assert props["principalType"] == PRINCIPAL_TYPES[principal]
    assert body(decl).get("scope") == scope, f"{name}: scope {body(decl).get('scope')}, documented {scope}"
    if roles is None:
        assert accessor(props["roleDefinitionId"]) == ["poolLogWriterRole", "id"]
    else:
        assert {BUILTIN_ROLES[r] for r in _role_ids(decl)} == roles
    # The name is a stable guid of scope, principal and role, so a redeploy updates, never duplicates.
    assert "guid" in text(body(decl)["name"]) and principal in text(body(decl)["name"])


@pytest.mark.parametrize("symbol", sorted(SCOPES))
def test_scopes_are_the_resources_they_name(symbol):
    doc = _roles_doc()
    resource = doc["resources"][symbol]
    assert resource.get("existing"), f"{symbol} is created here, not referenced"
    assert resource["type"] == SCOPES[symbol]
    if symbol in CONTAINER_PARAMS:
        assert body(resource)["name"] == CONTAINER_PARAMS[symbol]
        assert body(resource)["parent"] == "blobService"
        # main.bicep passes its own variable of the same name (the contract's container names).
        param = CONTAINER_PARAMS[symbol]
        assert body(parse(MAIN)["modules"]["roles"])["params"][param] == param


def test_role_ids_are_the_builtin_ones():
    roles = set(var(_roles_doc(), "roles").values())
    assert roles <= set(BUILTIN_ROLES), roles - set(BUILTIN_ROLES)
    assert not roles & set(FORBIDDEN_ROLES)
    for decl in _assignments().values():
        assert not _role_ids(decl) & set(FORBIDDEN_ROLES)


def test_every_role_assignment_says_why():
    lines = module_path("roles").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if f"'{ROLE_ASSIGNMENT}@" in line]
    assert len(starts) == len(_assignments())
    for i in starts:
        assert lines[i - 1].lstrip().startswith("//"), f"no comment right above: {lines[i]}"


def test_host_storage_roles_are_the_documented_set_on_the_account():
    """Functions documents Blob Data Owner for the host, Table Data Contributor for its diagnostic events,
    and Queue Data Contributor for the blob trigger, all on the AzureWebJobsStorage account."""
    on_account = {BUILTIN_ROLES[r] for n, d in _assignments().items()
                  if EXPECTED[n][0] == "hostPrincipalId" and EXPECTED[n][1] == "storage" for r in _role_ids(d)}
    assert on_account == {"Storage Blob Data Owner", "Storage Queue Data Contributor",
                          "Storage Table Data Contributor"}
    source = module_path("roles").read_text()
    assert HOST_STORAGE in source  # the comment names the source
    assert "Storage Account Contributor" in source  # and says why that row's management role is left out


def test_the_apps_own_identity_never_gets_the_hosts_wide_rights():
    for name, decl in _assignments().items():
        principal, scope = EXPECTED[name][0], EXPECTED[name][1]
        if principal != "appPrincipalId":
            continue
        roles = {BUILTIN_ROLES[r] for r in _role_ids(decl)}
        assert "Storage Blob Data Owner" not in roles, name
        if scope == "storage":
            assert roles == {"Storage Blob Delegator"}, f"{name}: account-wide {roles} for the app's code"


def test_service_bus_owner_is_on_the_queue_only():
    for name, decl in _assignments().items():
        if "090c5cfd-751d-490a-894a-3ce6f1109419" in _role_ids(decl):
            assert body(decl)["scope"] == "queue", f"{name}: Data Owner beyond the one queue"
            assert body(decl)["properties"]["principalId"] == "appPrincipalId", name


def test_pool_may_only_create_blobs_in_job_logs():
    """A node can add its job's files and nothing else: one data action, no read, write or delete."""
    doc = _roles_doc()
    definition = body(one_resource(doc, "Microsoft.Authorization/roleDefinitions"))["properties"]
    assert definition["type"] == "CustomRole"
    (permissions,) = definition["permissions"]
    assert permissions["dataActions"] == ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action"]
    assert permissions["actions"] == [] and permissions["notDataActions"] == []
    (scope,) = definition["assignableScopes"]
    assert "resource_group" in text(scope) and accessor(scope) is None


def test_only_the_app_reads_the_requests_as_sent():
    on_requests = [n for n, d in _assignments().items() if body(d).get("scope") == "requests"]
    assert on_requests == ["appRequestsContributor"], "operators see the redacted copy in job-reports only"


def test_operator_roles_are_optional_and_typed_by_azd():
    assignments = _assignments()
    operator = [n for n in assignments if EXPECTED[n][0] == "operatorPrincipalId"]
    assert operator and all(condition(assignments[n]) == "withOperator" for n in operator)
    main = parse(MAIN)
    passed = body(main["modules"]["roles"])["params"]
    assert passed["operatorPrincipalId"] == "principalId"
    assert passed["operatorPrincipalType"] == "principalType"
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert given["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert given["principalType"]["value"] == "${AZURE_PRINCIPAL_TYPE=User}"
    (allowed,) = [d["argument"] for d in main["parameters"]["principalType"]["decorators"] if d["type"] == "allowed"]
    assert set(allowed) == {"User", "ServicePrincipal", "Group"}
    assert param_default(main, "principalType") == "User"


def test_app_roles_exist_before_the_app_starts():
    modules = parse(MAIN)["modules"]
    assert "roles" in body(modules["functionApp"]).get("dependsOn", [])


def test_each_connection_uses_the_identity_its_roles_were_given_to():
    doc = parse(module_path("functionapp"))
    site = body(one_resource(doc, "Microsoft.Web/sites"))
    assert set(site["identity"]["userAssignedIdentities"]) == {"'${appIdentityId}'", "'${hostIdentityId}'"}
    storage = site["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert storage["authentication"] == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "hostIdentityId"}
    (config,) = [r for r in doc["resources"].values() if r["type"] == "Microsoft.Web/sites/config"]
    settings = body(config)["properties"]
    assert settings["AzureWebJobsStorage__clientId"] == "hostClientId"
    assert settings["ServiceBusConnection__clientId"] == "appClientId"
    assert settings["AZURE_CLIENT_ID"] == "appClientId"
    passed = body(parse(MAIN)["modules"]["functionApp"])["params"]
    roles = body(parse(MAIN)["modules"]["roles"])["params"]
    assert accessor(passed["hostClientId"]) == ["identities", "outputs", "hostClientId"]
    assert accessor(passed["appClientId"]) == ["identities", "outputs", "appClientId"]
    assert accessor(roles["hostPrincipalId"]) == ["identities", "outputs", "hostPrincipalId"]
    assert accessor(roles["appPrincipalId"]) == ["identities", "outputs", "appPrincipalId"]
