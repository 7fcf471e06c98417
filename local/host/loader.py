"""Import an app's `function_app.py` and describe its functions from the azure-functions library's own objects.

Like the Python worker's indexing: the module must expose `app` (a `func.FunctionApp`), `get_functions()` is
called once, and each binding is read from `Function.get_raw_bindings()` (the JSON the worker sends the host).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from .bindings import BindingSpec, describe_binding
from .errors import HostConfigError
from .settings import SettingResolver

log = logging.getLogger("local.host.loader")

TRIGGERS = {"serviceBusTrigger", "timerTrigger", "blobTrigger", "httpTrigger"}
# Binding properties that are names or fixed values, never `%setting%` expressions.
_NOT_RESOLVED = {"name", "type", "direction", "connection", "dataType"}


@dataclass
class FunctionSpec:
    name: str
    callable: Any
    trigger: dict  # the trigger binding as function.json spells it, `%settings%` resolved
    param_types: dict[str, Any] = field(default_factory=dict)
    context_param: str | None = None
    return_type: Any = None  # the return annotation, if any
    bindings: list[BindingSpec] = field(default_factory=list)  # input and output bindings (bindings.py)

    @property
    def function_id(self) -> str:
        # The host's full name for a function; timer status and blob receipt paths are keyed by it.
        return f"Host.Functions.{self.name}"

    @property
    def trigger_type(self) -> str:
        return self.trigger["type"]

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.callable)

    @property
    def trigger_param_type(self) -> Any:
        return self.param_types.get(self.trigger["name"])


def import_app(app_dir: Path) -> func.FunctionApp:
    script = app_dir / "function_app.py"
    if not script.exists():
        raise HostConfigError(f"{script} not found: pass --app-dir with the folder holding function_app.py")
    # The app imports its own packages (functions/, shared/) relative to its root, as under the worker.
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location("function_app", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop("function_app", None)
        log.exception("import of function_app.py failed", extra={"script": str(script)})
        raise HostConfigError(f"importing {script} failed: {type(exc).__name__}: {exc}; "
                              "fix the error (traceback in the log above) and start again") from exc
    app = getattr(module, "app", None)
    if not isinstance(app, func.FunctionApp):
        raise HostConfigError(f"{script} must define `app = func.FunctionApp()` at module level "
                              f"(found {type(app).__name__})")
    return app


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        # Unresolvable string annotations: fall back to whatever is there; only exact types matter below.
        return {}


def _param_types(fn: Any, hints: dict[str, Any]) -> dict[str, Any]:
    return {name: hints.get(name, p.annotation) for name, p in inspect.signature(fn).parameters.items()}


def _resolve(binding: dict, resolver: SettingResolver, function: str) -> dict:
    out = dict(binding)
    for key, value in binding.items():
        if key not in _NOT_RESOLVED and isinstance(value, str):
            out[key] = resolver.resolve(value, function, binding.get("name", "?"), key)
    return out


def _check_trigger(function: str, trigger: dict) -> None:
    kind, name = trigger["type"], trigger["name"]
    where = f"function {function!r}, binding {name!r}"
    if kind not in TRIGGERS:
        raise HostConfigError(f"{where}: trigger type {kind!r} is not supported by the dev host "
                              f"(supported: {', '.join(sorted(TRIGGERS))})")
    if kind == "serviceBusTrigger":
        if trigger.get("topicName") and not trigger.get("subscriptionName"):
            raise HostConfigError(f"{where}: a topic trigger needs subscription_name")
        if trigger.get("isSessionsEnabled"):
            raise HostConfigError(f"{where}: session-enabled triggers are not supported locally")
        if str(trigger.get("cardinality") or "one").lower() != "one":
            raise HostConfigError(f"{where}: cardinality 'many' is not supported by the dev host; "
                                  "receive one message per invocation")
        if not trigger.get("queueName") and not trigger.get("topicName"):
            raise HostConfigError(f"{where}: queue_name is empty")
    if kind == "blobTrigger" and "/" not in trigger.get("path", "").strip("/"):
        raise HostConfigError(f"{where}: path {trigger.get('path')!r} must be 'container/pattern', "
                              "e.g. 'job-logs/{name}'")
    if kind == "timerTrigger" and not trigger.get("schedule"):
        raise HostConfigError(f"{where}: schedule is empty")


def describe(app: func.FunctionApp, resolver: SettingResolver,
             only: tuple[str, ...] | None = None) -> list[FunctionSpec]:
    """The app's functions (or just `only`, like `func start --functions`), checked and with settings resolved."""
    functions = app.get_functions()  # once, as the worker does: it builds and validates the functions
    names = [f.get_function_name() for f in functions]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise HostConfigError(f"functions {unknown} were asked for but the app defines only {sorted(names)}")
    specs = []
    for function in functions:
        name = function.get_function_name()
        if only is not None and name not in only:
            continue
        bindings = [_resolve(json.loads(raw), resolver, name) for raw in function.get_raw_bindings()]
        trigger = next((b for b in bindings if b["type"] in TRIGGERS or b["type"].endswith("Trigger")), None)
        if trigger is None:
            raise HostConfigError(f"function {name!r} has no trigger")
        _check_trigger(name, trigger)
        fn = function.get_user_function()
        hints = _hints(fn)
        types = _param_types(fn, hints)
        others = []
        for binding in bindings:
            if binding is trigger:
                continue
            if binding["type"] == "http" and binding["name"] == "$return":
                continue
            others.append(describe_binding(name, binding, types, resolver))
        if trigger["name"] not in types:
            raise HostConfigError(f"function {name!r}: its trigger binding is named {trigger['name']!r} but "
                                  f"the Python function has no parameter of that name (arg_name)")
        context = next((p for p, t in types.items() if p != trigger["name"]
                        and (p == "context" or (isinstance(t, type) and issubclass(t, func.Context)))), None)
        extra = [p for p in types if p not in (trigger["name"], context, *(b.name for b in others))]
        if extra:
            raise HostConfigError(f"function {name!r}: parameters {extra} match no binding; "
                                  "every parameter must be a binding or `context`")
        specs.append(FunctionSpec(name=name, callable=fn, trigger=trigger,
                                  param_types=types, context_param=context, bindings=others,
                                  return_type=hints.get("return")))
    return specs
