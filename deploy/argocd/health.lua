-- Argo CD custom health check for cost-analysis.spaceone.dev/CostAnalysisJob.
-- resource.customizations.health.cost-analysis.spaceone.dev_CostAnalysisJob: |
--   <this file>
local hs = {}
if obj.status == nil or obj.status.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe the latest spec"
  return hs
end
local s = obj.status.status
local progress = obj.status.progress or ""
if s == "IN_PROGRESS" then
  hs.status = "Progressing"
  hs.message = "In progress " .. progress
elseif s == "SUCCESS" then
  hs.status = "Healthy"
  hs.message = "Succeeded " .. progress
elseif s == "FAILURE" then
  hs.status = "Degraded"
  hs.message = (obj.status.errorCode or "FAILURE") .. ": " .. (obj.status.errorMessage or "")
  -- The Failed condition names the failed tasks and their errors (at most 1,024 bytes).
  for _, c in ipairs(obj.status.conditions or {}) do
    if c.type == "Failed" and c.status == "True" and c.message ~= nil and c.message ~= "" then
      hs.message = c.message
    end
  end
elseif s == "TIMEOUT" then
  hs.status = "Degraded"
  hs.message = "Timed out " .. progress
elseif s == "CANCELED" then
  -- Canceled on purpose: finished and not broken, but not a success either.
  hs.status = "Suspended"
  hs.message = "Canceled " .. progress
else
  hs.status = "Unknown"
  hs.message = "Unknown status " .. s
end
return hs
