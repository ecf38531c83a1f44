#!/usr/bin/env bash
# kill -9 the server while 10 multi-page tasks are queued or running, start it
# again on the same data directory: every task completes, no finished page runs
# again (counted in the events), no result is missing or doubled.
source "$(dirname "$0")/lib.sh"

export OCRPOOL_NULL_OPTS=sleep_ms=300
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/c02-22.pdf" "$DATA/linn.pdf" "$DATA/c02-22.pdf" -- "$TMP/four.pdf"
start_server "$TMP/var" --workers 2 || { done_testing; exit 1; }
ids=()
for _ in $(seq 1 10); do ids+=("$(submit "$TMP/four.pdf" "engine=null&format=txt,json")"); done
check "10 tasks submitted" test "${#ids[@]}" -eq 10
sleep 2.5
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
done_before=$(curl -s "$BASE/healthz" >/dev/null 2>&1 && echo up || echo down)
check "the server is gone" test "$done_before" = down
# Workers notice their supervisor's end and exit by themselves.
sleep 1
start_server "$TMP/var" --workers 2 || { done_testing; exit 1; }
for id in "${ids[@]}"; do
  status=$(wait_task "$id" 120)
  check "task $id: $status" test "$status" = succeeded
  curl -s "$BASE/v1/tasks/$id/result?format=txt" -o "$TMP/r.txt"
  check "task $id: 4 pages in its text (3 form feeds)" test "$(tr -cd '\f' <"$TMP/r.txt" | wc -c)" -eq 3
  curl -s "$BASE/v1/tasks/$id/result?format=json" -o "$TMP/r.json"
  check "task $id: json pages 1-4, once each" python3 -c "
import json; d=json.load(open('$TMP/r.json')); assert [p['page'] for p in d['pages']]==[1,2,3,4], d"
  curl -s "$BASE/v1/tasks/$id/events" -o "$TMP/e.json"
  check "task $id: each page finished exactly once" python3 -c "
import json, collections
ev=json.load(open('$TMP/e.json'))['events']
done=collections.Counter(e['details']['page'] for e in ev if e['type']=='page_done')
assert sorted(done)==[1,2,3,4] and set(done.values())=={1}, done
assert ev[-1]['type']=='succeeded', ev[-1]"
done
check "some task was caught mid-way by the kill (a page run again after restart)" python3 -c "
import json, urllib.request, collections
again=0
for id in '${ids[*]}'.split():
    ev=json.load(urllib.request.urlopen('$BASE/v1/tasks/'+id+'/events'))['events']
    started=collections.Counter(e['details']['page'] for e in ev if e['type']=='page_started')
    again+=sum(1 for n in started.values() if n>1)
assert again>0, 'no page ran twice: the kill came too late to test anything'"
stop_server
done_testing
