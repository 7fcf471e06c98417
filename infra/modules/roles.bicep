// Every role assignment of the deployment, least privilege first. Each says who gets what, where, and why,
// and names the documentation it follows (tests/infra/test_roles.py checks each against the same table).
// Four principals:
//   app      the function app's own code and its Service Bus and telemetry connections (identities.bicep)
//   host     the Functions host's storage connection (AzureWebJobsStorage) and the Flex deployment package
//   pool     the Batch pool nodes' user-assigned identity (release-task uploads)
//   operator optional: the person or CI principal running `azd up` and the orchestrator CLI

param storageAccountName string
param logsContainer string
param reportsContainer string
param toolsContainer string
param requestsContainer string
param deploymentContainer string
param serviceBusNamespaceName string
param queueName string
param batchAccountName string
param appInsightsName string
param appPrincipalId string
param hostPrincipalId string
param poolPrincipalId string
@description('Object id of the operator (user or CI principal) who runs the CLI against Azure; empty for none.')
param operatorPrincipalId string = ''
@description('What operatorPrincipalId is: User for a person, ServicePrincipal for CI (a mismatch fails with UnmatchedPrincipalType).')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param operatorPrincipalType string = 'User'
@description('true: the app issues the release-task upload SAS for job-logs (user delegation SAS), so it needs write there.')
param appIssuesUploadSas bool = false

// Built-in role definition ids (the same in every tenant):
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  blobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  blobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  batchJobSubmitter: '48e5e92e-a480-4e71-aa9c-2778f4c13781'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var withOperator = !empty(operatorPrincipalId)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource logs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: logsContainer
}

resource reports 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: reportsContainer
}

resource tools 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: toolsContainer
}

resource requests 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: requestsContainer
}

resource deploymentPackage 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deploymentContainer
}

resource sbNamespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: serviceBusNamespaceName
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = {
  parent: sbNamespace
  name: queueName
}

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// ---------------------------------------------------------------------------------------------
// App identity (the app's own code, the `submit` trigger, telemetry)
// ---------------------------------------------------------------------------------------------

// app: Azure Service Bus Data Owner on the job-requests queue only, the trigger role the Functions docs
// name that also carries the Manage claim
// (https://learn.microsoft.com/azure/azure-functions/functions-reference?tabs=servicebus#configure-an-identity-based-connection).
// `submit` receives, completes, abandons and dead-letters, and schedules a request again when Batch's
// active-job quota is full (a send). The scale controller reads the queue's message count with the same
// identity; with receive rights alone it cannot, and target-based scaling falls back to incremental
// scaling (https://learn.microsoft.com/azure/azure-functions/functions-target-based-scaling#service-bus-queues-and-topics).
// Over Receiver + Sender on this one queue it adds managing the queue itself (read, update or delete
// it): no message the app could not already receive and settle, and no other entity of the namespace.
resource appQueueOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, appPrincipalId, roles.serviceBusDataOwner)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// app: Blob Data Contributor on job-reports only: the collect functions write reports there and
// job_report reads them; retention deletes old ones.
resource appReportsContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(reports.id, appPrincipalId, roles.blobDataContributor)
  scope: reports
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// app: Blob Data Contributor on job-requests-private only: submit keeps each request as sent there (its
// resource file URLs may carry SAS tokens), and the watchdog reads it back to finish a submission.
// Operators get nothing here; the copy beside the report has the signatures redacted.
resource appRequestsContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(requests.id, appPrincipalId, roles.blobDataContributor)
  scope: requests
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// app: Blob Data Contributor on tools only: it publishes log_uploader.py there and signs read SAS
// URLs for it as a release-task resource file (a user delegation SAS grants no more than the signer has).
resource appToolsContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(tools.id, appPrincipalId, roles.blobDataContributor)
  scope: tools
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// app: on job-logs, Reader is all the collect functions' own code needs (it reads what the release
// tasks uploaded), and by default release tasks upload as the pool's identity. With
// appIssuesUploadSas=true the app signs a create-only user delegation SAS for them instead; its
// permissions are the intersection of the SAS's and the signer's, so the app then needs Blob Data
// Contributor here.
resource appLogsAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(logs.id, appPrincipalId, appIssuesUploadSas ? roles.blobDataContributor : roles.blobDataReader)
  scope: logs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', appIssuesUploadSas ? roles.blobDataContributor : roles.blobDataReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// app: Storage Blob Delegator on the account: lets it get a user delegation key (an account-level
// operation, so it cannot be scoped to a container) to sign SAS URLs. It grants no data access itself
// (https://learn.microsoft.com/rest/api/storageservices/get-user-delegation-key#authorization).
resource appDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roles.blobDelegator)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDelegator)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// app: Azure Batch Job Submitter on the Batch account: create, patch, terminate, list and delete jobs
// and their tasks (data actions jobs/* and jobSchedules/*) and read pools (actions pools/read: the
// "unknown pool" check at submit, and a pool's size when a preparation task fails; listed in
// https://learn.microsoft.com/azure/batch/batch-role-based-access-control#azure-batch-job-submitter).
// It cannot create, resize or delete pools, nor read account keys, unlike Contributor or
// Azure Batch Data Contributor.
resource appBatchJobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(batchAccount.id, appPrincipalId, roles.batchJobSubmitter)
  scope: batchAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.batchJobSubmitter)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// app: Monitoring Metrics Publisher on the Application Insights component: telemetry ingestion with
// Entra auth, since local (instrumentation key) auth is disabled on the component
// (https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication).
resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Host identity (AzureWebJobsStorage and the Flex deployment package)
// ---------------------------------------------------------------------------------------------
// The roles Microsoft documents for an identity-based AzureWebJobsStorage
// (https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity),
// all on the account, as documented: the host creates and names its own containers, queues and tables.
// The blob trigger row of that table also lists Storage Account Contributor, a management role that
// can list the account keys and turn shared-key access back on; it is left out on purpose: the
// blob triggers here use source=EventGrid (the only source Flex Consumption supports), so the host never
// scans containers or changes the account's logging settings, which is what the polling trigger needs it for.

// host: Storage Blob Data Owner on the account: timer singleton locks and host id leases
// (azure-webjobs-hosts), function and system keys including blobs_extension (azure-webjobs-secrets),
// blob receipts of the blob triggers, and reading the job-logs blobs that trigger them.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, hostPrincipalId, roles.blobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// host: Storage Queue Data Contributor on the account: the blob trigger keeps its work and poison
// queues (webjobs-blobtrigger-poison) in AzureWebJobsStorage, whatever connection the trigger names.
// No orchestrator data is in storage queues (requests come through Service Bus).
resource hostQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, hostPrincipalId, roles.queueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataContributor)
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// host: Storage Table Data Contributor on the account: the host persists its diagnostic events in
// table storage (without it they are lost, with a warning in the logs). No orchestrator data is in tables.
resource hostTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, hostPrincipalId, roles.tableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// host: Storage Blob Data Contributor on the deployment container: the role the platform itself assigns
// to a user-assigned deployment identity on Flex Consumption
// (https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#configure-deployment-settings).
// Blob Data Owner on the account covers it too; this one keeps the deployment working on its own and
// says what the deployment needs (Owner would add changing access rights, which it never does).
resource hostDeploymentContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentPackage.id, hostPrincipalId, roles.blobDataContributor)
  scope: deploymentPackage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Pool identity
// ---------------------------------------------------------------------------------------------

// pool: a custom role with a single data action, blobs/add/action, on job-logs only: release-task
// uploads through the node's managed identity endpoint may create new blobs and nothing else. Put Blob
// and Put Block List accept add/action for a blob that does not exist yet and need blobs/write to replace
// one (https://learn.microsoft.com/rest/api/storageservices/put-blob#authorization), so a node can add its
// files but never overwrite, read, list or delete anyone's, in a pool shared by many jobs. The collector
// refuses (and records) uploads from a node that did not run the job or that come after its collection
// closed. The definition is assignable in this resource group only.
resource poolLogWriterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'batch-orchestrator-log-writer')
  properties: {
    roleName: 'Batch Orchestrator Log Writer (${resourceGroup().name})'
    description: 'Create new blobs only (no overwrite, read, list or delete): Batch nodes uploading job logs.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

// pool: Blob Data Reader on tools only: the release task fetches the uploader (and the naming rules it
// imports) as resource files with the pool's identity (identityReference), so no SAS sits in the job
// and a job may run longer than a user delegation SAS's 7 days.
resource poolToolsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(tools.id, poolPrincipalId, roles.blobDataReader)
  scope: tools
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: poolPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// pool: that role, on job-logs only.
resource poolLogsWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(logs.id, poolPrincipalId, poolLogWriterRole.id)
  scope: logs
  properties: {
    roleDefinitionId: poolLogWriterRole.id
    principalId: poolPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Operator (optional): the CLI pointed at Azure
// ---------------------------------------------------------------------------------------------

// operator: Service Bus Data Sender on the queue: `orchestrator submit` sends job requests.
// (The CLI is the only sender; the app itself never needs Sender.)
resource operatorQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withOperator) {
  name: guid(queue.id, operatorPrincipalId, roles.serviceBusDataSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

// operator: Blob Data Reader on job-reports: `orchestrator status` reads a job's report.
resource operatorReportsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withOperator) {
  name: guid(reports.id, operatorPrincipalId, roles.blobDataReader)
  scope: reports
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

// operator: Blob Data Reader on job-logs: read the raw logs and crash dumps a report points to.
resource operatorLogsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withOperator) {
  name: guid(logs.id, operatorPrincipalId, roles.blobDataReader)
  scope: logs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

// operator: Blob Data Contributor on tools: publish a new log_uploader.py by hand.
resource operatorToolsContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withOperator) {
  name: guid(tools.id, operatorPrincipalId, roles.blobDataContributor)
  scope: tools
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

// operator: Azure Batch Job Submitter on the Batch account: the CLI lists and inspects jobs and may
// terminate one. Data actions are not included in Owner/Contributor, so even a subscription owner
// needs this (or Azure Batch Data Contributor) to call the Batch data plane with Entra ID.
resource operatorBatchJobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withOperator) {
  name: guid(batchAccount.id, operatorPrincipalId, roles.batchJobSubmitter)
  scope: batchAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.batchJobSubmitter)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}
