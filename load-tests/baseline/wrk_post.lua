-- wrk script of the pipeline benchmark: POSTs a 1-token completion to the URL wrk is given, and
-- at the end writes the figures as JSON to $WRK_RESULT (when set) under the keys that
-- `coder-load summary` reads: requests, errors, errors_by_status, throughput_rps (2xx/3xx per
-- second), latency_ms {p50, p90, p99, max, mean}.
--
--   WRK_MODEL=synthetic WRK_LABEL=name WRK_RESULT=out/result.json \
--     wrk -t 2 -c 16 -d 20s -s load-tests/baseline/wrk_post.lua http://127.0.0.1:8000/v1/completions

local model = os.getenv("WRK_MODEL") or "synthetic"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format(
  '{"model":"%s","prompt":"def fibonacci(n):","max_tokens":1,"temperature":0}', model)

function done(summary, latency, requests)
  local path = os.getenv("WRK_RESULT")
  if path == nil or path == "" then
    return
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  local ok = summary.requests - e.status
  local ms = function(us) return us / 1000 end
  local json = string.format(
    '{"tool":"wrk","label":"%s","duration_s":%.3f,"requests":%d,"successes":%d,' ..
    '"errors":%d,"errors_by_status":{"non_2xx_3xx":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d},"throughput_rps":%.1f,"requests_rps":%.1f,' ..
    '"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"mean":%.3f}}\n',
    os.getenv("WRK_LABEL") or "wrk", seconds, summary.requests, ok,
    e.status + e.connect + e.read + e.write + e.timeout, e.status, e.connect, e.read, e.write,
    e.timeout, ok / seconds, summary.requests / seconds,
    ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
    ms(latency.max), ms(latency.mean))
  local file = assert(io.open(path, "w"))
  file:write(json)
  file:close()
end
