-- wrk script for bench/ingest.py: one new incident.note_added per request, spread over 32 incidents.
counter = 0
request = function()
  counter = counter + 1
  local id = string.format("w%d-%d", math.random(1, 1000000000), counter)
  local inc = string.format("INC-BENCH%04d", counter % 32)
  local body = '{"type":"incident.note_added","event_id":"' .. id .. '","incident_id":"' .. inc .. '","occurred_at":"2026-11-20T10:00:00Z","actor":"bench","source":"synthetic","text":"observation"}'
  return wrk.format("POST", "/v1/events", {["Content-Type"]="application/json"}, body)
end
