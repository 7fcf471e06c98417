// One StorageV2 account serves three purposes, because the app's blob triggers and its own blob code
// both use the AzureWebJobsStorage connection (shared/pure/settings.py):
//   - data: job-logs (written by release tasks), job-reports (written by the functions), tools
//     (log_uploader.py, downloaded by release tasks);
//   - Functions host storage: azure-webjobs-hosts (timer locks, blob-trigger bookkeeping) and
//     azure-webjobs-secrets (function and system keys), created here up front (the host would create
//     them itself), plus the queues and tables the host makes on demand; roles.bicep gives the host
//     identity the documented account-wide roles for them;
//   - Flex Consumption deployment storage: the app-package container azd uploads the zip to.
// Shared keys are off: every client (host, app code, pool nodes, azd, Event Grid) uses Entra ID.
// Flex Consumption supports this because its deployment storage authenticates with the host's
// user-assigned identity (functionapp.bicep), and Event Grid system topics need no key.

param location string
param tags object
param storageAccountName string
param logsContainer string
param reportsContainer string
param toolsContainer string
@description('The requests as sent (SAS URLs in them): read by the app alone.')
param requestsContainer string
param deploymentContainer string
@description('Days after which blobs in the logs container are deleted by a lifecycle rule; 0 keeps them forever.')
param logRetentionDays int = 30

var hostContainers = [
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
]
var containers = concat([logsContainer, reportsContainer, toolsContainer, requestsContainer, deploymentContainer],
  hostContainers)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for name in containers: {
  parent: blobService
  name: name
  properties: {
    publicAccess: 'None'
  }
}]

// Raw node logs are the bulk of the data; the per-job reports in job-reports keep the summary.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (logRetentionDays > 0) {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-job-logs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${logsContainer}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: logRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

output storageAccountName string = storage.name
output storageAccountId string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
