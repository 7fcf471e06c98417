"""A pool's node targets: fixed counts, low-priority/spot nodes, and the one kind of autoscale formula the
emulator can honour (fixed counts); pool features it cannot emulate are refused, never accepted and ignored."""

from __future__ import annotations

import re

from local.batch.errors import invalid_property
from local.batch.wire import optional

MAX_NODES = 1000
# `$TargetDedicatedNodes = 2; $TargetLowPriorityNodes = 1; $NodeDeallocationOption = taskcompletion;`
_ASSIGNMENT = re.compile(r"\s*\$(?P<name>\w+)\s*=\s*(?P<value>\w+)\s*")
_FORMULA_TARGETS = {"TargetDedicatedNodes": "dedicated", "TargetLowPriorityNodes": "low_priority"}
DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")


def parse_formula(formula) -> dict:
    """{dedicated, low_priority, deallocation} from a formula of fixed assignments, else refused.

    Batch evaluates formulas over service metrics ($CPUPercent, $PendingTasks...); the emulator has none, so it
    serves only those that set the targets to constants (https://learn.microsoft.com/azure/batch/batch-automatic-scaling).
    """
    if not isinstance(formula, str) or not formula.strip():
        raise invalid_property("autoScaleFormula", formula, "an autoscale pool needs a formula")
    out = {"dedicated": 0, "low_priority": 0, "deallocation": "requeue"}
    for statement in filter(str.strip, formula.split(";")):
        match = _ASSIGNMENT.fullmatch(statement)
        name, value = (match["name"], match["value"]) if match else ("", "")
        if name in _FORMULA_TARGETS and value.isdigit() and int(value) <= MAX_NODES:
            out[_FORMULA_TARGETS[name]] = int(value)
        elif name == "NodeDeallocationOption" and value in DEALLOCATION_OPTIONS:
            out["deallocation"] = value
        else:
            raise invalid_property("autoScaleFormula", statement.strip(), "the emulator supports only formulas that "
                                   "set $TargetDedicatedNodes and $TargetLowPriorityNodes to fixed counts")
    return out


def node_targets(body: dict) -> tuple[int, int]:
    """(dedicated, low-priority) nodes a pool body asks for."""
    if body.get("enableAutoScale"):
        if body.get("targetDedicatedNodes") or body.get("targetLowPriorityNodes"):
            raise invalid_property("targetDedicatedNodes", "", "an autoscale pool takes its targets from its formula")
        targets = parse_formula(body.get("autoScaleFormula"))
        return targets["dedicated"], targets["low_priority"]
    dedicated = optional(body, "targetDedicatedNodes", int, 0)
    low = optional(body, "targetLowPriorityNodes", int, 0)
    for name, value in (("targetDedicatedNodes", dedicated), ("targetLowPriorityNodes", low)):
        if not 0 <= value <= MAX_NODES:
            raise invalid_property(name, value, f"must be between 0 and {MAX_NODES}")
    return dedicated, low


def refuse_unsupported(body: dict) -> None:
    """Pool features that change what runs where, which the emulator cannot give: refuse them by name."""
    vm = body.get("virtualMachineConfiguration") or {}
    if vm.get("containerConfiguration"):
        raise invalid_property("virtualMachineConfiguration.containerConfiguration", "",
                               "containers are not supported by the emulator: tasks run as host processes")
    if body.get("cloudServiceConfiguration"):
        raise invalid_property("cloudServiceConfiguration", "", "cloud service pools are not supported by the "
                               "emulator (and retired by Batch); use virtualMachineConfiguration")
    if body.get("certificateReferences"):
        raise invalid_property("certificateReferences", "", "certificates are not supported by the emulator")
    if body.get("mountConfiguration"):
        raise invalid_property("mountConfiguration", "", "file system mounts are not supported by the emulator")
    for user in body.get("userAccounts") or []:
        if (user or {}).get("linuxUserConfiguration", {}).get("sshPrivateKey"):
            raise invalid_property("userAccounts.linuxUserConfiguration.sshPrivateKey", "",
                                   "SSH login is not supported by the emulator")
