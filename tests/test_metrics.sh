#!/usr/bin/env bash
# GET /metrics (issue 5): the Prometheus text format that `promtool check
# metrics` (Debian's prometheus package) accepts, with the server's real
# figures: tasks by status, pages processed and failed, durations, memory per
# device, workers, models, HTTP requests by route and status. And the health
# endpoints: /healthz answers while the process runs, /readyz says whether it
# takes work.
source "$(dirname "$0")/lib.sh"

if ! command -v promtool >/dev/null; then
  echo "skipped: promtool is missing (make check installs Debian's prometheus package)"
  exit 77
fi
printf 'models:\n  - name: fast\n    engine: null\n    languages: fast\n' >"$TMP/ocrpool.yaml"
# Workers that take 2 s to start (OCRPOOL_TEST_WORKER_START_DELAY_MS, a test
# hook standing in for a slow model preload): /readyz is 503 until one has.
OCRPOOL_TEST_WORKER_START_DELAY_MS=2000 start_server "$TMP/var" --workers 2 --config "$TMP/ocrpool.yaml" ||
  { done_testing; exit 1; }
curl -s -o "$TMP/notready.json" -w '%{http_code}' "$BASE/readyz" >"$TMP/code"
check "/readyz is 503 before a worker has started, saying so" bash -c "[ \"\$(cat '$TMP/code')\" = 503 ] && grep -q 'no worker has started yet' '$TMP/notready.json'"
ready=no
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" = 200 ] && { ready=yes; break; }
  sleep 0.1
done
check "/readyz turns ready once a worker has started" test "$ready" = yes
check "... and the log says which" grep -q 'ready: a worker started' "$TMP/server.log"
ids=()
for _ in 1 2 3; do ids+=("$(submit "$DATA/linn.pdf" "model=fast&dpi=30&format=json")"); done
head -c 4000 "$DATA/linn.png" >"$TMP/cut.png" # its header is whole, its pixels are not: the page fails
bad=$(submit "$TMP/cut.png" "model=fast&format=json")
for id in "${ids[@]}"; do wait_task "$id" 60 >/dev/null; done
check "the bad task fails" test "$(wait_task "$bad" 60)" = failed
curl -s -o /dev/null "$BASE/v1/tasks/0123456789abcdef0123456789abcdef"
curl -s -D "$TMP/h" "$BASE/metrics" -o "$TMP/metrics.txt"
check "/metrics is text/plain version 0.0.4" grep -qi '^content-type: text/plain; version=0.0.4' "$TMP/h"
promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.out" 2>&1
rc=$?
check "promtool check metrics accepts it" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$TMP/promtool.out"
cat >"$TMP/figures.py" <<'PY'
import json, re, sys
samples = {}
for line in open(sys.argv[1]):
    if line.startswith('#') or not line.strip():
        continue
    name, value = line.rsplit(' ', 1)
    samples[name] = float(value)
memory = json.load(open(sys.argv[2]))
cpu = memory['devices'][0]
want = {
    'ocrpool_tasks{status="succeeded"}': 3,
    'ocrpool_tasks{status="failed"}': 1,
    'ocrpool_pages_processed_total': 3,
    'ocrpool_page_duration_seconds_count': 4,
    'ocrpool_queue_wait_seconds_count': 4,
    'ocrpool_http_requests_total{route="/v1/tasks",method="POST",status="202"}': 4,
    'ocrpool_http_requests_total{route="/v1/tasks/{id}",method="GET",status="404"}': 1,
    'ocrpool_device_memory_budget_bytes{device="cpu"}': cpu['budget_bytes'],
    'ocrpool_device_memory_capacity_bytes{device="cpu"}': cpu['capacity_bytes'],
    'ocrpool_device_memory_pressure_level{device="cpu"}': 0,
    'ocrpool_model_loaded{model="fast"}': 1,
    'ocrpool_model_loads_total{model="fast"}': None,
    'ocrpool_queue_depth{priority="5"}': 0,
    'ocrpool_worker_restarts_total{reason="crash"}': 0,
    'ocrpool_oom_events_total': 0,
}
for k, v in want.items():
    assert k in samples, ('missing', k)
    assert v is None or samples[k] == v, (k, samples[k], v)
assert samples['ocrpool_model_loads_total{model="fast"}'] >= 1
reason = json.load(open(sys.argv[3]))['failure_reason']
failed = {k: v for k, v in samples.items() if k.startswith('ocrpool_pages_failed_total{')}
assert failed == {'ocrpool_pages_failed_total{reason="%s"}' % reason: 1}, (failed, reason)
assert 0 < samples['ocrpool_device_memory_used_bytes{device="cpu"}'] < cpu['budget_bytes']
workers = sum(v for k, v in samples.items() if k.startswith('ocrpool_workers{device="cpu"'))
assert workers == len(memory['workers']) >= 1, (workers, memory['workers'])
PY
# figures_match: /metrics agrees with /v1/memory and the tasks. The memory and
# model figures are refreshed every 200 ms and a worker may be restarting
# between two reads, so the test polls until they agree.
figures_match() {
  curl -s "$BASE/metrics" -o "$TMP/metrics.txt"
  curl -s "$BASE/v1/memory" -o "$TMP/memory.json"
  curl -s "$BASE/v1/tasks/$bad" -o "$TMP/bad.json"
  python3 "$TMP/figures.py" "$TMP/metrics.txt" "$TMP/memory.json" "$TMP/bad.json" 2>"$TMP/figures.err"
}
check "the figures are the server's" wait_for 10 figures_match || cat "$TMP/figures.err"
curl -s "$BASE/v1/tasks/metrics" -o "$TMP/summary.json"
check "GET /v1/tasks/metrics: tasks, memory by device, the pool, the average wait" python3 -c "
import json
s = json.load(open('$TMP/summary.json'))
assert s['active_tasks'] == 0 and s['queued_tasks'] == 0, s
assert s['finished_tasks'] == {'succeeded': 3, 'failed': 1, 'cancelled': 0, 'running': 0, 'queued': 0}, s
assert s['memory']['cpu']['budget_bytes'] > 0 and s['memory']['cpu']['level'] == 'ok', s
assert s['pool']['workers_allowed'] == 2 and 0 <= s['pool']['utilisation'] <= 1, s
assert s['average_wait_seconds'] > 0, s"
curl -s "$BASE/v1/tasks/${ids[0]}/health" -o "$TMP/health.json"
curl -s "$BASE/v1/tasks/$bad/health" -o "$TMP/badhealth.json"
check "GET /v1/tasks/{id}/health: status, memory, processing time, device, warnings" python3 -c "
import json
h = json.load(open('$TMP/health.json'))
assert h['status'] == 'succeeded' and h['healthy'] and h['device'] == 'cpu' and h['warnings'] == [], h
assert h['processing_seconds'] >= 0 and h['memory']['peak_bytes'] > 0 and h['memory']['estimated_bytes'] > 0, h
b = json.load(open('$TMP/badhealth.json'))
assert b['status'] == 'failed' and not b['healthy'] and b['warnings'][0]['type'] == 'page_failed', b"
check "... 404 for an unknown task" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/tasks/0123456789abcdef0123456789abcdef/health")" = 404
curl -s "$BASE/v1/memory?history=1" -o "$TMP/history.json"
check "GET /v1/memory?history=1: the cpu's recent samples, in order" python3 -c "
import json
d = json.load(open('$TMP/history.json'))['devices'][0]
h = d['history']
assert len(h) >= 2 and all(len(x) == 3 for x in h), h
assert all(0 < b[0] - a[0] < 5 for a, b in zip(h, h[1:])), h  # about a second apart; load may stretch it
assert all(0 < x[1] < d['budget_bytes'] for x in h), h
assert 'history' not in json.load(open('$TMP/memory.json'))['devices'][0]"
check "/healthz answers" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" = 200
check "/readyz says ready" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" = 200
# While draining (SIGTERM with a page running), /readyz is 503 and /healthz still answers.
export OCRPOOL_NULL_OPTS=sleep_ms=3000
stop_server
start_server "$TMP/var2" --workers 1 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
id=$(submit "$DATA/linn.pdf" "model=fast&dpi=30&format=json")
wait_started "$id"
kill -TERM "$SERVER_PID"
check "draining: /readyz is 503, saying so" wait_for 10 draining_seen
check "... /healthz still 200" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" = 200
wait "$SERVER_PID"
check "the server drained and exited 0" test $? -eq 0
done_testing
