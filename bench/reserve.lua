-- wrk script: single-line reservations (BENCHMARKS.md).
wrk.method = "POST"
wrk.body = '{"channel":"web","lines":[{"sku":"HOT","location":"WH-NORD","qty":1}],"ttl_seconds":60}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-admin-key-0123456789"
