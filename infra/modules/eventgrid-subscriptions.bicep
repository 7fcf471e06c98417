// One Event Grid subscription per blob-triggered function, delivering BlobCreated events from the
// logs container to the function's blob-trigger webhook:
//   https://<app>/runtime/webhooks/blobs?functionName=Host.Functions.<name>&code=<blobs_extension key>
// The key is read with listKeys on the app's host at deployment time, so this module can only run
// after the code is deployed and the host has started once (that is when the blob extension creates
// its system key, and Event Grid's validation handshake needs a live endpoint). main.bicep deploys
// it only when wireEventGrid is true: for deployments without azd, provisioned again once the code runs.
// With azd the postdeploy hook (infra/hooks/postdeploy.sh) creates the same subscriptions with the Azure
// CLI instead, and leaves them to this module when WIRE_EVENT_GRID is true.

param systemTopicName string
param functionAppName string
param logsContainer string
@description('Blob-triggered functions: [{ name, advancedFilters }]; the filters narrow events to the function\'s own blobs.')
param blobFunctions array

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

var blobsExtensionKey = listKeys('${functionApp.id}/host/default', '2024-04-01').systemKeys.blobs_extension
var webhookBase = 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs'

resource subscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = [for fn in blobFunctions: {
  parent: systemTopic
  name: replace('${fn.name}-blob-created', '_', '-')
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: '${webhookBase}?functionName=Host.Functions.${fn.name}&code=${blobsExtensionKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${logsContainer}/'
      advancedFilters: fn.advancedFilters
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}]

output subscriptionNames array = [for (fn, i) in blobFunctions: subscriptions[i].name]
