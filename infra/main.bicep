// Batch Orchestrator on Azure: Functions (Flex Consumption) + Batch + Service Bus + Storage.
// `azd up` provisions this, deploys the app, and its postdeploy hook provisions again with
// wireEventGrid=true to subscribe the blob-trigger webhooks (see infra/README.md).
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

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

@description('Id of the example Batch pool.')
param poolId string = 'orchestrator-pool'

@description('VM size of the example pool.')
param poolVmSize string = 'Standard_D2s_v3'

@description('Dedicated nodes of the example pool. Allocated nodes cost money even when idle: keep 0 until you run jobs.')
@minValue(0)
@maxValue(100)
param poolNodeCount int = 0

@description('Tasks that may run at once on one pool node.')
@minValue(1)
@maxValue(256)
param poolTaskSlotsPerNode int = 2

@description('Comma list of pools jobs may target (ALLOWED_POOLS); empty means the example pool only.')
param allowedPools string = ''

@description('NCRONTAB (six fields) of the watchdog timer.')
param watchdogSchedule string = '0 */1 * * * *'

@description('JOB_RETENTION_DAYS: days a finished job is kept in Batch.')
param jobRetentionDays string = '7'

@description('MAX_SUBMIT_CONCURRENCY: parallel Batch calls of one submit.')
param maxSubmitConcurrency string = '8'

@description('Days before raw blobs in job-logs are deleted by a lifecycle rule; 0 keeps them.')
param logRetentionDays int = 30

@description('Create the Event Grid subscriptions to the blob-trigger webhooks. Needs the code deployed first; the azd postdeploy hook sets it.')
param wireEventGrid bool = false

@description('false (default): release tasks upload with the pool identity and the app only reads job-logs; true: the app signs a create-only SAS for them instead, and one with write for Batch outputFiles (app needs write on job-logs).')
param appIssuesUploadSas bool = false

@description('Fallback: Blob Data Owner for the Functions host on the whole storage account instead of its own containers.')
param hostRolesAtAccountScope bool = false

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
    hostContainers: concat(storage.outputs.hostContainers, [deploymentContainer])
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    queueName: queueName
    batchAccountName: batch.outputs.batchAccountName
    appInsightsName: monitoring.outputs.appInsightsName
    appPrincipalId: identities.outputs.appPrincipalId
    poolPrincipalId: identities.outputs.poolPrincipalId
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
    appIssuesUploadSas: appIssuesUploadSas
    hostRolesAtAccountScope: hostRolesAtAccountScope
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
output BATCH_POOL_IDENTITY_CLIENT_ID string = identities.outputs.poolClientId
output BATCH_ACCOUNT_URL string = batch.outputs.batchAccountUrl
output ServiceBusConnection__fullyQualifiedNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output AzureWebJobsStorage__accountName string = storage.outputs.storageAccountName
output JOB_REQUESTS_QUEUE string = queueName
