# azd postdeploy hook (Windows): the same steps as postdeploy.sh, which explains them. Subscribe Event
# Grid to the blob-trigger webhooks once the code is deployed, with the Azure CLI, after checking that
# the CLI is on the deployment's subscription; no nested `azd provision` (Azure/azure-dev#3397).
# Run it again by hand with `azd hooks run postdeploy -e <env>`. Needs PowerShell 7.2 or later (a native
# command's redirected stderr is not an error record there).
$ErrorActionPreference = 'Stop'
# Exit codes of az are checked one by one below ($LASTEXITCODE); they must not throw on their own (7.3+).
$PSNativeCommandUseErrorActionPreference = $false

if ($env:WIRE_EVENT_GRID -eq 'true') {
    Write-Host 'WIRE_EVENT_GRID=true: the template manages the Event Grid subscriptions; nothing to do here.'
    exit 0
}

function Fail([string] $message) {
    [Console]::Error.WriteLine("postdeploy: $message")
    exit 1
}

$envName = $env:AZURE_ENV_NAME
if (-not $envName) { Fail 'AZURE_ENV_NAME is not set: run this as an azd hook (azd hooks run postdeploy -e <env>).' }
$again = "then run: azd hooks run postdeploy -e $envName"
foreach ($name in 'AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_FUNCTION_APP_URL',
        'AZURE_EVENTGRID_SYSTEM_TOPIC') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Fail "$name is not set in environment ${envName}: run azd provision -e $envName first."
    }
}
$subscription = $env:AZURE_SUBSCRIPTION_ID
$rg = $env:AZURE_RESOURCE_GROUP
$app = $env:AZURE_FUNCTION_APP_NAME
$appUrl = $env:AZURE_FUNCTION_APP_URL.TrimEnd('/')
$topic = $env:AZURE_EVENTGRID_SYSTEM_TOPIC
$logsContainer = 'job-logs'
$timeoutText = if ($null -ne $env:POSTDEPLOY_KEY_TIMEOUT_SECONDS) { $env:POSTDEPLOY_KEY_TIMEOUT_SECONDS } else { '300' }
if ($timeoutText -notmatch '^[0-9]+$') {
    Fail "POSTDEPLOY_KEY_TIMEOUT_SECONDS must be a whole number of seconds, not '$timeoutText'."
}
$timeout = [int] $timeoutText
$interval = 10

if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Fail "the Azure CLI (az) is not installed; it creates the Event Grid subscriptions. Install it, run az login, $again"
}

$work = Join-Path ([IO.Path]::GetTempPath()) ([IO.Path]::GetRandomFileName())
New-Item -ItemType Directory -Path $work | Out-Null
$errFile = Join-Path $work 'err'
$endpointFile = Join-Path $work 'endpoint'
try {
    # The CLI must be on the deployment's subscription before anything waits on it.
    $current = az account show --query id -o tsv 2> $errFile
    if ($LASTEXITCODE -ne 0) { Fail "az account show failed: $(Get-Content -Raw $errFile). Run az login, $again" }
    if ($current -ne $subscription) {
        Fail "the Azure CLI is on subscription '$current', but environment $envName is deployed in '$subscription'. Run: az account set --subscription $subscription (or az login to its tenant), $again"
    }

    # Wait for the blobs_extension key; errors that waiting cannot cure stop at once.
    $attempts = [Math]::Max(1, [Math]::Ceiling($timeout / $interval))
    $key = ''
    $last = 'the host has not created the key yet'
    for ($i = 1; ; $i++) {
        $key = az functionapp keys list --subscription $subscription -g $rg -n $app --query systemKeys.blobs_extension -o tsv 2> $errFile
        if ($LASTEXITCODE -eq 0) {
            if ($key -and $key -ne 'None' -and $key -ne 'null') { break }
            $key = ''
        } else {
            $last = Get-Content -Raw $errFile
            if ($last -match 'AuthorizationFailed|does not have authorization|ResourceGroupNotFound|ResourceNotFound|az login') {
                Fail "az functionapp keys list -g $rg -n $app failed: $last"
            }
        }
        if ($i -ge $attempts) {
            Fail "the blobs_extension key of $app did not appear within ${timeout}s ($last). Check that the app started (Application Insights, or az functionapp function list -g $rg -n $app), $again"
        }
        Start-Sleep -Seconds $interval
    }

    # One subscription per blob-triggered function, as modules/eventgrid-subscriptions.bicep would make it.
    # The endpoint (it holds the key) goes through a file, not the command line.
    function Subscribe([string] $name, [string] $functionName, [string[]] $filters) {
        Set-Content -NoNewline -Path $endpointFile -Value "$appUrl/runtime/webhooks/blobs?functionName=Host.Functions.$functionName&code=$key"
        $arguments = @('eventgrid', 'system-topic', 'event-subscription', 'create', '--subscription', $subscription,
            '-g', $rg, '--system-topic-name', $topic, '--name', $name,
            '--endpoint-type', 'webhook', '--endpoint', "@$endpointFile",
            '--event-delivery-schema', 'eventgridschema', '--max-events-per-batch', '1',
            '--preferred-batch-size-in-kilobytes', '64', '--max-delivery-attempts', '30', '--event-ttl', '1440',
            '--included-event-types', 'Microsoft.Storage.BlobCreated',
            '--subject-begins-with', "/blobServices/default/containers/$logsContainer/") + $filters + @('--output', 'none')
        & az @arguments 2> $errFile
        if ($LASTEXITCODE -ne 0) { Fail "creating the Event Grid subscription $name failed: $(Get-Content -Raw $errFile). $again" }
        Write-Host "Event Grid subscription $name -> $functionName"
    }

    Subscribe 'collect-node-blob-created' 'collect_node' @(
        '--advanced-filter', 'subject', 'StringEndsWith', '/manifest.json')
    Subscribe 'collect-crash-dump-blob-created' 'collect_crash_dump' @(
        '--advanced-filter', 'subject', 'StringContains', '/crashdumps/')
    Subscribe 'collect-stray-blob-created' 'collect_stray' @(
        '--advanced-filter', 'subject', 'StringNotEndsWith', '/manifest.json',
        '--advanced-filter', 'subject', 'StringNotContains', '/crashdumps/', '/bundles/')
} finally {
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}
