// Batch Orchestrator on Azure: Functions (Flex Consumption) + Batch + Service Bus + Storage.
// `azd up` provisions this and deploys the app; its postdeploy hook (infra/hooks/postdeploy.sh) then
// subscribes the blob-trigger webhooks with the Azure CLI, with the same filters as blobFunctions below
// (see infra/README.md). Without azd, provision again with wireEventGrid=true after the code is deployed.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names the resource group and seeds the unique resource suffix.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer Flex Consumption and the Batch VM size.')
param location string

@description('Object id of the operator running azd and the CLI (azd passes AZURE_PRINCIPAL_ID); empty for none.')
param principalId string = ''

@description('What principalId is (AZURE_PRINCIPAL_TYPE): User when a person runs azd, ServicePrincipal in CI (a service principal or managed identity); a mismatch fails with UnmatchedPrincipalType.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

@description('Id of the example Batch pool.')
param poolId string = 'orchestrator-pool'

@description('VM size of the example pool; the sizes modules/batch.bicep knows the vCPUs of, which bound the task slots.')
@allowed([
  'Standard_D2s_v3'
  'Standard_D4s_v3'
  'Standard_D8s_v3'
  'Standard_D16s_v3'
  'Standard_D32s_v3'
  'Standard_D2s_v5'
  'Standard_D4s_v5'
  'Standard_D8s_v5'
  'Standard_D16s_v5'
  'Standard_D32s_v5'
  'Standard_D64s_v5'
  'Standard_D96s_v5'
  'Standard_E2s_v5'
  'Standard_E4s_v5'
  'Standard_E8s_v5'
  'Standard_E16s_v5'
  'Standard_F2s_v2'
  'Standard_F4s_v2'
  'Standard_F8s_v2'
  'Standard_F16s_v2'
  'Standard_F32s_v2'
  'Standard_F72s_v2'
])
param poolVmSize string = 'Standard_D2s_v3'

@description('Dedicated nodes of the example pool. Allocated nodes cost money even when idle: keep 0 until you run jobs.')
@minValue(0)
@maxValue(100)
param poolNodeCount int = 0

@description('Tasks that may run at once on one pool node: at most min(4 x vCPUs of poolVmSize, 256); more stops the deployment.')
@minValue(1)
@maxValue(256)
param poolTaskSlotsPerNode int = 2

@description('Comma list of pools jobs may target (ALLOWED_POOLS); empty means the example pool only.')
param allowedPools string = ''

@description('WATCHDOG_SCHEDULE: NCRONTAB (six fields) of the watchdog timer. Each run is billed at least 1 s of the instance memory: every minute is about 43,800 runs a month (infra/README.md).')
@minLength(11)
param watchdogSchedule string = '0 */1 * * * *'

@description('Memory of each Flex Consumption instance; executions are billed by it (GB-s), so it scales the idle cost of the watchdog.')
@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('JOB_RETENTION_DAYS: days a finished job is kept in Batch.')
param jobRetentionDays string = '7'

@description('MAX_SUBMIT_CONCURRENCY: parallel Batch calls of one submit.')
param maxSubmitConcurrency string = '8'

@description('Days before raw blobs in job-logs are deleted by a lifecycle rule; 0 keeps them.')
param logRetentionDays int = 30

@description('Create the Event Grid subscriptions to the blob-trigger webhooks in the template. Needs the code deployed first. With azd leave it false: the postdeploy hook creates them.')
param wireEventGrid bool = false

@description('false (default): release tasks upload with the pool identity and the app only reads job-logs; true: the app signs a create-only SAS for them instead, and one with write for Batch outputFiles (app needs write on job-logs).')
param appIssuesUploadSas bool = false

// Names the app relies on (shared/pure/settings.py): containers and queue are part of the contract.
var logsContainer = 'job-logs'
var reportsContainer = 'job-reports'
var toolsContainer = 'tools'
var requestsContainer = 'job-requests-private'
var queueName = 'job-requests'

// Blob-triggered functions (functions/collect.py) and the Event Grid advanced filters that send each
// only its own blobs (docs/DESIGN.md blob layout: job-logs/{jobId}/{nodeId}/manifest.json, bundles/,
// crashdumps/). collect_node runs once per node, on its manifest; collect_stray sees only names outside
// those, so a node's bundle costs no invocation at all. Operators:
// https://learn.microsoft.com/azure/event-grid/event-filtering#advanced-filtering
// The azd postdeploy hooks (infra/hooks/postdeploy.sh, .ps1) pass the same filters to the Azure CLI;
// tests/infra run the hook and check that they agree with this list.
var blobFunctions = [
  {
    name: 'collect_node'
    advancedFilters: [
      {
        operatorType: 'StringEndsWith'
        key: 'subject'
        values: [
          '/manifest.json'
        ]
      }
    ]
  }
  {
    name: 'collect_crash_dump'
    advancedFilters: [
      {
        operatorType: 'StringContains'
        key: 'subject'
        values: [
          '/crashdumps/'
        ]
      }
    ]
  }
  {
    name: 'collect_stray'
    advancedFilters: [
      {
        operatorType: 'StringNotEndsWith'
        key: 'subject'
        values: [
          '/manifest.json'
        ]
      }
      {
        operatorType: 'StringNotContains'
        key: 'subject'
        values: [
          '/crashdumps/'
          '/bundles/'
        ]
      }
    ]
  }
]

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  app: 'batch-orchestrator'
}
var functionAppName = 'func-orch-${resourceToken}'
var deploymentContainer = 'app-package-${resourceToken}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identities 'modules/identities.bicep' = {
  name: 'identities'
  scope: rg
  params: {
    location: location
    tags: tags
    appIdentityName: 'id-func-${resourceToken}'
    hostIdentityName: 'id-host-${resourceToken}'
    poolIdentityName: 'id-pool-${resourceToken}'
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: 'st${resourceToken}'
    logsContainer: logsContainer
    reportsContainer: reportsContainer
    toolsContainer: toolsContainer
    requestsContainer: requestsContainer
    deploymentContainer: deploymentContainer
    logRetentionDays: logRetentionDays
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    location: location
    tags: tags
    namespaceName: 'sb-${resourceToken}'
    queueName: queueName
    maxDeliveryCount: 10
    lockDuration: 'PT5M'
    duplicateDetectionWindow: 'PT1H'
    defaultMessageTimeToLive: 'P7D'
  }
}

module batch 'modules/batch.bicep' = {
  name: 'batch'
  scope: rg
  params: {
    location: location
    tags: tags
    batchAccountName: 'ba${resourceToken}'
    poolId: poolId
    poolIdentityId: identities.outputs.poolIdentityId
    vmSize: poolVmSize
    nodeCount: poolNodeCount
    taskSlotsPerNode: poolTaskSlotsPerNode
  }
}

// Roles before the app: the host's first start already finds its storage, queue and Batch rights.
module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    storageAccountName: storage.outputs.storageAccountName
    logsContainer: logsContainer
    reportsContainer: reportsContainer
    toolsContainer: toolsContainer
    requestsContainer: requestsContainer
    deploymentContainer: deploymentContainer
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    queueName: queueName
    batchAccountName: batch.outputs.batchAccountName
    appInsightsName: monitoring.outputs.appInsightsName
    appPrincipalId: identities.outputs.appPrincipalId
    hostPrincipalId: identities.outputs.hostPrincipalId
    poolPrincipalId: identities.outputs.poolPrincipalId
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
    appIssuesUploadSas: appIssuesUploadSas
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  dependsOn: [
    roles
  ]
  params: {
    location: location
    tags: tags
    planName: 'plan-${resourceToken}'
    functionAppName: functionAppName
    appIdentityId: identities.outputs.appIdentityId
    appClientId: identities.outputs.appClientId
    hostIdentityId: identities.outputs.hostIdentityId
    hostClientId: identities.outputs.hostClientId
    instanceMemoryMB: functionInstanceMemoryMB
    storageAccountName: storage.outputs.storageAccountName
    blobEndpoint: storage.outputs.blobEndpoint
    deploymentContainer: deploymentContainer
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    queueName: queueName
    batchAccountUrl: batch.outputs.batchAccountUrl
    watchdogSchedule: watchdogSchedule
    allowedPools: empty(allowedPools) ? poolId : allowedPools
    jobRetentionDays: jobRetentionDays
    maxSubmitConcurrency: maxSubmitConcurrency
    // Empty when the app issues upload SAS URLs instead (shared/pure/settings.py reads empty as unset).
    poolIdentityClientId: appIssuesUploadSas ? '' : identities.outputs.poolClientId
    poolIdentityResourceId: appIssuesUploadSas ? '' : identities.outputs.poolIdentityId
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    location: location
    tags: tags
    systemTopicName: 'evgt-${resourceToken}'
    storageAccountId: storage.outputs.storageAccountId
  }
}

module eventGridSubscriptions 'modules/eventgrid-subscriptions.bicep' = if (wireEventGrid) {
  name: 'eventgrid-subscriptions'
  scope: rg
  params: {
    systemTopicName: eventGrid.outputs.systemTopicName
    functionAppName: functionApp.outputs.functionAppName
    logsContainer: logsContainer
    blobFunctions: blobFunctions
  }
}

// azd stores these in the environment (.azure/<env>/.env); the last block is what the CLI needs.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.functionAppName
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.storageAccountName
output AZURE_EVENTGRID_SYSTEM_TOPIC string = eventGrid.outputs.systemTopicName
output BATCH_POOL_ID string = batch.outputs.poolId
output BATCH_POOL_MAX_TASK_SLOTS int = batch.outputs.maxTaskSlotsPerNode
output BATCH_POOL_IDENTITY_CLIENT_ID string = identities.outputs.poolClientId
output BATCH_ACCOUNT_URL string = batch.outputs.batchAccountUrl
output ServiceBusConnection__fullyQualifiedNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output AzureWebJobsStorage__accountName string = storage.outputs.storageAccountName
output JOB_REQUESTS_QUEUE string = queueName
