// Log Analytics workspace + workspace-based Application Insights. Local (key) ingestion is disabled:
// the function app sends telemetry with its managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING)
// and needs "Monitoring Metrics Publisher" on the component (see roles.bicep).

param location string
param tags object
param logAnalyticsName string
param appInsightsName string
@description('Days Log Analytics keeps data; 30 is the free retention of the PerGB2018 tier.')
param retentionInDays int = 30
@description('Daily ingestion cap in GB for the workspace (-1 for none); a runaway log loop should not run up a bill.')
param dailyQuotaGb int = 1

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    workspaceCapping: {
      dailyQuotaGb: dailyQuotaGb
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

output appInsightsName string = appInsights.name
output appInsightsId string = appInsights.id
// The connection string is not a secret (it holds the instrumentation key, an identifier; with local
// auth disabled, ingestion still needs an Entra token), so it is passed as a plain output.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
output logAnalyticsId string = logAnalytics.id
