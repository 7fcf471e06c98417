"""The azd hooks, run for real against stub `az`, `azd` and `sleep` executables put first on PATH. The stubs
record every call; `az account show` answers with a configurable subscription. Checked: the CLI's
subscription is compared with the deployment's before anything waits, every azd call names its
environment (-e), no hook provisions again from inside azd, and the Event Grid subscriptions are created
with `az eventgrid system-topic event-subscription create` with main.bicep's filters."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shared.pure import settings
from tests.infra.bicep_model import MAIN, ROOT, body, module_path, one_resource, parse, var

HOOK_SH = ROOT / "infra/hooks/postdeploy.sh"
HOOK_PS1 = ROOT / "infra/hooks/postdeploy.ps1"
SUBSCRIPTION = "0000000a-1111-2222-3333-44444444444b"
OTHER_SUBSCRIPTION = "99999999-8888-7777-6666-555555555555"
ENV_NAME = "orch-ci"
KEY = "the-blobs-extension-key"
APP_URL = "https://func-orch-abc.azurewebsites.net"
CREATE = ["eventgrid", "system-topic", "event-subscription", "create"]

# Each stub appends {"argv": [...], ...} to $STUB_LOG/<name>.jsonl. az answers from STUB_* variables.
STUB = textwrap.dedent('''\
    #!{python}
    import json, os, sys
    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    record = {{"argv": args}}
    # az reads an argument given as @file from the file, as the real CLI does.
    files = {{a: open(a[1:]).read() for a in args if a.startswith("@") and os.path.exists(a[1:])}}
    if files:
        record["files"] = files
    log = os.path.join(os.environ["STUB_LOG"], name + ".jsonl")
    with open(log, "a") as f:
        f.write(json.dumps(record) + "\\n")

    def fail(message):
        sys.stderr.write(message + "\\n")
        sys.exit(1)

    if name != "az":
        sys.exit(0)
    if args[:2] == ["account", "show"]:
        if os.environ.get("STUB_ACCOUNT_ERROR"):
            fail(os.environ["STUB_ACCOUNT_ERROR"])
        print(os.environ["STUB_SUBSCRIPTION"])
    elif args[:3] == ["functionapp", "keys", "list"]:
        calls = sum(1 for line in open(log) if json.loads(line)["argv"][:3] == args[:3])
        if os.environ.get("STUB_KEYS_ERROR"):
            fail(os.environ["STUB_KEYS_ERROR"])
        if calls >= int(os.environ.get("STUB_KEY_FROM_CALL", "1")):
            print(os.environ.get("STUB_KEY", ""))
        else:
            print("")
    elif args[:4] == {create}:
        if os.environ.get("STUB_CREATE_ERROR"):
            fail(os.environ["STUB_CREATE_ERROR"])
    else:
        fail("stub az: unexpected command " + " ".join(args))
''')


@pytest.fixture
def stubs(tmp_path):
    bin_dir, log_dir = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log_dir.mkdir()
    for name in ("az", "azd", "sleep"):
        path = bin_dir / name
        path.write_text(STUB.format(python=sys.executable, create=CREATE))
        path.chmod(0o755)
    return bin_dir, log_dir


def _env(bin_dir: Path, log_dir: Path, **overrides) -> dict:
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(log_dir),
        "STUB_LOG": str(log_dir),
        "STUB_SUBSCRIPTION": SUBSCRIPTION,
        "STUB_KEY": KEY,
        "AZURE_ENV_NAME": ENV_NAME,
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "AZURE_RESOURCE_GROUP": f"rg-{ENV_NAME}",
        "AZURE_FUNCTION_APP_NAME": "func-orch-abc",
        "AZURE_FUNCTION_APP_URL": APP_URL,
        "AZURE_EVENTGRID_SYSTEM_TOPIC": "evgt-abc",
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _calls(log_dir: Path, name: str) -> list[dict]:
    path = log_dir / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_hook(stubs, command: list[str], **overrides):
    bin_dir, log_dir = stubs
    done = subprocess.run(command, env=_env(bin_dir, log_dir, **overrides), cwd=ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    return done, {name: _calls(log_dir, name) for name in ("az", "azd", "sleep")}


SH = ["sh", str(HOOK_SH)]


# --- what the subscriptions must be: main.bicep's blobFunctions, eventgrid-subscriptions.bicep's settings ----


def expected_subscriptions() -> dict:
    """name -> (function, advanced filters as [(key, operator, values)]), from main.bicep."""
    found = {}
    for fn in var(parse(MAIN), "blobFunctions"):
        name = f"{fn['name']}-blob-created".replace("_", "-")
        found[name] = (fn["name"], [(f["key"], f["operatorType"], f["values"]) for f in fn["advancedFilters"]])
    return found


def template_settings() -> dict:
    sub = body(one_resource(parse(module_path("eventgrid-subscriptions")),
                            "Microsoft.EventGrid/systemTopics/eventSubscriptions"))["properties"]
    dest = sub["destination"]["properties"]
    return {
        "--endpoint-type": sub["destination"]["endpointType"].lower(),
        "--event-delivery-schema": sub["eventDeliverySchema"].lower(),
        "--max-events-per-batch": str(dest["maxEventsPerBatch"]),
        "--preferred-batch-size-in-kilobytes": str(dest["preferredBatchSizeInKilobytes"]),
        "--max-delivery-attempts": str(sub["retryPolicy"]["maxDeliveryAttempts"]),
        "--event-ttl": str(sub["retryPolicy"]["eventTimeToLiveInMinutes"]),
        "--included-event-types": " ".join(sub["filter"]["includedEventTypes"]),
        "--subject-begins-with": sub["filter"]["subjectBeginsWith"].replace("${logsContainer}", settings.LOGS_CONTAINER),
    }


def parse_create(argv: list[str]) -> tuple[dict, list]:
    """The options of one `create` call, and its --advanced-filter groups (each may repeat)."""
    assert argv[:4] == CREATE
    options, filters, rest = {}, [], argv[4:]
    i = 0
    while i < len(rest):
        flag = rest[i]
        assert flag.startswith("-"), f"stray argument {flag!r} in {argv}"
        j = i + 1
        while j < len(rest) and not rest[j].startswith("--") and rest[j] != "-g":
            j += 1
        values = rest[i + 1:j]
        if flag == "--advanced-filter":
            filters.append((values[0], values[1], values[2:]))
        else:
            assert flag not in options, f"{flag} given twice"
            options[flag] = " ".join(values)
        i = j
    return options, filters


# --- the POSIX hook ------------------------------------------------------------------------------------


def test_creates_the_templates_subscriptions_with_the_cli(stubs):
    done, calls = run_hook(stubs, SH)
    assert done.returncode == 0, done.stderr
    az = [c["argv"] for c in calls["az"]]
    assert az[0][:2] == ["account", "show"], "the subscription is checked first"
    creates = [c for c in calls["az"] if c["argv"][:4] == CREATE]
    expected, fixed = expected_subscriptions(), template_settings()
    seen = {}
    for call in creates:
        options, filters = parse_create(call["argv"])
        name = options["--name"]
        function, wanted_filters = expected[name]
        assert filters == wanted_filters, name
        for flag, value in fixed.items():
            assert options[flag] == value, (name, flag)
        assert options["--subscription"] == SUBSCRIPTION
        assert options["-g"] == f"rg-{ENV_NAME}"
        assert options["--system-topic-name"] == "evgt-abc"
        # The endpoint holds the key: read from a file, never on the command line.
        endpoint = options["--endpoint"]
        assert endpoint.startswith("@")
        assert call["files"][endpoint] == (f"{APP_URL}/runtime/webhooks/blobs?functionName=Host.Functions."
                                           f"{function}&code={KEY}")
        seen[name] = function
    assert seen == {name: fn for name, (fn, _) in expected.items()}
    assert all(KEY not in " ".join(c["argv"]) for c in calls["az"])
    assert not calls["sleep"], "the key was there at once"
    assert "collect-stray-blob-created -> collect_stray" in done.stdout


def test_every_azd_call_names_the_environment_and_none_provisions(stubs):
    done, calls = run_hook(stubs, SH)
    assert done.returncode == 0, done.stderr
    for call in calls["azd"]:
        argv = call["argv"]
        assert "provision" not in argv, "a nested azd provision can hang the outer azd (Azure/azure-dev#3397)"
        assert "-e" in argv and argv[argv.index("-e") + 1] == ENV_NAME, argv
    source = HOOK_SH.read_text()
    assert not re.search(r"^\s*azd\b", source, re.MULTILINE), "the hook runs no azd command at all"


def test_a_cli_on_another_subscription_stops_before_anything_waits(stubs):
    done, calls = run_hook(stubs, SH, STUB_SUBSCRIPTION=OTHER_SUBSCRIPTION)
    assert done.returncode != 0
    assert [c["argv"][:2] for c in calls["az"]] == [["account", "show"]], "nothing after the check"
    assert not calls["sleep"] and not calls["azd"]
    message = done.stderr
    assert OTHER_SUBSCRIPTION in message and SUBSCRIPTION in message and ENV_NAME in message
    assert f"az account set --subscription {SUBSCRIPTION}" in message
    assert f"azd hooks run postdeploy -e {ENV_NAME}" in message


def test_subscription_ids_compare_without_case(stubs):
    done, calls = run_hook(stubs, SH, AZURE_SUBSCRIPTION_ID=SUBSCRIPTION.upper())
    assert done.returncode == 0, done.stderr


def test_a_cli_not_logged_in_stops_with_its_error(stubs):
    done, calls = run_hook(stubs, SH, STUB_ACCOUNT_ERROR="Please run 'az login' to setup account.")
    assert done.returncode != 0
    assert "Please run 'az login'" in done.stderr and "Run az login" in done.stderr
    assert len(calls["az"]) == 1 and not calls["sleep"]


@pytest.mark.parametrize("missing", ["AZURE_ENV_NAME", "AZURE_SUBSCRIPTION_ID", "AZURE_FUNCTION_APP_URL",
                                     "AZURE_EVENTGRID_SYSTEM_TOPIC"])
def test_a_missing_setting_is_named(stubs, missing):
    done, calls = run_hook(stubs, SH, **{missing: None})
    assert done.returncode != 0
    assert missing in done.stderr
    assert not calls["az"]


def test_waits_for_the_key_then_subscribes(stubs):
    done, calls = run_hook(stubs, SH, STUB_KEY_FROM_CALL="3")
    assert done.returncode == 0, done.stderr
    keys = [c for c in calls["az"] if c["argv"][:3] == ["functionapp", "keys", "list"]]
    assert len(keys) == 3
    assert all("--subscription" in c["argv"] and SUBSCRIPTION in c["argv"] for c in keys)
    assert [c["argv"] for c in calls["sleep"]] == [["10"], ["10"]]
    assert sum(1 for c in calls["az"] if c["argv"][:4] == CREATE) == len(expected_subscriptions())


def test_gives_up_on_the_key_after_the_timeout(stubs):
    done, calls = run_hook(stubs, SH, STUB_KEY="", POSTDEPLOY_KEY_TIMEOUT_SECONDS="30")
    assert done.returncode != 0
    assert len([c for c in calls["az"] if c["argv"][:3] == ["functionapp", "keys", "list"]]) == 3
    assert len(calls["sleep"]) == 2
    assert "did not appear within 30s" in done.stderr and f"azd hooks run postdeploy -e {ENV_NAME}" in done.stderr
    assert not [c for c in calls["az"] if c["argv"][:4] == CREATE]


def test_a_bad_timeout_is_named(stubs):
    done, calls = run_hook(stubs, SH, POSTDEPLOY_KEY_TIMEOUT_SECONDS="5m")
    assert done.returncode != 0 and "POSTDEPLOY_KEY_TIMEOUT_SECONDS" in done.stderr and "'5m'" in done.stderr
    assert not calls["az"]


def test_an_authorization_error_is_not_waited_out(stubs):
    error = "(AuthorizationFailed) The client 'x' does not have authorization to perform action 'listKeys'"
    done, calls = run_hook(stubs, SH, STUB_KEYS_ERROR=error)
    assert done.returncode != 0
    assert "AuthorizationFailed" in done.stderr
    assert not calls["sleep"]


def test_a_failed_subscription_is_reported_not_swallowed(stubs):
    error = "(InvalidRequest) Webhook validation handshake failed for https://func-orch-abc.azurewebsites.net"
    done, calls = run_hook(stubs, SH, STUB_CREATE_ERROR=error)
    assert done.returncode != 0
    assert "Webhook validation handshake failed" in done.stderr
    assert "collect-node-blob-created" in done.stderr
    assert KEY not in done.stderr + done.stdout


@pytest.mark.parametrize("shell", [s for s in ("dash", "bash") if shutil.which(s)])
def test_runs_under_the_shells_azd_may_use(stubs, shell):
    """azd runs posix hooks with `sh`: dash on Debian and Ubuntu, bash on macOS."""
    done, calls = run_hook(stubs, [shell, str(HOOK_SH)])
    assert done.returncode == 0, done.stderr
    assert sum(1 for c in calls["az"] if c["argv"][:4] == CREATE) == len(expected_subscriptions())
    (stubs[1] / "az.jsonl").unlink()
    done, calls = run_hook(stubs, [shell, str(HOOK_SH)], STUB_SUBSCRIPTION=OTHER_SUBSCRIPTION)
    assert done.returncode != 0 and len(calls["az"]) == 1


def test_template_managed_wiring_is_left_alone(stubs):
    done, calls = run_hook(stubs, SH, WIRE_EVENT_GRID="true")
    assert done.returncode == 0
    assert not calls["az"] and not calls["azd"]


# --- the Windows hook: run under pwsh where it exists, read as text everywhere ----------------------------


@pytest.mark.skipif(shutil.which("pwsh") is None, reason="PowerShell (pwsh) is not installed here")
def test_powershell_hook_behaves_like_the_posix_one(stubs):
    ps1 = ["pwsh", "-NoProfile", "-NonInteractive", "-File", str(HOOK_PS1)]
    done, calls = run_hook(stubs, ps1)
    assert done.returncode == 0, done.stderr
    names = {parse_create(c["argv"])[0]["--name"]: parse_create(c["argv"])[1]
             for c in calls["az"] if c["argv"][:4] == CREATE}
    assert names == {name: filters for name, (_, filters) in expected_subscriptions().items()}
    done, calls = run_hook(stubs, ps1, STUB_SUBSCRIPTION=OTHER_SUBSCRIPTION)
    assert done.returncode != 0 and f"az account set --subscription {SUBSCRIPTION}" in done.stderr
    assert len(calls["az"]) == 1 and not calls["sleep"]


def _ps1_subscriptions(source: str) -> dict:
    """Subscribe '<name>' '<function>' @('--advanced-filter', 'key', 'Op', 'v'...) calls of the .ps1."""
    found = {}
    for name, function, args in re.findall(r"^\s*Subscribe '([\w-]+)' '(\w+)' @\((.*?)\)", source,
                                           re.MULTILINE | re.DOTALL):
        words = re.findall(r"'([^']*)'", args)
        filters, current = [], None
        for word in words:
            if word == "--advanced-filter":
                current = []
                filters.append(current)
            else:
                current.append(word)
        found[name] = (function, [(f[0], f[1], f[2:]) for f in filters])
    return found


def test_powershell_hook_matches_the_template_and_the_posix_hook():
    source = HOOK_PS1.read_text()
    assert _ps1_subscriptions(source) == expected_subscriptions()
    # The same fixed options as the template.
    for flag, value in template_settings().items():
        if flag == "--subject-begins-with":
            assert "'--subject-begins-with', \"/blobServices/default/containers/$logsContainer/\"" in source
            assert f"$logsContainer = '{settings.LOGS_CONTAINER}'" in source
        else:
            assert f"'{flag}', '{value}'" in source, flag
    assert "'eventgrid', 'system-topic', 'event-subscription', 'create'" in source
    assert '"@$endpointFile"' in source, "the key goes through a file"
    # The subscription check comes first, and stops (Fail) before the key wait or any sleep.
    check = source.index("az account show")
    assert source.index("if ($current -ne $subscription) {") > check
    assert check < source.index("az functionapp keys list") < source.index("Start-Sleep")
    assert "az account set --subscription $subscription" in source
    # A timeout that is not a whole number is named, as the POSIX hook names it.
    assert "$timeoutText -notmatch '^[0-9]+$'" in source
    assert "POSTDEPLOY_KEY_TIMEOUT_SECONDS must be a whole number of seconds" in source
    # Exit codes are checked, errors are not thrown away.
    invocations = [line for line in source.splitlines() if re.search(r"(^\s*|=\s*|&\s*)az\s", line)]
    assert len(invocations) == 3  # account show, keys list, create
    for line in invocations:
        assert line.rstrip().endswith("2> $errFile"), line  # kept for the message, then $LASTEXITCODE checked
    assert source.count("$LASTEXITCODE") >= 3
    # No azd call at all, so none without -e and no nested provision.
    assert not re.search(r"^\s*(&\s*)?azd\b", source, re.MULTILINE)
    code = [line for line in source.splitlines() if not line.lstrip().startswith("#")]
    for line in code:  # azd appears only inside messages that tell the user what to run, with -e
        for command in re.findall(r"azd [\w ]+?(?= -e |[.:,\"]|$)", line):
            assert re.search(re.escape(command) + r" -e ", line), line


def test_azure_yaml_hooks_name_the_environment():
    text = (ROOT / "azure.yaml").read_text()
    runs = re.findall(r"^\s*run:\s*(.+)$", text, re.MULTILINE)
    assert "infra/hooks/postdeploy.sh" in runs and "infra/hooks/postdeploy.ps1" in runs
    inline = [r for r in runs if r.startswith("azd ")]
    assert inline, "the postdown reset"
    for command in inline:
        assert "provision" not in command
        assert re.search(r"-e (\"\$AZURE_ENV_NAME\"|\$env:AZURE_ENV_NAME)$", command), command
    assert not re.search(r"^\s*azd\b.*provision", HOOK_SH.read_text(), re.MULTILINE)


def _readme_block() -> str:
    text = (ROOT / "infra/README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    (block,) = [b for b in blocks if "event-subscription create" in b]
    return block.replace("\\\n", " ")


def test_readme_manual_commands_match_the_template():
    block = _readme_block()
    found = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["subscribe"]:
            name, function, rest = words[1], words[2], words[3:]
            filters = []
            while rest:
                assert rest[0] == "--advanced-filter", rest
                end = rest.index("--advanced-filter", 1) if "--advanced-filter" in rest[1:] else len(rest)
                filters.append((rest[1], rest[2], rest[3:end]))
                rest = rest[end:]
            found[name] = (function, filters)
    assert found == expected_subscriptions()
    (create,) = [line for line in block.splitlines() if "event-subscription create" in line]
    options, _ = parse_create(shlex.split(create.strip())[1:-1])  # without `az` and the trailing "$@"
    for flag, value in template_settings().items():
        if flag != "--endpoint-type":  # webhook is the CLI's default
            assert options[flag] == value, flag
    assert options["--endpoint"] == "$webhook.$fn&code=$key"
    assert "Host.Functions" in block and "/runtime/webhooks/blobs" in block


def test_readme_manual_commands_use_only_defined_variables():
    block = _readme_block()
    used = {v for v in re.findall(r"\$\{?(\w+)", block) if not v.isdigit()}  # $1, $2: the function's arguments
    assigned = set(re.findall(r"(?:^|[\s;])(\w+)=", block, re.MULTILINE))
    outputs = set(parse(MAIN)["outputs"])  # what `azd env get-values` brings in
    assert "azd env get-values" in block
    undefined = used - assigned - outputs - {"@"}
    assert not undefined, f"the README's commands use undefined variables: {sorted(undefined)}"
