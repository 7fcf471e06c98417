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
// VM sizes the example pool may use, with their vCPUs (https://learn.microsoft.com/azure/virtual-machines/sizes).
// Batch allows at most min(4 x vCPUs, 256) task slots per node
// (https://learn.microsoft.com/azure/batch/batch-parallel-node-tasks); the table below is what that bound
// is computed from, so a size is offered only with its vCPU count. main.bicep's @allowed list is the
// same (tests/infra check both, and the vCPU counts).
var vmSizeVcpus = {
  Standard_D2s_v3: 2
  Standard_D4s_v3: 4
  Standard_D8s_v3: 8
  Standard_D16s_v3: 16
  Standard_D32s_v3: 32
  Standard_D2s_v5: 2
  Standard_D4s_v5: 4
  Standard_D8s_v5: 8
  Standard_D16s_v5: 16
  Standard_D32s_v5: 32
  Standard_D64s_v5: 64
  Standard_D96s_v5: 96
  Standard_E2s_v5: 2
  Standard_E4s_v5: 4
  Standard_E8s_v5: 8
  Standard_E16s_v5: 16
  Standard_F2s_v2: 2
  Standard_F4s_v2: 4
  Standard_F8s_v2: 8
  Standard_F16s_v2: 16
  Standard_F32s_v2: 32
  Standard_F72s_v2: 72
}

@description('VM size of the example pool (one of vmSizeVcpus).')
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
param vmSize string = 'Standard_D2s_v3'
@description('Dedicated nodes in the example pool. Nodes cost money while allocated, idle or not: keep 0 until you run jobs.')
@minValue(0)
@maxValue(100)
param nodeCount int = 0
@description('Tasks that may run at once on one node: at most min(4 x the VM size\'s vCPUs, 256).')
@minValue(1)
@maxValue(256)
param taskSlotsPerNode int = 2

var maxTaskSlots = min(4 * vmSizeVcpus[vmSize], 256)
// A value over the bound stops the deployment before the pool is touched: looking up a key that is not
// there fails, and ARM's error names the key ("The language expression property '<this text>' doesn't
// exist"), so the text says what is wrong. Batch would refuse the pool later with a less direct error.
var taskSlotsCheck = {
  ok: taskSlotsPerNode
}
var checkedTaskSlots = taskSlotsCheck[(taskSlotsPerNode <= maxTaskSlots) ? 'ok' : 'BATCH_POOL_TASK_SLOTS=${taskSlotsPerNode} is over ${maxTaskSlots}, the most Batch allows on ${vmSize} (min(4 x vCPUs, 256))']

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
    taskSlotsPerNode: checkedTaskSlots
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
output maxTaskSlotsPerNode int = maxTaskSlots
