// Batch account (BatchService pool allocation: Batch owns the VMs, no subscription quota juggling) and
// an example Ubuntu 22.04 pool whose nodes carry a user-assigned managed identity.
// Shared Key auth is not allowed on the account: the function app and the CLI use Entra ID
// (DefaultAzureCredential), and tasks use task authentication tokens if they call Batch.
// No auto-storage account: the orchestrator passes SAS URLs for resource files and uploads, so
// Batch never needs storage credentials of its own.

param location string
param tags object
param batchAccountName string
param poolId string
param poolIdentityId string
@description('VM size of the example pool.')
param vmSize string = 'Standard_D2s_v3'
@description('Dedicated nodes in the example pool. Nodes cost money while allocated, idle or not: keep 0 until you run jobs.')
@minValue(0)
@maxValue(100)
param nodeCount int = 0
@description('Tasks that may run at once on one node.')
@minValue(1)
@maxValue(256)
param taskSlotsPerNode int = 2

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' = {
  name: batchAccountName
  location: location
  tags: tags
  properties: {
    poolAllocationMode: 'BatchService'
    publicNetworkAccess: 'Enabled'
    allowedAuthenticationModes: [
      'AAD'
      'TaskAuthenticationToken'
    ]
  }
}

resource pool 'Microsoft.Batch/batchAccounts/pools@2024-07-01' = {
  parent: batchAccount
  name: poolId
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${poolIdentityId}': {}
    }
  }
  properties: {
    displayName: 'Batch Orchestrator example pool (Ubuntu 22.04)'
    vmSize: vmSize
    taskSlotsPerNode: taskSlotsPerNode
    taskSchedulingPolicy: {
      nodeFillType: 'Spread'
    }
    interNodeCommunication: 'Disabled'
    targetNodeCommunicationMode: 'Simplified'
    deploymentConfiguration: {
      virtualMachineConfiguration: {
        imageReference: {
          publisher: 'canonical'
          offer: '0001-com-ubuntu-server-jammy'
          sku: '22_04-lts'
          version: 'latest'
        }
        nodeAgentSkuId: 'batch.node.ubuntu 22.04'
      }
    }
    scaleSettings: {
      fixedScale: {
        targetDedicatedNodes: nodeCount
        targetLowPriorityNodes: 0
        resizeTimeout: 'PT15M'
        nodeDeallocationOption: 'TaskCompletion'
      }
    }
  }
}

output batchAccountName string = batchAccount.name
output batchAccountId string = batchAccount.id
// accountEndpoint has no scheme: <account>.<region>.batch.azure.com
output batchAccountUrl string = 'https://${batchAccount.properties.accountEndpoint}'
output poolId string = pool.name
