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
