-- wrk script: single-position availability reads (BENCHMARKS.md).
wrk.headers["Authorization"] = "Bearer bench-admin-key-0123456789"
