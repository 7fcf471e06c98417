"""Offline checks of infra/: every Bicep file parses, the modules fit together, and the resources keep
the security settings the design relies on (no keys). Role assignments: test_roles.py; hooks: test_hooks.py."""

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
    module_path,
    one_resource,
    param_default,
    parse,
    text,
    var,
    walk,
)


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
    assert pool["properties"]["vmSize"] == "vmSize"
    # The pool gets the checked value, never the raw parameter.
    assert pool["properties"]["taskSlotsPerNode"] == "checkedTaskSlots"
    assert pool["properties"]["scaleSettings"]["fixedScale"]["targetDedicatedNodes"] == "nodeCount"
    # Nothing is allocated (or billed) unless asked for.
    assert param_default(doc, "nodeCount") == 0
    assert param_default(parse(MAIN), "poolNodeCount") == 0


# Batch: "The maximum value is the smaller of 4 times the number of cores of the vmSize of the pool or 256."
# https://learn.microsoft.com/azure/batch/batch-parallel-node-tasks and the taskSlotsPerNode property of
# the pool (https://learn.microsoft.com/rest/api/batchmanagement/pool/create). vCPUs of each size offered:
# https://learn.microsoft.com/azure/virtual-machines/sizes/general-purpose/dv3-series,
# .../general-purpose/dsv5-series, .../memory-optimized/esv5-series, .../compute-optimized/fsv2-series.
VM_SIZE_VCPUS = {
    "Standard_D2s_v3": 2, "Standard_D4s_v3": 4, "Standard_D8s_v3": 8, "Standard_D16s_v3": 16,
    "Standard_D32s_v3": 32,
    "Standard_D2s_v5": 2, "Standard_D4s_v5": 4, "Standard_D8s_v5": 8, "Standard_D16s_v5": 16,
    "Standard_D32s_v5": 32, "Standard_D64s_v5": 64, "Standard_D96s_v5": 96,
    "Standard_E2s_v5": 2, "Standard_E4s_v5": 4, "Standard_E8s_v5": 8, "Standard_E16s_v5": 16,
    "Standard_F2s_v2": 2, "Standard_F4s_v2": 4, "Standard_F8s_v2": 8, "Standard_F16s_v2": 16,
    "Standard_F32s_v2": 32, "Standard_F72s_v2": 72,
}


class DeploymentError(Exception):
    """What ARM does with an expression that cannot be evaluated: the deployment stops."""


def evaluate(node, env: dict):
    """The few Bicep expression forms batch.bicep uses, as ARM evaluates them. A bare string is a name when
    env has it and a literal otherwise (pycep gives both as strings)."""
    if isinstance(node, bool | int):
        return node
    if isinstance(node, str):
        if node in env:
            return env[node]
        return re.sub(r"\$\{(\w+)\}", lambda m: str(env[m[1]]), node)
    if isinstance(node, dict) and "function" in node:
        fn = node["function"]
        args = [evaluate(v, env) for v in fn["parameters"].values()]
        return {"min": min, "max": max}[fn["type"]](*args)
    if isinstance(node, dict) and "operator" in node:
        op, operands = node["operator"]["type"], node["operator"]["operands"]
        if op == "conditional":
            chosen = "true_value" if evaluate(operands["condition"], env) else "false_value"
            return evaluate(operands[chosen], env)
        left, right = evaluate(operands["operand_1"], env), evaluate(operands["operand_2"], env)
        if op == "index_accessor":
            if right not in left:
                raise DeploymentError(f"The language expression property '{right}' doesn't exist")
            return left[right]
        return {"multiply": lambda a, b: a * b, "less_than_or_equals": lambda a, b: a <= b}[op](left, right)
    if isinstance(node, dict):  # an object literal
        return {k: evaluate(v, env) for k, v in node.items()}
    raise AssertionError(f"not modelled: {node}")


def _batch_env(vm_size: str, slots: int) -> dict:
    doc = parse(module_path("batch"))
    env = {"vmSize": vm_size, "taskSlotsPerNode": slots}
    for name in ("vmSizeVcpus", "maxTaskSlots", "taskSlotsCheck"):
        env[name] = evaluate(var(doc, name), env)
    return env


def _checked_slots(vm_size: str, slots: int) -> int:
    return evaluate(var(parse(module_path("batch")), "checkedTaskSlots"), _batch_env(vm_size, slots))


def test_vm_sizes_offered_are_the_ones_whose_vcpus_are_known():
    batch, main = parse(module_path("batch")), parse(MAIN)
    table = var(batch, "vmSizeVcpus")
    assert table == VM_SIZE_VCPUS

    def allowed(doc, param):
        (decorator,) = [d for d in doc["parameters"][param]["decorators"] if d["type"] == "allowed"]
        return decorator["argument"]

    assert allowed(batch, "vmSize") == list(table)
    assert allowed(main, "poolVmSize") == list(table), "main.bicep offers a size batch.bicep cannot bound"
    assert param_default(main, "poolVmSize") in table and param_default(batch, "vmSize") in table
    assert body(main["modules"]["batch"])["params"]["vmSize"] == "poolVmSize"
    assert body(main["modules"]["batch"])["params"]["taskSlotsPerNode"] == "poolTaskSlotsPerNode"


@pytest.mark.parametrize("vm_size", sorted(VM_SIZE_VCPUS))
def test_task_slots_are_bounded_by_the_vm_size(vm_size):
    bound = min(4 * VM_SIZE_VCPUS[vm_size], 256)
    assert _batch_env(vm_size, 1)["maxTaskSlots"] == bound
    assert _checked_slots(vm_size, bound) == bound
    assert _checked_slots(vm_size, 1) == 1
    with pytest.raises(DeploymentError) as refused:
        _checked_slots(vm_size, bound + 1)
    # The error ARM shows names the setting, the value, the bound and the size.
    assert f"BATCH_POOL_TASK_SLOTS={bound + 1} is over {bound}" in str(refused.value)
    assert vm_size in str(refused.value)


def test_task_slots_cap_at_256_and_the_default_fits():
    assert _batch_env("Standard_F72s_v2", 1)["maxTaskSlots"] == 256  # 4 x 72 = 288
    assert _batch_env("Standard_D96s_v5", 1)["maxTaskSlots"] == 256
    main = parse(MAIN)
    default = param_default(main, "poolTaskSlotsPerNode")
    assert _checked_slots(param_default(main, "poolVmSize"), default) == default
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert given["poolTaskSlotsPerNode"]["value"] == f"${{BATCH_POOL_TASK_SLOTS={default}}}"


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
