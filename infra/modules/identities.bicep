// Two user-assigned managed identities: one for the function app, one for the Batch pool's nodes.
// User-assigned (not system-assigned) so that every role assignment exists before the function app
// and the pool start: the Functions host, the Flex deployment download and the first pool node all
// authenticate with an identity whose roles are already in place.

param location string
param tags object
param appIdentityName string
param poolIdentityName string

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: appIdentityName
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
output poolIdentityId string = poolIdentity.id
output poolPrincipalId string = poolIdentity.properties.principalId
output poolClientId string = poolIdentity.properties.clientId
