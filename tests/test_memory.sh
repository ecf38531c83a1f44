#!/usr/bin/env bash
# Memory admission (issue 4, acceptance 1 and 2), with real Tesseract pages and
# real memory: a flood of full-page scans under a 300 MB budget never takes
# the server and its workers past it (a sampler reads their PSS every 20 ms),
# and a page whose estimate alone exceeds the budget fails at once with
# memory_limit_exceeded, while a budget it fits in lets it run.
source "$(dirname "$0")/lib.sh"

skip_if_sanitized

# ---- 1. a flood of 40 full-page scans under --memory-budget 300MB, 8 workers allowed
BUDGET=$((300 * 1024 * 1024))
start_server "$TMP/var" --workers 8 --memory-budget 300MB || { done_testing; exit 1; }
# bench/pss.py, the bench's sampler: the PSS of the server and all its
# descendants every 20 ms, until told to stop.
PSS_PY="$(dirname "$0")/../bench/pss.py"
python3 "$PSS_PY" sample "$TMP/pss" "$SERVER_PID" &
sampler=$!
ids=()
for i in $(seq 1 40); do
  if [ $((i % 2)) -eq 0 ]; then f=linn.png; else f=8071_093.3B.tif; fi
  ids+=("$(submit "$DATA/$f" "name=$f")")
done
check "40 scans submitted" test "$(printf '%s\n' "${ids[@]}" | grep -cx '[0-9a-f]\{32\}')" -eq 40 ||
  { stop_server; done_testing; exit 1; }
ok=0
for id in "${ids[@]}"; do
  [ "$(wait_task "$id" 300)" = succeeded ] && ok=$((ok + 1))
done
touch "$TMP/pss.stop"
wait "$sampler"
read -r peak_kb _ samples _ <<<"$(python3 "$PSS_PY" peak "$TMP/pss")"
peak=$((peak_kb * 1024))
check "all 40 succeeded ($ok did)" test "$ok" -eq 40
check "the sampler ran ($samples samples)" test "$samples" -gt 100
check "the total PSS never passed the budget (peak $((peak >> 20)) MB of $((BUDGET >> 20)) MB)" test "$peak" -le "$BUDGET"
check "pages waited for admission (waiting_for_memory events)" python3 -c "
import json, urllib.request
n = 0
for id in '${ids[*]}'.split():
    ev = json.load(urllib.request.urlopen('$BASE/v1/tasks/' + id + '/events'))['events']
    n += sum(1 for e in ev if e['type'] == 'waiting_for_memory')
assert n > 0, 'no page waited: the budget did not bind'
print(n, 'pages waited')"
check "each task records its estimate and its measured peak" python3 -c "
import json, urllib.request
for id in '${ids[*]}'.split():
    t = json.load(urllib.request.urlopen('$BASE/v1/tasks/' + id))
    assert t['estimated_memory_bytes'] > 0 and t['peak_memory_bytes'] > 0, t"
curl -s "$BASE/v1/memory" -o "$TMP/memory.json"
check "GET /v1/memory: the cpu device with its budget, usage within it, and the workers" python3 -c "
import json
m = json.load(open('$TMP/memory.json'))
cpu = [d for d in m['devices'] if d['name'] == 'cpu'][0]
assert cpu['budget_bytes'] == $BUDGET, cpu
assert 0 < cpu['used_bytes'] <= cpu['budget_bytes'] and cpu['reserved_bytes'] <= cpu['budget_bytes'], cpu
assert cpu['capacity_bytes'] >= cpu['budget_bytes'] and cpu['level'] in ('ok', 'warning', 'critical'), cpu
assert cpu['pages_waited'] > 0, cpu
assert 0 < len(m['workers']) <= 8, m['workers']
for w in m['workers']:
    assert w['pid'] > 0 and w['device'] == 'cpu' and w['used_bytes'] > 0, w
assert sum(w['pages_done'] for w in m['workers']) > 0, m['workers']"
stop_server

# ---- 2. a 9000x9000 colour page: refused under 500 MB, done under 2 GB
start_server "$TMP/var2" --workers 2 --memory-budget 500MB || { done_testing; exit 1; }
id=$(submit "$DATA/enormous_9000x9000.png" "name=enormous.png")
check "under 500 MB: the enormous page fails" test "$(wait_task "$id" 120)" = failed
curl -s "$BASE/v1/tasks/$id" -o "$TMP/t.json"
curl -s "$BASE/v1/tasks/$id/events" -o "$TMP/e.json"
check "... with memory_limit_exceeded and a sentence with its need and the budget" python3 -c "
import json
t = json.load(open('$TMP/t.json'))
assert t['failure_reason'] == 'memory_limit_exceeded', t
assert 'needs about' in t['error'] and 'budget is 500 MB' in t['error'], t['error']"
check "... before any OCR ran (no page started)" python3 -c "
import json
ev = [e['type'] for e in json.load(open('$TMP/e.json'))['events']]
assert 'page_started' not in ev, ev"
stop_server
start_server "$TMP/var3" --workers 2 --memory-budget 2GB || { done_testing; exit 1; }
id=$(submit "$DATA/enormous_9000x9000.png" "name=enormous.png")
check "under 2 GB: the enormous page succeeds" test "$(wait_task "$id" 300)" = succeeded
stop_server
done_testing
