#!/bin/sh
# azd postdeploy hook: subscribe Event Grid to the blob-trigger webhooks once the code is deployed.
# The webhook URL carries the host's blobs_extension system key, which the blob extension creates when
# the host first loads a blob trigger, and Event Grid validates the endpoint when a subscription is
# created, so this cannot happen before the deploy. The subscriptions are created here with the Azure
# CLI, as Microsoft's Flex Consumption blob sample does, rather than by provisioning again from inside
# the hook (a nested `azd provision` in a hook has been seen to hang: Azure/azure-dev#3397). Their
# filters are main.bicep's blobFunctions (tests/infra/test_hooks.py runs this script and compares).
#
# Run it again by hand with `azd hooks run postdeploy -e <env>`. It needs `az`, logged in to the
# subscription the environment is deployed in; it stops at once, before waiting on anything, if not.
# POSTDEPLOY_KEY_TIMEOUT_SECONDS (default 300) bounds the wait for the key.
set -eu

if [ "${WIRE_EVENT_GRID:-false}" = "true" ]; then
  echo "WIRE_EVENT_GRID=true: the template manages the Event Grid subscriptions; nothing to do here."
  exit 0
fi

fail() {
  printf 'postdeploy: %s\n' "$*" >&2
  exit 1
}

env_name="${AZURE_ENV_NAME:-}"
[ -n "$env_name" ] || fail "AZURE_ENV_NAME is not set: run this as an azd hook (azd hooks run postdeploy -e <env>)."
again="then run: azd hooks run postdeploy -e $env_name"
for name in AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_URL \
  AZURE_EVENTGRID_SYSTEM_TOPIC; do
  eval "value=\${$name:-}"
  [ -n "$value" ] || fail "$name is not set in environment $env_name: run azd provision -e $env_name first."
done
subscription="$AZURE_SUBSCRIPTION_ID"
rg="$AZURE_RESOURCE_GROUP"
app="$AZURE_FUNCTION_APP_NAME"
app_url="${AZURE_FUNCTION_APP_URL%/}"
topic="$AZURE_EVENTGRID_SYSTEM_TOPIC"
logs_container="job-logs"
timeout="${POSTDEPLOY_KEY_TIMEOUT_SECONDS:-300}"
interval=10
case "$timeout" in
  "" | *[!0-9]*) fail "POSTDEPLOY_KEY_TIMEOUT_SECONDS must be a whole number of seconds, not '$timeout'." ;;
esac

command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is not installed; it creates the Event Grid subscriptions. Install it, run az login, $again"

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The CLI must be on the deployment's subscription before anything waits on it: a CLI logged in to
# another subscription would otherwise wait out the timeout and blame the app.
if ! current="$(az account show --query id -o tsv 2>"$work/err")"; then
  fail "az account show failed: $(cat "$work/err"). Run az login, $again"
fi
lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }
if [ "$(lower "$current")" != "$(lower "$subscription")" ]; then
  fail "the Azure CLI is on subscription '$current', but environment $env_name is deployed in '$subscription'. Run: az account set --subscription $subscription (or az login to its tenant), $again"
fi

# Wait for the blobs_extension key: the host starts on the first request or key lookup after deploy.
# "Not there yet" (no key, or a passing error) is waited out; errors that waiting cannot cure stop at once.
attempts=$(( (timeout + interval - 1) / interval ))
[ "$attempts" -ge 1 ] || attempts=1
key=""
last="the host has not created the key yet"
i=1
while :; do
  if key="$(az functionapp keys list --subscription "$subscription" -g "$rg" -n "$app" \
      --query systemKeys.blobs_extension -o tsv 2>"$work/err")"; then
    case "$key" in
      "" | None | null) key="" ;;
      *) break ;;
    esac
  else
    last="$(cat "$work/err")"
    case "$last" in
      *AuthorizationFailed* | *"does not have authorization"* | *ResourceGroupNotFound* | *ResourceNotFound* | \
        *"az login"*)
        fail "az functionapp keys list -g $rg -n $app failed: $last" ;;
    esac
  fi
  if [ "$i" -ge "$attempts" ]; then
    fail "the blobs_extension key of $app did not appear within ${timeout}s ($last). Check that the app started (Application Insights, or az functionapp function list -g $rg -n $app), $again"
  fi
  i=$((i + 1))
  sleep "$interval"
done

# One subscription per blob-triggered function, as modules/eventgrid-subscriptions.bicep would make it.
# The endpoint (it holds the key) goes through a file only this user can read, not the command line.
subscribe() {
  name="$1"
  fn="$2"
  shift 2
  printf '%s/runtime/webhooks/blobs?functionName=Host.Functions.%s&code=%s' "$app_url" "$fn" "$key" \
    >"$work/endpoint"
  if ! az eventgrid system-topic event-subscription create --subscription "$subscription" -g "$rg" \
      --system-topic-name "$topic" --name "$name" \
      --endpoint-type webhook --endpoint "@$work/endpoint" \
      --event-delivery-schema eventgridschema --max-events-per-batch 1 --preferred-batch-size-in-kilobytes 64 \
      --max-delivery-attempts 30 --event-ttl 1440 \
      --included-event-types Microsoft.Storage.BlobCreated \
      --subject-begins-with "/blobServices/default/containers/$logs_container/" \
      "$@" --output none 2>"$work/err"; then
    fail "creating the Event Grid subscription $name failed: $(cat "$work/err"). $again"
  fi
  echo "Event Grid subscription $name -> $fn"
}

subscribe collect-node-blob-created collect_node \
  --advanced-filter subject StringEndsWith /manifest.json
subscribe collect-crash-dump-blob-created collect_crash_dump \
  --advanced-filter subject StringContains /crashdumps/
subscribe collect-stray-blob-created collect_stray \
  --advanced-filter subject StringNotEndsWith /manifest.json \
  --advanced-filter subject StringNotContains /crashdumps/ /bundles/
