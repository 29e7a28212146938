-- wrk script for bench/ingest.py: Alertmanager 0.25 webhook deliveries. Run with as many threads
-- as connections: each thread is one sender, cycling its own 2-alert groups through
-- fire, repeat, repeat, resolve. Arguments: firing template, resolved template, run id; the
-- templates are real payloads with __GROUP__ where the group's name goes.
local senders = 0
function setup(thread)
  senders = senders + 1
  thread:set("sender", senders)
end

local firing, resolved, run
local n = 0
function init(args)
  firing = io.open(args[1]):read("*a")
  resolved = io.open(args[2]):read("*a")
  run = args[3]
end

function request()
  local body = (n % 4 == 3) and resolved or firing
  local group = string.format("%s-%d-%d", run, sender, math.floor(n / 4))
  n = n + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, (body:gsub("__GROUP__", group)))
end
