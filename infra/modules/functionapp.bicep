// Function app on the Flex Consumption plan (FC1, Linux, Python 3.11) with two user-assigned managed
// identities (identities.bicep): the host's, for host storage and the deployment package, and the app's,
// for everything its own code and its other connections do. Every connection is identity-based; no app
// setting holds a key or a connection string with a secret:
//   AzureWebJobsStorage__*   host storage and the blob triggers, as the host identity; the app's own
//                            blob code reads only __accountName and signs in as the app identity
//   ServiceBusConnection__*  the `submit` Service Bus trigger (and the scale controller), as the app identity
//   AZURE_CLIENT_ID          DefaultAzureCredential in the app's code (Batch, Blob, Service Bus) picks the app identity
//   APPLICATIONINSIGHTS_*    telemetry with Entra auth (local auth is off on the component)
// Flex Consumption sets the runtime in functionAppConfig.runtime: FUNCTIONS_WORKER_RUNTIME and
// FUNCTIONS_EXTENSION_VERSION must not be app settings there.

param location string
param tags object
param planName string
param functionAppName string
param appIdentityId string
param appClientId string
@description('The host identity: AzureWebJobsStorage and the Flex deployment storage authenticate with it.')
param hostIdentityId string
param hostClientId string
param storageAccountName string
param blobEndpoint string
param deploymentContainer string
param appInsightsConnectionString string
param serviceBusFullyQualifiedNamespace string
param queueName string
param batchAccountUrl string
param watchdogSchedule string
param allowedPools string
param jobRetentionDays string
param maxSubmitConcurrency string
@description('The Batch pool identity release tasks upload with; empty: they get a SAS URL instead.')
param poolIdentityClientId string = ''
param poolIdentityResourceId string = ''
@description('Upper bound on Flex instances; the submit function is bounded by Batch throttling long before this.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40
@description('Instance memory; on-demand executions are billed by it (GB-s), at least 1 s each.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  // azd finds the app to deploy the `api` service to by this tag.
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentityId}': {}
      '${hostIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references (none today) would resolve with the app's identity.
    keyVaultReferenceIdentity: appIdentityId
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainer}'
          // The host identity: Blob Data Contributor on this container (roles.bicep), as the platform assigns.
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: hostIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      // Host storage and the blob triggers (source EventGrid), with the host identity. The app's own blob
      // code takes the account name from here and its credential from AZURE_CLIENT_ID (the app identity).
      AzureWebJobsStorage__accountName: storageAccountName
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: hostClientId
      // Service Bus trigger of `submit`.
      ServiceBusConnection__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace
      ServiceBusConnection__credential: 'managedidentity'
      ServiceBusConnection__clientId: appClientId
      // DefaultAzureCredential in the app's own code (Batch, and Blob for user delegation SAS).
      AZURE_CLIENT_ID: appClientId
      BATCH_ACCOUNT_URL: batchAccountUrl
      JOB_REQUESTS_QUEUE: queueName
      WATCHDOG_SCHEDULE: watchdogSchedule
      ALLOWED_POOLS: allowedPools
      JOB_RETENTION_DAYS: jobRetentionDays
      MAX_SUBMIT_CONCURRENCY: maxSubmitConcurrency
      // Retries inside one invocation; past them Service Bus redelivers the request.
      BATCH_MAX_RETRIES: '3'
      // Nodes upload logs as the pool's identity: no SAS in the job's definition.
      POOL_IDENTITY_CLIENT_ID: poolIdentityClientId
      POOL_IDENTITY_RESOURCE_ID: poolIdentityResourceId
      // HTTP streams (downloads sent as read): the worker looks for the FastAPI extension when it indexes at
      // init. https://learn.microsoft.com/azure/azure-functions/functions-reference-python#http-streams
      PYTHON_ENABLE_INIT_INDEXING: '1'
      APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${appClientId};Authorization=AAD'
    }
  }
}

output functionAppName string = functionApp.name
output functionAppId string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
