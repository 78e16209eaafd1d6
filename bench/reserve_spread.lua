-- wrk script: single-line reservations spread over the demo's 5,000 SKUs at
-- WH-NORD (BENCHMARKS.md), so requests do not all queue on one position.
local counter = 0
request = function()
  counter = counter + 1
  local sku = string.format("SKU-%05d", (counter * 7919) % 5000 + 1)
  local body = '{"channel":"web","lines":[{"sku":"' .. sku .. '","location":"WH-NORD","qty":1}],"ttl_seconds":60}'
  return wrk.format("POST", "/v1/reservations", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer bench-admin-key-0123456789"}, body)
end
