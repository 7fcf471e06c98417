// Event Grid system topic on the storage account. The blob triggers (collect_node, collect_crash_dump,
// collect_stray) use source="EventGrid": the Functions host does not poll job-logs, it waits for
// BlobCreated events pushed to its blobs_extension webhook by the subscriptions in
// eventgrid-subscriptions.bicep (created after the code is deployed, see main.bicep).

param location string
param tags object
param systemTopicName string
param storageAccountId string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: location
  tags: tags
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output systemTopicName string = systemTopic.name
output systemTopicId string = systemTopic.id
