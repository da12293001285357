-- Argo CD health of a PrivateApp, from its Ready condition and connection.
local hs = { status = "Progressing", message = "Waiting for the operator to issue the app's token" }
if obj.status == nil then
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the operator to apply the latest spec"
  return hs
end
local ready = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
if ready == nil then
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  if obj.status.token ~= nil and obj.status.token.previous ~= nil then
    -- A grace period is normal: both tokens work until the old one expires.
    hs.message = "The new token is in place; the previous one works until " .. obj.status.token.previous.expiresAt
  end
  return hs
end
if ready.reason == "Suspended" then
  hs.status = "Suspended"
elseif ready.reason == "AppLimitExceeded" or ready.reason == "SecretConflict"
    or ready.reason == "TokenExpired" or ready.reason == "ReconcileError" then
  hs.status = "Degraded"
end
hs.message = ready.message
return hs
