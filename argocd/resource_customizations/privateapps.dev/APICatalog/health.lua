-- Argo CD health of an APICatalog: Healthy when it is in force, Degraded
-- when it is invalid or set aside for a route conflict, Progressing until
-- the operator has looked at the current generation.
local hs = { status = "Progressing", message = "Waiting for the operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the operator to compile the current generation"
  return hs
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    hs.message = c.message
    if c.status == "True" then
      hs.status = "Healthy"
    else
      hs.status = "Degraded"
    end
  end
end
return hs
