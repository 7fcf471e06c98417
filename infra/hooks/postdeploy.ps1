# azd postdeploy hook (Windows): same as postdeploy.sh. Subscribe Event Grid to the blob-trigger
# webhooks once the code is deployed and the host has created its blobs_extension system key.
$ErrorActionPreference = 'Stop'

if ($env:WIRE_EVENT_GRID -eq 'true') {
    Write-Host 'Event Grid subscriptions already managed by the template (WIRE_EVENT_GRID=true).'
    exit 0
}

$app = $env:AZURE_FUNCTION_APP_NAME
$rg = $env:AZURE_RESOURCE_GROUP
if (-not $app -or -not $rg) { throw 'run azd provision first' }

if (Get-Command az -ErrorAction SilentlyContinue) {
    $key = ''
    for ($i = 0; $i -lt 30 -and -not $key; $i++) {
        $key = az functionapp keys list -g $rg -n $app --query systemKeys.blobs_extension -o tsv 2>$null
        if (-not $key) { Start-Sleep -Seconds 10 }
    }
    if (-not $key) {
        throw "The blobs_extension key of $app did not appear after 5 minutes: check the app started, then run: azd env set WIRE_EVENT_GRID true; azd provision"
    }
} else {
    Write-Host "az CLI not found: not waiting for the blobs_extension key; if provisioning fails on it, rerun 'azd provision'."
}

azd env set WIRE_EVENT_GRID true
azd provision --no-prompt
