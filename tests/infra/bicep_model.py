"""Load infra/*.bicep through pycep (a pure-Python Bicep parser) and walk what it returns.

pycep turns a file into JSON-like dicts: `parameters`, `variables`, `resources`, `modules`, `outputs`.
A resource or module wrapped in a loop or an `if` has its body one `config` level deeper; `body()`
unwraps that. Child resources declared inside a parent appear as `parent__child`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser  # pycep-parser, pinned in requirements-dev.txt

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def _parser() -> BicepParser:
    return BicepParser()


@cache
def parse(path: Path) -> dict[str, Any]:
    return _parser().parse(file_path=path)


def module_path(name: str) -> Path:
    return INFRA / "modules" / f"{name}.bicep"


def body(decl: dict[str, Any]) -> dict[str, Any]:
    """The object of a resource/module declaration, past any loop or condition wrapper."""
    cfg = decl["config"]
    while isinstance(cfg, dict) and ("loop_type" in cfg or "condition" in cfg) and "config" in cfg:
        cfg = cfg["config"]
    return cfg


def condition(decl: dict[str, Any]) -> Any:
    cfg = decl["config"]
    return cfg.get("condition") if isinstance(cfg, dict) else None


def resources_of_type(doc: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in doc.get("resources", {}).items() if r["type"] == rtype}


def one_resource(doc: dict[str, Any], rtype: str) -> dict[str, Any]:
    found = resources_of_type(doc, rtype)
    assert len(found) == 1, f"expected one {rtype}, found {sorted(found)}"
    return next(iter(found.values()))


def var(doc: dict[str, Any], name: str) -> Any:
    return doc["variables"][name]["value"]


def param_default(doc: dict[str, Any], name: str) -> Any:
    return doc["parameters"][name].get("default")


def accessor(expr: Any) -> list[str] | None:
    """`a.b.c` (a chain of property accessors on names) as ["a", "b", "c"], else None."""
    if isinstance(expr, str):
        return [expr]
    if not isinstance(expr, dict) or "operator" not in expr:
        return None
    op = expr["operator"]
    if op.get("type") != "property_accessor":
        return None
    left = accessor(op["operands"]["operand_1"])
    right = accessor(op["operands"]["operand_2"])
    if left is None or right is None:
        return None
    return left + right


def walk(node: Any):
    """Every dict and list nested in a parsed value, depth first (the node itself first)."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def text(node: Any) -> str:
    return json.dumps(node, sort_keys=True)
