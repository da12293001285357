// Reads a private app's token info and its account's daily usage through
// HubSpot's Node client, unchanged but for its base path, as a script
// written against HubSpot's documentation would, and prints what it got.
// The token comes from the environment and is never printed.
import hubspot from '@hubspot/api-client';

const client = new hubspot.Client({ accessToken: process.env.PAPP_TOKEN, basePath: process.env.PAPP_BASE });

const info = await client.apiRequest({
  method: 'POST',
  path: '/oauth/v2/private-apps/get/access-token-info',
  body: { tokenKey: process.env.PAPP_TOKEN },
});
const tokenInfo = await info.json();
const usage = await client.apiRequest({ method: 'GET', path: '/account-info/v3/api-usage/daily/private-apps' });
const daily = await usage.json();

console.log(JSON.stringify({
  infoStatus: info.status,
  types: { hubId: typeof tokenInfo.hubId, appId: typeof tokenInfo.appId, userId: typeof tokenInfo.userId },
  hubId: tokenInfo.hubId,
  appId: tokenInfo.appId,
  userId: tokenInfo.userId,
  // What scripts do with HubSpot's ids: compare them with numbers.
  sameHub: tokenInfo.hubId === Number(process.env.PAPP_HUB_ID),
  scopes: tokenInfo.scopes,
  usageStatus: usage.status,
  usage: daily,
}));
