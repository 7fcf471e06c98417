#!/bin/sh
# azd postdeploy hook: subscribe Event Grid to the blob-trigger webhooks once the code is deployed.
# The subscriptions (infra/modules/eventgrid-subscriptions.bicep) read the host's blobs_extension
# system key with listKeys; the blob extension creates that key when the host first loads a blob
# trigger, and Event Grid validates the endpoint on creation, so this cannot happen before deploy.
set -eu

if [ "${WIRE_EVENT_GRID:-false}" = "true" ]; then
  echo "Event Grid subscriptions already managed by the template (WIRE_EVENT_GRID=true)."
  exit 0
fi

app="${AZURE_FUNCTION_APP_NAME:?run azd provision first}"
rg="${AZURE_RESOURCE_GROUP:?run azd provision first}"

# Wait for the blobs_extension key (the host starts on the first request or key lookup after deploy).
if command -v az >/dev/null 2>&1; then
  i=0
  key=""
  while [ $i -lt 30 ]; do
    key="$(az functionapp keys list -g "$rg" -n "$app" --query systemKeys.blobs_extension -o tsv 2>/dev/null || true)"
    [ -n "$key" ] && break
    i=$((i + 1))
    sleep 10
  done
  if [ -z "$key" ]; then
    echo "The blobs_extension key of $app did not appear after 5 minutes: check that the app started" >&2
    echo "(Application Insights, or 'az functionapp function list -g $rg -n $app'), then run:" >&2
    echo "  azd env set WIRE_EVENT_GRID true && azd provision" >&2
    exit 1
  fi
else
  echo "az CLI not found: not waiting for the blobs_extension key; if provisioning fails on it, rerun 'azd provision'."
fi

azd env set WIRE_EVENT_GRID true
azd provision --no-prompt
