-- Argo CD health of a TokenRotation, from its phase.
local hs = { status = "Progressing", message = "Waiting for the operator to apply the rotation" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local message = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      message = c.message
    end
  end
end
local phase = obj.status.phase
if phase == "GracePeriod" or phase == "Completed" or phase == "Cancelled" or phase == "Superseded" then
  -- A grace period is normal, not a long-lived Progressing.
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
end
hs.message = message or phase
return hs
