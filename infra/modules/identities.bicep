// Three user-assigned managed identities:
//   app   the function app's own code (DefaultAzureCredential picks it by AZURE_CLIENT_ID) and its
//         Service Bus and telemetry connections: least privilege, container by container;
//   host  the Functions host's storage connection (AzureWebJobsStorage__clientId), the blob triggers'
//         bookkeeping and the Flex deployment package: the account-wide roles Microsoft documents for
//         identity-based host storage, kept off the identity the app's code uses;
//   pool  the Batch pool's nodes (release-task uploads).
// The split guards against the app's own code misusing the host's wide rights by mistake; it is not a
// boundary against code that means harm (any code in the app can ask for a token of either identity).
// User-assigned (not system-assigned) so that every role assignment exists before the function app
// and the pool start: the Functions host, the Flex deployment download and the first pool node all
// authenticate with an identity whose roles are already in place.

param location string
param tags object
param appIdentityName string
param hostIdentityName string
param poolIdentityName string

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: appIdentityName
  location: location
  tags: tags
}

resource hostIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: hostIdentityName
  location: location
  tags: tags
}

resource poolIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: poolIdentityName
  location: location
  tags: tags
}

output appIdentityId string = appIdentity.id
output appPrincipalId string = appIdentity.properties.principalId
output appClientId string = appIdentity.properties.clientId
output hostIdentityId string = hostIdentity.id
output hostPrincipalId string = hostIdentity.properties.principalId
output hostClientId string = hostIdentity.properties.clientId
output poolIdentityId string = poolIdentity.id
output poolPrincipalId string = poolIdentity.properties.principalId
output poolClientId string = poolIdentity.properties.clientId
