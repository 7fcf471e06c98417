"""The import contract of the core (shared/__init__.py): which room may import what, checked on the source.

- shared.pure: the standard library's computing modules, pydantic, itself and the node's naming rules
  (shared.node.lognames, pure too); no clock, no files.
- shared.adapters: the only modules importing the Azure SDKs; never the flows.
- shared.flows: pure and adapters; no SDK of their own.
- shared.node: the standard library only, and its own siblings (it is shipped to nodes as bare files).
- functions/: azure.functions and the binding extensions, the flows and the wiring; nothing else.
- nothing in the app imports the local stand-ins.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PURE_STDLIB = frozenset({
    "__future__", "abc", "base64", "binascii", "bisect", "collections", "copy", "dataclasses", "datetime", "enum",
    "fnmatch", "functools", "hashlib", "heapq", "html", "itertools", "json", "logging", "math", "operator",
    "posixpath", "re",
    "shlex", "statistics", "string", "struct", "textwrap", "typing", "unicodedata", "urllib.parse", "zlib",
})
PURE_THIRD_PARTY = frozenset({"pydantic", "pydantic_core", "isodate"})
AZURE_SDKS = ("azure.batch", "azure.storage", "azure.servicebus", "azure.identity", "azure.core")
# Reading the clock or the disk inside a decision makes it untestable by table.
IMPURE_CALLS = frozenset({"datetime.now", "datetime.utcnow", "date.today", "time.time", "time.monotonic",
                          "time.sleep", "open", "Path.read_text", "Path.read_bytes", "os.environ.get"})


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).rsplit(".", 1)[0] if path.is_relative_to(ROOT) else ""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from shared.pure import metadata` imports the module shared.pure.metadata.
            out += [f"{base}.{alias.name}" if base in ("shared", "shared.pure", "shared.adapters", "shared.flows",
                                                      "shared.node")
                    else base for alias in node.names]
    return out


def calls(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            found.add(ast.unparse(node.func))
    return found


def within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def stdlib(name: str) -> bool:
    return name.split(".")[0] in sys.stdlib_module_names


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


PURE = sources("shared/pure")
ADAPTERS = sources("shared/adapters")
FLOWS = sources("shared/flows")
NODE = sources("shared/node")
FUNCTIONS = sources("functions") + [ROOT / "function_app.py"]


def test_every_core_module_is_in_a_room():
    loose = [p.name for p in (ROOT / "shared").glob("*.py") if p.name != "__init__.py"]
    assert loose == [], "put each module of shared/ in pure/, adapters/, flows/ or node/"


@pytest.mark.parametrize("path", PURE, ids=ids(PURE))
def test_pure_modules_do_no_io(path):
    bad = [n for n in imports(path) if not (within(n, "shared.pure", "shared.node.lognames", *PURE_STDLIB)
                                            or within(n, *PURE_THIRD_PARTY))]
    assert bad == [], f"{path.name} imports {bad}: pure modules take what they need as arguments"
    assert calls(path) & IMPURE_CALLS == set(), f"{path.name} reads the clock or the disk: pass it in"


@pytest.mark.parametrize("path", ADAPTERS, ids=ids(ADAPTERS))
def test_adapters_never_import_flows(path):
    bad = [n for n in imports(path) if within(n, "shared.flows", "functions", "local")]
    assert bad == []


@pytest.mark.parametrize("path", FLOWS, ids=ids(FLOWS))
def test_flows_use_adapters_not_sdks(path):
    bad = [n for n in imports(path) if within(n, *AZURE_SDKS, "functions", "local")]
    assert bad == [], f"{path.name} imports {bad}: call an adapter instead"


@pytest.mark.parametrize("path", NODE, ids=ids(NODE))
def test_node_scripts_need_only_the_standard_library(path):
    siblings = {p.stem for p in NODE}
    bad = [n for n in imports(path) if not (stdlib(n) or n.split(".")[0] in siblings or n == "shared.node")]
    assert bad == [], f"{path.name} imports {bad}: a Batch node has only Python's standard library"


@pytest.mark.parametrize("path", FUNCTIONS, ids=ids(FUNCTIONS))
def test_functions_only_translate_payloads(path):
    allowed = ("azure.functions", "azurefunctions.extensions", "shared.flows", "shared.adapters.services",
               "shared.pure.settings", "shared.pure.report_page", "shared.pure.request", "functions",
               # the HTTP API's own rules: query and URL checks, and its pages
               "shared.pure.downloads", "shared.pure.jobs_list")
    bad = [n for n in imports(path) if not (stdlib(n) or within(n, *allowed))]
    assert bad == [], f"{path.name} imports {bad}: functions hand the payload to a flow"


def test_only_adapters_import_the_azure_sdks():
    offenders = [str(p.relative_to(ROOT)) for p in sources("shared", "functions") if p not in ADAPTERS
                 and any(within(n, *AZURE_SDKS) for n in imports(p))]
    assert offenders == []


def test_every_logger_of_the_app_redacts_secrets():
    """A filter on a logger covers that logger's records only: each logger must be made by redacting_logger."""
    offenders = [str(p.relative_to(ROOT)) for p in sources("shared", "functions") + [ROOT / "function_app.py"]
                 if p.name != "redact.py" and p not in NODE and "logging.getLogger" in calls(p)]
    assert offenders == [], "use shared.pure.redact.redacting_logger"


def test_the_contract_catches_a_violation(tmp_path):
    """The checks above must be able to fail: a pure module reading the clock and importing an SDK."""
    bad = tmp_path / "probe.py"
    bad.write_text("from datetime import datetime\nimport azure.storage.blob\nNOW = datetime.now()\n")
    assert "azure.storage.blob" in imports(bad)
    assert "datetime.now" in calls(bad)
    with pytest.raises(AssertionError, match="azure.storage.blob"):
        test_pure_modules_do_no_io(bad)
    bad.write_text("from datetime import datetime\nNOW = datetime.now()\n")
    with pytest.raises(AssertionError, match="clock"):
        test_pure_modules_do_no_io(bad)
