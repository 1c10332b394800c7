-- Runs deploy/argocd/health.lua on sample objects: lua5.4 deploy/argocd/health_test.lua
local dir = arg[0]:match("(.*/)") or "./"
local chunk = assert(loadfile(dir .. "health.lua", "t", setmetatable({}, {__index = _G})))
local function health(o)
  local env = setmetatable({obj = o}, {__index = _G})
  local f = assert(loadfile(dir .. "health.lua", "t", env))
  return f()
end
local cases = {
  {{metadata = {generation = 1}}, "Progressing"},
  {{metadata = {generation = 1}, status = {status = "IN_PROGRESS", observedGeneration = 1, progress = "1/3"}}, "Progressing"},
  {{metadata = {generation = 2}, status = {status = "SUCCESS", observedGeneration = 1}}, "Progressing"},
  {{metadata = {generation = 1}, status = {status = "SUCCESS", observedGeneration = 1, progress = "3/3"}}, "Healthy"},
  {{metadata = {generation = 1}, status = {status = "FAILURE", observedGeneration = 1, errorCode = "ERROR_JOB_TASK"}}, "Degraded"},
  {{metadata = {generation = 1}, status = {status = "FAILURE", observedGeneration = 1, errorCode = "ERROR_JOB_TASK",
     errorMessage = "One or more job tasks have failed.",
     conditions = {{type = "Complete", status = "False", message = "m"},
                   {type = "Failed", status = "True", message = "ERROR_JOB_TASK: One or more job tasks have failed. Failed task: j.a (E: m)"}}}},
   "Degraded", "ERROR_JOB_TASK: One or more job tasks have failed. Failed task: j.a (E: m)"},
  {{metadata = {generation = 1}, status = {status = "FAILURE", observedGeneration = 1, errorCode = "ERROR_JOB_TASK",
     errorMessage = "One or more job tasks have failed."}},
   "Degraded", "ERROR_JOB_TASK: One or more job tasks have failed."},
  {{metadata = {generation = 1}, status = {status = "TIMEOUT", observedGeneration = 1}}, "Degraded"},
  {{metadata = {generation = 2}, status = {status = "CANCELED", observedGeneration = 2}}, "Suspended"},
}
local passed, failed = 0, 0
for i, c in ipairs(cases) do
  local hs = health(c[1])
  if hs.status == c[2] and (c[3] == nil or hs.message == c[3]) then passed = passed + 1 else
    failed = failed + 1
    print(string.format("case %d: got %s (%s), want %s (%s)", i, hs.status, hs.message, c[2], c[3] or "any message"))
  end
end
assert(chunk)
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
