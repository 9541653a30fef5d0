#!/usr/bin/env bash
# Bounded load test of ferc serve on loopback: wrk (Debian) with bench/serve_post.lua POSTs the
# committed photo to /api/v1/recognize from C connections for D seconds. Prints requests/s,
# p50/p99 latency and the server's resident memory before (after a warm-up) and after, and
# fails unless there were 0 socket errors, 0 non-2xx answers and memory grew at most 10%.
# Usage: bench/serve_load.sh [--duration 30] [--connections 64] [--threads N] [--model M]
#        (--threads: the server's workers; FERC_BIN: the ferc binary, default build/ferc)
# Run it on an idle machine: it is a benchmark, not a timed test.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=30 conns=64 workers=2 model=()
while (($#)); do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --threads) workers=$2; shift 2 ;;
    --model) model=(--model "$2"); shift 2 ;;
    *) echo "usage: bench/serve_load.sh [--duration S] [--connections C] [--threads N] [--model M]" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "serve_load: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
bin=${FERC_BIN:-build/ferc}
log=$(mktemp)
"$bin" serve --port 0 --quiet --threads "$workers" "${model[@]}" > "$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$log")
[[ -n $url ]] || { echo "serve_load: the server did not start" >&2; exit 1; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
# warm-up: plans for batch sizes 2 (flip) and the detector's buffers are built on first use
wrk -t2 -c"$conns" -d2s -s bench/serve_post.lua "$url" > /dev/null
before=$(rss)
out=$(wrk -t2 -c"$conns" -d"${duration}s" --timeout 30s -s bench/serve_post.lua "$url")
after=$(rss)
kill -INT $pid
wait $pid && code=0 || code=$?
trap 'rm -f "$log"' EXIT
echo "$out" | grep -v '^FERC' | sed 's/^/  wrk: /'
read -r _ _ n _ dur _ rps < <(echo "$out" | grep '^FERC requests')
read -r _ _ _ ec _ er _ ew _ et _ e2 < <(echo "$out" | grep '^FERC errors')
read -r _ _ _ p50 _ p90 _ p99 _ pmax < <(echo "$out" | grep '^FERC latency')
growth=$(awk -v a="$after" -v b="$before" 'BEGIN {printf "%.1f", 100 * (a - b) / b}')
echo "serve_load: $conns connections, ${duration} s, $workers workers: $n requests, $rps requests/s"
echo "serve_load: latency p50 $p50 ms, p90 $p90 ms, p99 $p99 ms, max $pmax ms"
echo "serve_load: errors connect $ec read $er write $ew timeout $et, non-2xx $e2"
echo "serve_load: server RSS $((before / 1024)) MiB before, $((after / 1024)) MiB after ($growth%); exit code on SIGINT $code"
fail=0
((ec + er + ew + et == 0)) || { echo "serve_load: FAIL socket errors"; fail=1; }
((e2 == 0)) || { echo "serve_load: FAIL non-2xx answers"; fail=1; }
awk -v g="$growth" 'BEGIN {exit !(g <= 10)}' || { echo "serve_load: FAIL memory grew more than 10%"; fail=1; }
((code == 0)) || { echo "serve_load: FAIL the server exited $code on SIGINT"; fail=1; }
((n > 0)) || { echo "serve_load: FAIL no request answered"; fail=1; }
exit $fail
