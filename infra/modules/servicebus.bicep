// Service Bus namespace (Standard: queues with duplicate detection and dead-lettering, 256 KB
// messages) with the job-requests queue. Local (SAS key) auth is disabled: senders and the function
// app authenticate with Entra ID.

param location string
param tags object
param namespaceName string
param queueName string
@description('Deliveries before a message is dead-lettered; the app settles a rejected request itself, so this only bounds retries of transient failures.')
param maxDeliveryCount int = 10
@description('Peek-lock duration; submit of a large job (task chunks of 100) must fit in it (the Functions host also renews the lock).')
param lockDuration string = 'PT5M'
@description('Window in which a message with the same MessageId is dropped as a duplicate (the job id derives from the MessageId).')
param duplicateDetectionWindow string = 'PT1H'
@description('How long an unprocessed request stays on the queue before it is dead-lettered.')
param defaultMessageTimeToLive string = 'P7D'

resource sbNamespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: sbNamespace
  name: queueName
  properties: {
    maxDeliveryCount: maxDeliveryCount
    lockDuration: lockDuration
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: defaultMessageTimeToLive
    requiresSession: false
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}

output namespaceName string = sbNamespace.name
output namespaceId string = sbNamespace.id
output queueId string = queue.id
// https://<ns>.servicebus.windows.net:443/ -> <ns>.servicebus.windows.net (works in every cloud).
output fullyQualifiedNamespace string = split(replace(sbNamespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
