-- wrk script for bench/ingest.py: one new incident.note_added per request, spread over 32
-- incidents. Argument: a run id, so that no two runs (or threads) send the same event id (a
-- repeated id is a retry, answered from the log without an append, and would flatter the run).
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local run
function init(args)
  run = args[1]
end

counter = 0
request = function()
  counter = counter + 1
  local id = string.format("w%s-%d-%d", run, tid, counter)
  local inc = string.format("INC-BENCH%04d", counter % 32)
  local body = '{"type":"incident.note_added","event_id":"' .. id .. '","incident_id":"' .. inc .. '","occurred_at":"2026-11-20T10:00:00Z","actor":"bench","source":"synthetic","text":"observation"}'
  return wrk.format("POST", "/v1/events", {["Content-Type"]="application/json"}, body)
end
