-- wrk script for bench/serve_load.sh: every request POSTs the same photo to
-- /api/v1/recognize; done() prints the error counts and latency percentiles in a form the
-- shell script parses.
local path = os.getenv("FERC_LOAD_IMAGE") or "tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg"
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.path = "/api/v1/recognize"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FERC requests %d duration_s %.3f rps %.2f\n", summary.requests,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6)))
  io.write(string.format("FERC errors connect %d read %d write %d timeout %d non2xx %d\n",
    e.connect, e.read, e.write, e.timeout, e.status))
  io.write(string.format("FERC latency_ms p50 %.1f p90 %.1f p99 %.1f max %.1f\n",
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3))
end
